//! Sealed metadata files (indexes and snapshots): envelope, then AEAD.
//!
//! ```text
//! File     = Nonce || AEAD( Envelope ) || Tag      AAD = the file type's label
//! Envelope = Compression (1 byte: 0 none, 1 zstd) || Payload
//! ```
//! The label in the AAD ("stowage index", "stowage snapshot") keeps one type of file from
//! being passed off as another.

use super::blob::{COMPRESSION_NONE, COMPRESSION_ZSTD};
use super::crypto::{AuthError, Keys};

/// Hard cap on a decompressed metadata file, so a hostile file cannot exhaust memory.
pub const MAX_METADATA_LEN: usize = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum SealedError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("empty envelope")]
    Empty,
    #[error("unknown compression tag {0}")]
    UnknownCompression(u8),
    #[error("decompression failed")]
    Decompress(#[source] std::io::Error),
}

/// Seals a metadata file. Payloads over 4 KiB are zstd-compressed.
pub fn seal_file(keys: &Keys, label: &[u8], payload: &[u8]) -> Vec<u8> {
    let nonce_len = keys.cipher().kind().nonce_len();
    let mut buf = vec![0u8; nonce_len + 1];
    let compressed = if payload.len() > 4096 {
        zstd::bulk::compress(payload, 3).ok()
    } else {
        None
    };
    match compressed {
        Some(c) if c.len() < payload.len() => {
            buf[nonce_len] = COMPRESSION_ZSTD;
            buf.extend_from_slice(&c);
        }
        _ => {
            buf[nonce_len] = COMPRESSION_NONE;
            buf.extend_from_slice(payload);
        }
    }
    keys.cipher().seal_in_place(&mut buf, label);
    buf
}

/// Opens a metadata file sealed by [`seal_file`] with the same label.
pub fn open_file(keys: &Keys, label: &[u8], stored: &[u8]) -> Result<Vec<u8>, SealedError> {
    let envelope = keys.cipher().open(stored, label)?;
    let (&tag, payload) = envelope.split_first().ok_or(SealedError::Empty)?;
    match tag {
        COMPRESSION_NONE => Ok(payload.to_vec()),
        COMPRESSION_ZSTD => {
            let mut out = Vec::new();
            let mut decoder =
                zstd::stream::read::Decoder::new(payload).map_err(SealedError::Decompress)?;
            let mut limited = std::io::Read::take(&mut decoder, MAX_METADATA_LEN as u64 + 1);
            std::io::Read::read_to_end(&mut limited, &mut out).map_err(SealedError::Decompress)?;
            if out.len() > MAX_METADATA_LEN {
                return Err(SealedError::Decompress(std::io::Error::other(
                    "file exceeds 1 GiB",
                )));
            }
            Ok(out)
        }
        other => Err(SealedError::UnknownCompression(other)),
    }
}
