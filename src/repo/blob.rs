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
    /// File or stream content stored in a group with its neighbours: compressed and
    /// sealed together, each still named and found by its own id (see [`open_group`]).
    Grouped = 2,
}

impl BlobKind {
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Tree),
            2 => Some(BlobKind::Grouped),
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
/// The AAD of a sealed group. Members are proven by their hashes, not by the AAD.
const GROUP_AAD: &[u8] = b"stowage group";
/// Largest group plaintext (member table included) the format allows.
pub const MAX_GROUP_LEN: usize = 16 << 20;
/// Bytes per member in a group's member table: id and length.
const MEMBER_LEN: usize = 32 + 4;

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
    #[error("blob {id}: its group is malformed: {reason}")]
    BadGroup { id: BlobId, reason: &'static str },
    #[error("blob {id}: not a member of the group the index points to")]
    NotInGroup { id: BlobId },
}

/// Compresses and encrypts blobs; one per worker thread (it owns a zstd context).
pub struct Sealer {
    keys: Keys,
    compressor: zstd::bulk::Compressor<'static>,
    /// Reused compression output: zstd writes into its spare capacity, so nothing is
    /// zeroed or allocated per blob; only the compressed bytes are copied out.
    scratch: Vec<u8>,
    /// Reused buffer a group's plaintext is assembled in.
    group: Vec<u8>,
}

impl Sealer {
    /// # Errors
    /// When zstd rejects the level or cannot allocate a context.
    pub fn new(keys: Keys, level: i32) -> std::io::Result<Self> {
        Ok(Sealer {
            keys,
            compressor: zstd::bulk::Compressor::new(level)?,
            scratch: Vec::new(),
            group: Vec::new(),
        })
    }

    /// Seals `plaintext` as blob `id`. The result is `SealedBlob` above, in a buffer of
    /// exactly its size.
    pub fn seal(&mut self, kind: BlobKind, id: &BlobId, plaintext: &[u8]) -> Vec<u8> {
        self.seal_envelope(plaintext, &aad(kind, id))
    }

    /// Seals several data blobs as one group: one member table, their bytes back to back,
    /// compressed together (neighbouring 8 KiB pages compress far better as one 256 KiB
    /// run than one by one) while the index still addresses each member by its own id.
    /// The caller keeps the total under [`MAX_GROUP_LEN`].
    pub fn seal_group<B: AsRef<[u8]>>(&mut self, members: &[(BlobId, B)]) -> Vec<u8> {
        let mut plain = std::mem::take(&mut self.group);
        plain.clear();
        plain.extend_from_slice(&(members.len() as u32).to_le_bytes());
        for (id, data) in members {
            plain.extend_from_slice(id.as_bytes());
            plain.extend_from_slice(&(data.as_ref().len() as u32).to_le_bytes());
        }
        for (_, data) in members {
            plain.extend_from_slice(data.as_ref());
        }
        let sealed = self.seal_envelope(&plain, GROUP_AAD);
        self.group = plain;
        sealed
    }

