//! Index files: which blob lives in which pack, written once per backup run.
//!
//! ```text
//! IndexFile = Sealed( Version (u8 = 1) || PackCount (u32 LE) || Pack_1 || … )  AAD "stowage index"
//! Pack      = PackId (32) || PackLen (u64 LE) || EntryCount (u32 LE) || Entry_1 || …
//! Entry     = as in a pack trailer (see [`super::pack`])
//! ```
//! The sealed plaintext is an [`super::blob`]-style envelope (compression tag + payload)
//! so large indexes shrink. An index file is named by the blake3 hash of its stored bytes
//! and never rewritten; an index is only written after every pack it names is durable.

use super::id::{PackId, ID_LEN};
use super::pack::{decode_entries, read_u32, LayoutError, PackEntry};

pub const INDEX_VERSION: u8 = 1;

/// One pack's part of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPack {
    pub id: PackId,
    pub len: u64,
    pub entries: Vec<PackEntry>,
}

/// Encodes the plaintext of an index file.
pub fn encode_index(packs: &[IndexPack]) -> Vec<u8> {
    let entries: usize = packs.iter().map(|p| p.entries.len()).sum();
    let mut out = Vec::with_capacity(5 + packs.len() * 44 + entries * super::pack::ENTRY_LEN);
    out.push(INDEX_VERSION);
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for pack in packs {
        out.extend_from_slice(pack.id.as_bytes());
        out.extend_from_slice(&pack.len.to_le_bytes());
        out.extend_from_slice(&(pack.entries.len() as u32).to_le_bytes());
        for entry in &pack.entries {
            entry.encode_into(&mut out);
        }
    }
    out
}

/// Decodes the plaintext of an index file. Never panics on hostile input.
pub fn decode_index(raw: &[u8]) -> Result<Vec<IndexPack>, LayoutError> {
    let version = *raw
        .first()
        .ok_or(LayoutError::Truncated { need: 1, have: 0 })?;
    if version != INDEX_VERSION {
        return Err(LayoutError::Version(version));
    }
    let count = read_u32(raw, 1)?;
    let mut at = 5;
    let mut packs = Vec::new();
    for _ in 0..count {
        let header = raw
            .get(at..at + ID_LEN + 12)
            .ok_or(LayoutError::Truncated {
                need: at + ID_LEN + 12,
                have: raw.len(),
            })?;
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&header[..ID_LEN]);
        let mut len = [0u8; 8];
        len.copy_from_slice(&header[ID_LEN..ID_LEN + 8]);
        let len = u64::from_le_bytes(len);
        let n = read_u32(header, ID_LEN + 8)?;
        let (entries, next) = decode_entries(raw, at + ID_LEN + 12, n)?;
        for e in &entries {
            if u64::from(e.offset) + u64::from(e.sealed_len) > len {
                return Err(LayoutError::OutOfBounds {
                    id: e.id,
                    offset: e.offset,
                    len: e.sealed_len,
                    area: len,
                });
            }
        }
        packs.push(IndexPack {
            id: PackId(id),
            len,
            entries,
        });
        at = next;
    }
    if at != raw.len() {
        return Err(LayoutError::TrailingBytes(raw.len() - at));
    }
    Ok(packs)
}

#[cfg(test)]
mod tests {
    use super::super::blob::BlobKind;
    use super::super::id::BlobId;
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let packs = vec![IndexPack {
            id: PackId([9; 32]),
            len: 100,
            entries: vec![PackEntry {
                kind: BlobKind::Data,
                id: BlobId([4; 32]),
                offset: 8,
                sealed_len: 40,
                raw_len: 12,
            }],
        }];
        let raw = encode_index(&packs);
        assert_eq!(decode_index(&raw).unwrap(), packs);
        for cut in 0..raw.len() {
            assert!(decode_index(&raw[..cut]).is_err());
        }
    }
}
