//! Reading a raft snapshot (`.snap`) as a stream, member by member.
//!
//! ```text
//! bytes ─► gzip (multi-member, CRC checked to the end) ─► tar ─► meta.json, SHA256SUMS(.sealed): whole, ≤ 8 KiB
//!                                                            └► state.bin: streamed to the sink, hashed on the way
//! ```
//! Invariants:
//! 1. Memory is bounded whatever the snapshot's size: only the small members are held, and
//!    each is refused past [`SMALL_MEMBER_MAX`]; `state.bin` flows through.
//! 2. A member other than the four of [`MemberName`], a member that is not a regular file,
//!    a member given twice, or a missing required member is an error naming it.
//! 3. [`read_archive`] returns `Ok` only when `SHA256SUMS` matches both members, `meta.json`
//!    parses, its `Size` is the length of `state.bin`, and the gzip stream ends cleanly.
//!    The sink sees the bytes before that verdict: a caller that stores them must commit
//!    nothing until `read_archive` has returned `Ok` (the backup source writes its
//!    snapshot only after that).
//!
//! `SHA256SUMS.sealed` is kept, not opened: only the Vault that sealed it can.

use std::io::{self, Read};

use flate2::read::MultiGzDecoder;

use super::sums::{sha256, MemberHasher};
use super::{Member, MemberName, RaftMeta, Sha256Sums, VaultSnapshotError, SMALL_MEMBER_MAX};

/// Where the members of a snapshot go as they are read.
pub trait MemberSink {
    type Error: From<VaultSnapshotError>;

    /// A small member (`meta.json`, `SHA256SUMS`, `SHA256SUMS.sealed`), whole.
    ///
    /// # Errors
    /// Whatever stops the sink; reading stops with it.
    fn small(&mut self, member: &Member, data: &[u8]) -> Result<(), Self::Error>;

    /// `state.bin` as a stream, to be read to its end. Its bytes are not yet verified.
    ///
    /// # Errors
    /// Whatever stops the sink; reading stops with it.
    fn state(&mut self, member: &Member, data: &mut dyn Read) -> Result<(), Self::Error>;
}

/// What a verified snapshot held.
#[derive(Debug, Clone)]
pub struct ArchiveSummary {
    pub meta: RaftMeta,
    pub sums: Sha256Sums,
    /// The members in the order the archive had them.
    pub members: Vec<Member>,
}

impl ArchiveSummary {
    /// Whether the snapshot carried `SHA256SUMS.sealed`.
    pub fn sealed(&self) -> bool {
        self.members
            .iter()
            .any(|m| m.name == MemberName::SealedSums)
    }
}

