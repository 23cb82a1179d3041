//! Sealing one blob: compress, then encrypt, in one output buffer.
//!
//! ```text
//! SealedBlob = Nonce || AEAD( Envelope ) || Tag        AAD = "stowage blob" || Kind || BlobId
//! Envelope   = Compression (1 byte: 0 none, 1 zstd) || Payload
//! ```
//! The AAD binds the ciphertext to its id and kind, so a blob copied to another slot (or a
//! tree passed off as data) fails authentication instead of restoring wrong bytes.
//! Compression falls back to `none` when zstd does not make the blob smaller, which keeps
//! random input from growing and lets restore skip the decompressor.

use bytes::{Bytes, BytesMut};

use super::crypto::{AuthError, Keys};
use super::id::BlobId;

/// What a blob holds. The byte values are part of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum BlobKind {
    /// File or stream content.
    Data = 0,
    /// A directory listing (JSON, see [`super::tree`]).
    Tree = 1,
}

impl BlobKind {
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Tree),
            _ => None,
        }
    }
}

/// Envelope compression tags. Part of the format.
pub const COMPRESSION_NONE: u8 = 0;
pub const COMPRESSION_ZSTD: u8 = 1;

/// Largest blob plaintext the format allows (pack offsets are 32-bit).
pub const MAX_BLOB_LEN: usize = 1 << 30;

const AAD_PREFIX: &[u8] = b"stowage blob";

fn aad(kind: BlobKind, id: &BlobId) -> [u8; 45] {
    let mut aad = [0u8; 45];
    aad[..12].copy_from_slice(AAD_PREFIX);
    aad[12] = kind as u8;
    aad[13..].copy_from_slice(id.as_bytes());
    aad
}

/// Why a stored blob could not be turned back into its plaintext.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {id}: {source}")]
    Auth {
        id: BlobId,
        #[source]
        source: AuthError,
    },
    #[error("blob {id}: unknown compression tag {tag}")]
    UnknownCompression { id: BlobId, tag: u8 },
    #[error("blob {id}: decompression failed")]
    Decompress {
        id: BlobId,
        #[source]
        source: std::io::Error,
    },
    #[error("blob {id}: plaintext is {found} bytes, the index says {expected}")]
    Length {
        id: BlobId,
        expected: usize,
        found: usize,
    },
    #[error("blob {id}: content hashes to {found}, not to its id")]
    HashMismatch { id: BlobId, found: BlobId },
}

/// Compresses and encrypts blobs; one per worker thread (it owns a zstd context).
pub struct Sealer {
    keys: Keys,
    compressor: zstd::bulk::Compressor<'static>,
    /// Reused compression output: zstd writes into its spare capacity, so nothing is
    /// zeroed or allocated per blob; only the compressed bytes are copied out.
    scratch: Vec<u8>,
}

impl Sealer {
    /// # Errors
    /// When zstd rejects the level or cannot allocate a context.
    pub fn new(keys: Keys, level: i32) -> std::io::Result<Self> {
        Ok(Sealer {
            keys,
            compressor: zstd::bulk::Compressor::new(level)?,
            scratch: Vec::new(),
        })
    }

    /// Seals `plaintext` as blob `id`. The result is `SealedBlob` above, in a buffer of
    /// exactly its size.
    pub fn seal(&mut self, kind: BlobKind, id: &BlobId, plaintext: &[u8]) -> Vec<u8> {
        let cipher = self.keys.cipher();
        let nonce_len = cipher.kind().nonce_len();
        self.scratch.clear();
        self.scratch
            .reserve(zstd::zstd_safe::compress_bound(plaintext.len()));
        let compressed = self
            .compressor
            .compress_to_buffer(plaintext, &mut self.scratch);
        let (tag, payload) = match compressed {
            Ok(n) if n < plaintext.len() => (COMPRESSION_ZSTD, &self.scratch[..n]),
            _ => (COMPRESSION_NONE, plaintext),
        };
        let mut buf = Vec::with_capacity(nonce_len + 1 + payload.len() + super::crypto::TAG_LEN);
        buf.resize(nonce_len, 0);
        buf.push(tag);
        buf.extend_from_slice(payload);
        cipher.seal_in_place(&mut buf, &aad(kind, id));
        buf
    }
}

/// A blob's plaintext: where it lay in the decrypted buffer, or freshly decompressed.
pub enum Plain<'b> {
    Stored(&'b [u8]),
    Decompressed(Vec<u8>),
}

impl AsRef<[u8]> for Plain<'_> {
    fn as_ref(&self) -> &[u8] {
        match self {
            Plain::Stored(s) => s,
            Plain::Decompressed(v) => v,
        }
    }
}

