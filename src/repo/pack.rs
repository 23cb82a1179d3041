//! Pack files: many sealed blobs followed by a sealed trailer that lists them.
//!
//! ```text
//! Pack       = Magic || SealedBlob_1 || … || SealedBlob_n || SealedTrailer || TrailerLen
//! Magic      = "STWPACK1" (8 bytes)
//! TrailerLen = u32 little-endian: length of SealedTrailer
//! Trailer    = Count (u32 LE) || Entry_1 || … || Entry_n     sealed with AAD "stowage pack trailer"
//! Entry      = Kind (u8) || BlobId (32) || Offset (u32 LE) || SealedLen (u32 LE) || RawLen (u32 LE)
//! ```
//! The trailer comes last so a pack streams out before its contents are known; it
//! duplicates what the index says, so a lost index can be rebuilt from the packs alone.
//! A pack is named by the blake3 hash of all its bytes, so anyone can check it without
//! the key.

use super::blob::BlobKind;
use super::crypto::{AuthError, Keys};
use super::id::{BlobId, ID_LEN};

pub const PACK_MAGIC: &[u8; 8] = b"STWPACK1";
pub const ENTRY_LEN: usize = 1 + ID_LEN + 4 + 4 + 4;
const TRAILER_AAD: &[u8] = b"stowage pack trailer";
/// Packs are capped so that 32-bit offsets always suffice.
pub const MAX_PACK_LEN: u64 = u32::MAX as u64;

/// Where one blob sits inside a pack, as the trailer and the index record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackEntry {
    pub kind: BlobKind,
    pub id: BlobId,
    pub offset: u32,
    pub sealed_len: u32,
    pub raw_len: u32,
}

/// A byte string that is not a valid entry table (pack trailer or index section).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("too short: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("unknown blob kind {0}")]
    UnknownKind(u8),
    #[error("{0} trailing bytes after the last entry")]
    TrailingBytes(usize),
    #[error("bad magic")]
    BadMagic,
    #[error("entry for blob {id} ({offset}+{len}) lies outside the blob area ({area} bytes)")]
    OutOfBounds {
        id: BlobId,
        offset: u32,
        len: u32,
        area: u64,
    },
    #[error("trailer cannot be decrypted: {0}")]
    Auth(#[from] AuthError),
    #[error("unsupported version {0}")]
    Version(u8),
}

impl PackEntry {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.kind as u8);
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.sealed_len.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
    }

    /// Decodes one entry from exactly [`ENTRY_LEN`] bytes.
    pub fn decode(raw: &[u8]) -> Result<Self, LayoutError> {
        if raw.len() < ENTRY_LEN {
            return Err(LayoutError::Truncated {
                need: ENTRY_LEN,
                have: raw.len(),
            });
        }
        let kind = BlobKind::from_byte(raw[0]).ok_or(LayoutError::UnknownKind(raw[0]))?;
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&raw[1..1 + ID_LEN]);
        let u32_at =
            |at: usize| u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
        Ok(PackEntry {
            kind,
            id: BlobId(id),
            offset: u32_at(1 + ID_LEN),
            sealed_len: u32_at(5 + ID_LEN),
            raw_len: u32_at(9 + ID_LEN),
        })
    }
}

/// Reads a little-endian u32 at `at`, or reports how short `raw` is.
pub(crate) fn read_u32(raw: &[u8], at: usize) -> Result<u32, LayoutError> {
    raw.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(LayoutError::Truncated {
            need: at + 4,
            have: raw.len(),
        })
}

/// Decodes `count` entries starting at `at`; returns them and the position after them.
pub(crate) fn decode_entries(
    raw: &[u8],
    at: usize,
    count: u32,
) -> Result<(Vec<PackEntry>, usize), LayoutError> {
    let count = count as usize;
    let need = count
        .checked_mul(ENTRY_LEN)
        .and_then(|n| n.checked_add(at))
        .unwrap_or(usize::MAX);
    if need > raw.len() {
        return Err(LayoutError::Truncated {
            need,
            have: raw.len(),
        });
    }
    let entries = raw[at..need]
        .chunks_exact(ENTRY_LEN)
        .map(PackEntry::decode)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((entries, need))
}

/// The plaintext trailer for `entries`.
pub fn encode_trailer(entries: &[PackEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entries.len() * ENTRY_LEN);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        entry.encode_into(&mut out);
    }
    out
}