    fn seal_envelope(&mut self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
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
        cipher.seal_in_place(&mut buf, aad);
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
    if kind == BlobKind::Grouped {
        let group = open_group(keys, id, sealed)?;
        return group
            .member(keys, id, raw_len)
            .map(|b| Plain::Decompressed(b.to_vec()));
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

/// A group opened once, so that every member a restore needs comes out of one
/// decryption and one decompression.
#[derive(Debug)]
pub struct OpenedGroup {
    plain: Bytes,
    /// Each member's id and where its bytes lie in `plain`.
    members: Vec<(BlobId, std::ops::Range<usize>)>,
}

/// Most members a group may have (writers use far fewer); bounds the lookup cost.
pub const MAX_GROUP_MEMBERS: usize = 4096;

/// Opens a sealed group (decrypting in place) and reads its member table. `asked` is
/// the member the caller wants, named in errors.
///
/// # Errors
/// [`BlobError::Auth`], [`BlobError::Decompress`] or [`BlobError::BadGroup`].
pub fn open_group(
    keys: &Keys,
    asked: &BlobId,
    sealed: &mut [u8],
) -> Result<OpenedGroup, BlobError> {
    let bad = |reason| BlobError::BadGroup { id: *asked, reason };
    let envelope = keys
        .cipher()
        .open_in_place(sealed, GROUP_AAD)
        .map_err(|source| BlobError::Auth { id: *asked, source })?;
    let (&tag, payload) = envelope.split_first().ok_or(bad("empty envelope"))?;
    let plain = match tag {
        COMPRESSION_NONE if payload.len() > MAX_GROUP_LEN => return Err(bad("larger than 16 MiB")),
        COMPRESSION_NONE => Bytes::copy_from_slice(payload),
        COMPRESSION_ZSTD => {
            // The frame states its size (stowage always writes it); refuse before
            // allocating anything when it is missing or beyond the limit.
            let len = match zstd::zstd_safe::get_frame_content_size(payload) {
                Ok(Some(len)) if len <= MAX_GROUP_LEN as u64 => len as usize,
                Ok(Some(_)) => return Err(bad("larger than 16 MiB")),
                _ => return Err(bad("compressed frame does not state its size")),
            };
            let mut out = Vec::with_capacity(len);
            zstd::zstd_safe::decompress(&mut out, payload).map_err(|code| {
                BlobError::Decompress {
                    id: *asked,
                    source: std::io::Error::other(zstd::zstd_safe::get_error_name(code)),
                }
            })?;
            Bytes::from(out)
        }
        tag => return Err(BlobError::UnknownCompression { id: *asked, tag }),
    };
    if plain.len() > MAX_GROUP_LEN {
        return Err(bad("larger than 16 MiB"));
    }
    let count = plain
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or(bad("no member count"))?;
    if count == 0 || count > MAX_GROUP_MEMBERS {
        return Err(bad("member count out of range"));
    }
    let table = plain
        .get(4..4 + count * MEMBER_LEN)
        .ok_or(bad("member table truncated"))?;
    let mut at = 4 + count * MEMBER_LEN;
    let mut members = Vec::with_capacity(count);
    for entry in table.chunks_exact(MEMBER_LEN) {
        let mut id = [0u8; 32];
        id.copy_from_slice(&entry[..32]);
        let len = u32::from_le_bytes([entry[32], entry[33], entry[34], entry[35]]) as usize;
        let end = at.checked_add(len).filter(|&end| end <= plain.len());
        let end = end.ok_or(bad("member lengths exceed the group"))?;
        members.push((BlobId(id), at..end));
        at = end;
    }
    if at != plain.len() {
        return Err(bad("bytes after the last member"));
    }
    Ok(OpenedGroup { plain, members })
}

impl OpenedGroup {
    /// Member `id`'s bytes (a slice of the group, no copy), proven to be `raw_len` bytes
    /// that hash to `id`.
    ///
    /// # Errors
    /// [`BlobError::NotInGroup`], [`BlobError::Length`] or [`BlobError::HashMismatch`].
    pub fn member(&self, keys: &Keys, id: &BlobId, raw_len: usize) -> Result<Bytes, BlobError> {
        let (_, range) = self
            .members
            .iter()
            .find(|(member, _)| member == id)
            .ok_or(BlobError::NotInGroup { id: *id })?;
        let data = self.plain.slice(range.clone());
        if data.len() != raw_len {
            return Err(BlobError::Length {
                id: *id,
                expected: raw_len,
                found: data.len(),
            });
        }
        let found = keys.blob_id(&data);
        if found != *id {
            return Err(BlobError::HashMismatch { id: *id, found });
        }
        Ok(data)
    }

    /// The ids of the members, in table order.
    pub fn ids(&self) -> impl Iterator<Item = &BlobId> {
        self.members.iter().map(|(id, _)| id)
    }
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

    #[test]
    fn group_members_open_one_by_one_and_all_at_once() {
        let keys = Keys::derive(
            &MasterKey::from_bytes([2; MASTER_LEN]),
            CipherKind::XChaCha20Poly1305,
        );
        let mut sealer = Sealer::new(keys.clone(), 3).unwrap();
        let pages: Vec<Bytes> = (0..5u8).map(|n| Bytes::from(vec![n; 8192])).collect();
        let members: Vec<(BlobId, Bytes)> =
            pages.iter().map(|p| (keys.blob_id(p), p.clone())).collect();
        let sealed = sealer.seal_group(&members);
        assert!(sealed.len() < 1000, "neighbours compress together");
        for (id, page) in &members {
            let one = open_blob(&keys, BlobKind::Grouped, id, &sealed, page.len()).unwrap();
            assert_eq!(one, page.as_ref());
            assert!(open_blob(&keys, BlobKind::Data, id, &sealed, page.len()).is_err());
        }
        let mut copy = sealed.clone();
        let group = open_group(&keys, &members[0].0, &mut copy).unwrap();
        assert_eq!(group.ids().count(), 5);
        let outsider = keys.blob_id(b"not here");
        assert!(matches!(
            group.member(&keys, &outsider, 8),
            Err(BlobError::NotInGroup { .. })
        ));
        assert!(matches!(
            group.member(&keys, &members[1].0, 8191),
            Err(BlobError::Length { .. })
        ));
        // A group is not a blob: single-blob AADs do not open it.
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(open_group(&keys, &members[0].0, &mut flipped).is_err());
    }
}