/// Opens a sealed blob where it lies and proves it is what `id` names.
///
/// Decrypts in place; an uncompressed blob's plaintext is a slice of `sealed`, so restore
/// and verify copy nothing they do not have to.
///
/// # Errors
/// A [`BlobError`] naming the blob when authentication, decompression, the length or the
/// keyed hash does not check out.
pub fn open_blob_in_place<'b>(
    keys: &Keys,
    kind: BlobKind,
    id: &BlobId,
    sealed: &'b mut [u8],
    raw_len: usize,
) -> Result<Plain<'b>, BlobError> {
    let length_error = |found| BlobError::Length {
        id: *id,
        expected: raw_len,
        found,
    };
    if raw_len > MAX_BLOB_LEN {
        return Err(length_error(0));
    }
    let envelope = keys
        .cipher()
        .open_in_place(sealed, &aad(kind, id))
        .map_err(|source| BlobError::Auth { id: *id, source })?;
    let (&tag, payload) = envelope.split_first().ok_or_else(|| length_error(0))?;
    let plain = match tag {
        COMPRESSION_NONE => Plain::Stored(payload),
        COMPRESSION_ZSTD => {
            // zstd fills the spare capacity itself: no zeroing of a buffer it overwrites.
            let mut out = Vec::with_capacity(raw_len);
            zstd::zstd_safe::decompress(&mut out, payload).map_err(|code| {
                BlobError::Decompress {
                    id: *id,
                    source: std::io::Error::other(zstd::zstd_safe::get_error_name(code)),
                }
            })?;
            Plain::Decompressed(out)
        }
        tag => return Err(BlobError::UnknownCompression { id: *id, tag }),
    };
    let found_len = plain.as_ref().len();
    if found_len != raw_len {
        return Err(length_error(found_len));
    }
    let found = keys.blob_id(plain.as_ref());
    if found != *id {
        return Err(BlobError::HashMismatch { id: *id, found });
    }
    Ok(plain)
}

/// [`open_blob_in_place`] on a copy of `sealed`.
///
/// # Errors
/// As [`open_blob_in_place`].
pub fn open_blob(
    keys: &Keys,
    kind: BlobKind,
    id: &BlobId,
    sealed: &[u8],
    raw_len: usize,
) -> Result<Vec<u8>, BlobError> {
    let mut buf = sealed.to_vec();
    open_blob_in_place(keys, kind, id, &mut buf, raw_len).map(|plain| plain.as_ref().to_vec())
}

/// [`open_blob_in_place`] on an owned buffer: no copy when `sealed` is uniquely owned
/// (as a fresh read from the store is) and the blob was stored uncompressed.
///
/// # Errors
/// As [`open_blob_in_place`].
pub fn open_blob_bytes(
    keys: &Keys,
    kind: BlobKind,
    id: &BlobId,
    sealed: Bytes,
    raw_len: usize,
) -> Result<Bytes, BlobError> {
    let mut buf = BytesMut::from(sealed);
    let stored_len = match open_blob_in_place(keys, kind, id, &mut buf, raw_len)? {
        Plain::Decompressed(v) => return Ok(Bytes::from(v)),
        Plain::Stored(s) => s.len(),
    };
    let start = keys.cipher().kind().nonce_len() + 1;
    Ok(buf.freeze().slice(start..start + stored_len))
}

#[cfg(test)]
mod tests {
    use super::super::crypto::{CipherKind, MasterKey, MASTER_LEN};
    use super::*;

    #[test]
    fn round_trip_compressible_and_random() {
        let keys = Keys::derive(
            &MasterKey::from_bytes([1; MASTER_LEN]),
            CipherKind::Aes256Gcm,
        );
        let mut sealer = Sealer::new(keys.clone(), 3).unwrap();
        let text = b"abc".repeat(10_000);
        let mut random = vec![0u8; 10_000];
        getrandom::getrandom(&mut random).unwrap();
        for (plain, tag) in [
            (&text[..], COMPRESSION_ZSTD),
            (&random[..], COMPRESSION_NONE),
            (&b""[..], COMPRESSION_NONE),
        ] {
            let id = keys.blob_id(plain);
            let sealed = sealer.seal(BlobKind::Data, &id, plain);
            assert_eq!(
                keys.cipher()
                    .open(&sealed, &aad(BlobKind::Data, &id))
                    .unwrap()[0],
                tag
            );
            assert_eq!(
                open_blob(&keys, BlobKind::Data, &id, &sealed, plain.len()).unwrap(),
                plain
            );
            let owned = open_blob_bytes(
                &keys,
                BlobKind::Data,
                &id,
                Bytes::from(sealed.clone()),
                plain.len(),
            );
            assert_eq!(owned.unwrap(), plain);
            assert!(open_blob(&keys, BlobKind::Tree, &id, &sealed, plain.len()).is_err());
        }
    }
}