/// Parses a plaintext trailer and checks every entry lies inside `blob_area` bytes
/// (the pack minus magic, trailer and length).
pub fn decode_trailer(raw: &[u8], blob_area: u64) -> Result<Vec<PackEntry>, LayoutError> {
    let count = read_u32(raw, 0)?;
    let (entries, end) = decode_entries(raw, 4, count)?;
    if end != raw.len() {
        return Err(LayoutError::TrailingBytes(raw.len() - end));
    }
    for e in &entries {
        let start = u64::from(e.offset);
        let end = start + u64::from(e.sealed_len);
        let fits = start >= PACK_MAGIC.len() as u64
            && (PACK_MAGIC.len() as u64)
                .checked_add(blob_area)
                .is_some_and(|limit| end <= limit);
        if !fits {
            return Err(LayoutError::OutOfBounds {
                id: e.id,
                offset: e.offset,
                len: e.sealed_len,
                area: blob_area,
            });
        }
    }
    Ok(entries)
}

/// Splits a whole pack into its entries, checking magic, trailer length and trailer
/// authenticity. Blob contents are not opened here.
pub fn read_pack_trailer(keys: &Keys, pack: &[u8]) -> Result<Vec<PackEntry>, LayoutError> {
    if pack.len() < PACK_MAGIC.len() + 4 || &pack[..PACK_MAGIC.len()] != PACK_MAGIC {
        return Err(LayoutError::BadMagic);
    }
    let trailer_len = read_u32(pack, pack.len() - 4)? as usize;
    let body_end = pack.len() - 4;
    if trailer_len > body_end - PACK_MAGIC.len() {
        return Err(LayoutError::Truncated {
            need: trailer_len + PACK_MAGIC.len() + 4,
            have: pack.len(),
        });
    }
    let trailer_start = body_end - trailer_len;
    let trailer = keys
        .cipher()
        .open(&pack[trailer_start..body_end], TRAILER_AAD)?;
    decode_trailer(&trailer, (trailer_start - PACK_MAGIC.len()) as u64)
}

/// Accumulates sealed blobs into one pack in memory.
///
/// Owned by the packer stage alone; once [`PackBuilder::finish`] returns, the bytes are
/// immutable and named by their hash.
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl PackBuilder {
    pub fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(PACK_MAGIC);
        PackBuilder {
            buf,
            entries: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes the pack would have if finished now (without the trailer).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether `sealed_len` more bytes, listed by `entries` entries, still fit under the
    /// format's 4 GiB limit.
    pub fn fits(&self, sealed_len: usize, entries: usize) -> bool {
        let trailer = (self.entries.len() + entries) * ENTRY_LEN + 64;
        (self.buf.len() + sealed_len + trailer) as u64 <= MAX_PACK_LEN
    }

    pub fn add(&mut self, kind: BlobKind, id: BlobId, raw_len: u32, sealed: &[u8]) {
        self.entries.push(PackEntry {
            kind,
            id,
            offset: self.buf.len() as u32,
            sealed_len: sealed.len() as u32,
            raw_len,
        });
        self.buf.extend_from_slice(sealed);
    }

    /// Adds a sealed group: one entry per member, all naming the group's bytes.
    pub fn add_group(&mut self, members: &[(BlobId, u32)], sealed: &[u8]) {
        let offset = self.buf.len() as u32;
        self.entries
            .extend(members.iter().map(|&(id, raw_len)| PackEntry {
                kind: BlobKind::Grouped,
                id,
                offset,
                sealed_len: sealed.len() as u32,
                raw_len,
            }));
        self.buf.extend_from_slice(sealed);
    }

    /// Seals the trailer and returns the finished bytes with their entries.
    pub fn finish(mut self, keys: &Keys) -> (Vec<u8>, Vec<PackEntry>) {
        let trailer = keys
            .cipher()
            .seal(&encode_trailer(&self.entries), TRAILER_AAD);
        self.buf.extend_from_slice(&trailer);
        self.buf
            .extend_from_slice(&(trailer.len() as u32).to_le_bytes());
        (self.buf, self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::super::crypto::{CipherKind, MasterKey, MASTER_LEN};
    use super::*;

    #[test]
    fn builder_round_trip_and_rejects_damage() {
        let keys = Keys::derive(
            &MasterKey::from_bytes([3; MASTER_LEN]),
            CipherKind::Aes256Gcm,
        );
        let mut b = PackBuilder::new(100);
        b.add(BlobKind::Data, BlobId([1; 32]), 5, b"hello");
        b.add(BlobKind::Tree, BlobId([2; 32]), 3, b"abc");
        let (pack, entries) = b.finish(&keys);
        assert_eq!(read_pack_trailer(&keys, &pack).unwrap(), entries);
        assert_eq!(entries[1].offset, 13);
        let mut bad = pack.clone();
        let n = bad.len();
        bad[n - 10] ^= 1;
        assert!(read_pack_trailer(&keys, &bad).is_err());
        assert!(read_pack_trailer(&keys, &pack[..n - 1]).is_err());
        assert!(read_pack_trailer(&keys, b"").is_err());
    }
}