/// Passes `state.bin` through, hashing it, and refuses a stream that ends before the
/// length its tar header gave.
struct HashingReader<'a, R> {
    inner: &'a mut R,
    hasher: MemberHasher,
    read: u64,
    size: u64,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && self.read < self.size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "state.bin ends after {} of its {} bytes",
                    self.read, self.size
                ),
            ));
        }
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Reads a whole raft snapshot from `input`, handing each member to `sink`, and verifies
/// it (see the module's invariants).
///
/// # Errors
/// A [`VaultSnapshotError`] naming the member at fault (converted into the sink's error
/// type), or the sink's own error.
pub fn read_archive<R: Read, S: MemberSink>(
    input: R,
    sink: &mut S,
) -> Result<ArchiveSummary, S::Error> {
    let mut input = input;
    let mut magic = [0u8; 2];
    input
        .read_exact(&mut magic)
        .map_err(VaultSnapshotError::NotGzip)?;
    if magic != [0x1f, 0x8b] {
        return Err(VaultSnapshotError::NotGzip(io::Error::new(
            io::ErrorKind::InvalidData,
            "no gzip magic number at the start",
        ))
        .into());
    }
    let gzip = MultiGzDecoder::new(io::Cursor::new(magic).chain(input));
    let mut archive = tar::Archive::new(gzip);
    let mut members: Vec<Member> = Vec::new();
    let (mut meta_raw, mut sums_raw) = (None, None);
    let mut meta_hash = None;
    let mut state_hash = None;
    let mut state_size = 0;
    for entry in archive.entries().map_err(VaultSnapshotError::Tar)? {
        let mut entry = entry.map_err(VaultSnapshotError::Tar)?;
        let raw_name = entry.path_bytes().into_owned();
        let name = MemberName::from_file_name(&raw_name).ok_or_else(|| {
            VaultSnapshotError::UnexpectedMember {
                name: String::from_utf8_lossy(&raw_name).into_owned(),
            }
        })?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(VaultSnapshotError::BadMember {
                member: name,
                reason: format!(
                    "is a {:?} entry, not a regular file",
                    entry.header().entry_type()
                ),
            }
            .into());
        }
        if members.iter().any(|m| m.name == name) {
            return Err(VaultSnapshotError::Duplicate { member: name }.into());
        }
        let header = entry.header();
        let member = Member {
            name,
            mode: header.mode().map_err(VaultSnapshotError::Tar)?,
            mtime: header.mtime().map_err(VaultSnapshotError::Tar)?,
            size: entry.size(),
        };
        if name == MemberName::State {
            let mut hashing = HashingReader {
                inner: &mut entry,
                hasher: MemberHasher::default(),
                read: 0,
                size: member.size,
            };
            sink.state(&member, &mut hashing)?;
            io::copy(&mut hashing, &mut io::sink()).map_err(|source| VaultSnapshotError::Read {
                member: name,
                source,
            })?;
            state_size = hashing.read;
            state_hash = Some(hashing.hasher.finish());
        } else {
            if member.size > SMALL_MEMBER_MAX as u64 {
                return Err(VaultSnapshotError::BadMember {
                    member: name,
                    reason: format!(
                        "{} bytes, more than the {SMALL_MEMBER_MAX} raft-snapshot reads",
                        member.size
                    ),
                }
                .into());
            }
            let mut data = Vec::with_capacity(member.size as usize);
            entry
                .read_to_end(&mut data)
                .map_err(|source| VaultSnapshotError::Read {
                    member: name,
                    source,
                })?;
            if data.len() as u64 != member.size {
                return Err(VaultSnapshotError::BadMember {
                    member: name,
                    reason: format!("ends after {} of its {} bytes", data.len(), member.size),
                }
                .into());
            }
            sink.small(&member, &data)?;
            match name {
                MemberName::Meta => {
                    meta_hash = Some(sha256(&data));
                    meta_raw = Some(data);
                }
                MemberName::Sums => sums_raw = Some(data),
                _ => {}
            }
        }
        members.push(member);
    }
    // The gzip trailer (CRC-32 and length) is only checked when the stream is read to its
    // end; raft pads the tar, and anything after its end marker is ignored as Go's reader does.
    io::copy(archive.into_inner().by_ref(), &mut io::sink()).map_err(VaultSnapshotError::Tar)?;
    for required in MemberName::ALL.into_iter().filter(|m| m.required()) {
        if !members.iter().any(|m| m.name == required) {
            return Err(VaultSnapshotError::Missing { member: required }.into());
        }
    }
    let (Some(meta_raw), Some(sums_raw), Some(meta_hash), Some(state_hash)) =
        (meta_raw, sums_raw, meta_hash, state_hash)
    else {
        return Err(VaultSnapshotError::Missing {
            member: MemberName::Sums,
        }
        .into());
    };
    let sums = Sha256Sums::parse(&sums_raw)?;
    sums.check(MemberName::Meta, &meta_hash)?;
    sums.check(MemberName::State, &state_hash)?;
    let meta = RaftMeta::parse(&meta_raw)?;
    if meta.size != state_size {
        return Err(VaultSnapshotError::BadMember {
            member: MemberName::State,
            reason: format!("{state_size} bytes, but meta.json says Size {}", meta.size),
        }
        .into());
    }
    Ok(ArchiveSummary {
        meta,
        sums,
        members,
    })
}

/// A sink that keeps nothing: for verifying a snapshot without storing it.
pub struct Discard;

impl MemberSink for Discard {
    type Error = VaultSnapshotError;

    fn small(&mut self, _: &Member, _: &[u8]) -> Result<(), VaultSnapshotError> {
        Ok(())
    }

    fn state(&mut self, member: &Member, data: &mut dyn Read) -> Result<(), VaultSnapshotError> {
        io::copy(data, &mut io::sink())
            .map(drop)
            .map_err(|source| VaultSnapshotError::Read {
                member: member.name,
                source,
            })
    }
}
