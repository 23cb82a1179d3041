//! Writing a raft snapshot back as raft-snapshot writes it, verifying as it goes.
//!
//! The layout (REPOSITORY.md §11, kind `vault`): a gzip stream (one member, level 1: Vault's
//! state is encrypted values that do not compress, and level 6 costs several times the CPU
//! for the same size)
//! of a ustar archive whose members come in the order `meta.json`, `state.bin`,
//! `SHA256SUMS`, then `SHA256SUMS.sealed` when the snapshot had it; each a regular file
//! with the mode and modification time recorded at backup (raft writes 0600 and the time
//! of the snapshot), uid and gid 0, no owner names; the archive ends with two zero blocks.
//! Only the members' bytes are covered by `SHA256SUMS`, so a Vault that made the snapshot
//! accepts the rebuilt file although its tar and gzip framing need not be byte-identical.
//!
//! Invariant: `SHA256SUMS` (and anything after it) is written only once `meta.json` and
//! `state.bin` have matched their listed hashes, and the gzip trailer only once every
//! member was whole, so a failed check leaves a truncated stream that no reader accepts.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;

use super::sums::MemberHasher;
use super::{Member, MemberName, Sha256Sums, VaultSnapshotError};

const BLOCK: usize = 512;

/// A member being written.
struct Open {
    member: Member,
    hasher: MemberHasher,
    written: u64,
}

/// Writes a `.snap` member by member.
pub struct SnapWriter<W: Write> {
    gzip: GzEncoder<W>,
    sums: Sha256Sums,
    open: Option<Open>,
    verified: Vec<MemberName>,
}

fn write_err(e: std::io::Error) -> VaultSnapshotError {
    VaultSnapshotError::Write(e)
}

impl<W: Write> SnapWriter<W> {
    /// A writer into `out` for a snapshot whose `SHA256SUMS` lists `sums`.
    pub fn new(out: W, sums: Sha256Sums) -> Self {
        SnapWriter {
            gzip: GzEncoder::new(out, Compression::fast()),
            sums,
            open: None,
            verified: Vec::new(),
        }
    }

    /// Starts `member`: writes its tar header.
    ///
    /// # Errors
    /// [`VaultSnapshotError::BadMember`] when `SHA256SUMS` comes before both members it
    /// lists were verified, or a write error.
    pub fn begin(&mut self, member: &Member) -> Result<(), VaultSnapshotError> {
        self.end()?;
        if matches!(member.name, MemberName::Sums | MemberName::SealedSums)
            && self.verified.len() < 2
        {
            return Err(VaultSnapshotError::BadMember {
                member: member.name,
                reason: "cannot be written before meta.json and state.bin are verified".into(),
            });
        }
        let mut header = tar::Header::new_ustar();
        header
            .set_path(member.name.file_name())
            .map_err(write_err)?;
        header.set_size(member.size);
        header.set_mode(member.mode);
        header.set_mtime(member.mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        self.gzip.write_all(header.as_bytes()).map_err(write_err)?;
        self.open = Some(Open {
            member: member.clone(),
            hasher: MemberHasher::default(),
            written: 0,
        });
        Ok(())
    }

    /// Appends bytes to the member begun last.
    ///
    /// # Errors
    /// [`VaultSnapshotError::BadMember`] when more bytes come than the member's size, or a
    /// write error.
    pub fn write(&mut self, data: &[u8]) -> Result<(), VaultSnapshotError> {
        let Some(open) = self.open.as_mut() else {
            return Err(write_err(std::io::Error::other("no member begun")));
        };
        open.written += data.len() as u64;
        if open.written > open.member.size {
            return Err(VaultSnapshotError::BadMember {
                member: open.member.name,
                reason: format!("holds more than its {} bytes", open.member.size),
            });
        }
        open.hasher.update(data);
        self.gzip.write_all(data).map_err(write_err)
    }

    /// Ends the open member: checks its length and, for `meta.json` and `state.bin`, its
    /// hash; pads it to a whole block.
    fn end(&mut self) -> Result<(), VaultSnapshotError> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let name = open.member.name;
        if open.written != open.member.size {
            return Err(VaultSnapshotError::BadMember {
                member: name,
                reason: format!(
                    "{} bytes stored, {} recorded",
                    open.written, open.member.size
                ),
            });
        }
        if matches!(name, MemberName::Meta | MemberName::State) {
            self.sums.check(name, &open.hasher.finish())?;
            self.verified.push(name);
        }
        let pad = (BLOCK - (open.written % BLOCK as u64) as usize) % BLOCK;
        self.gzip.write_all(&[0u8; BLOCK][..pad]).map_err(write_err)
    }

    /// Ends the archive and the gzip stream and returns the output.
    ///
    /// # Errors
    /// As [`SnapWriter::begin`], or [`VaultSnapshotError::Missing`] when a required member
    /// was never written.
    pub fn finish(mut self) -> Result<W, VaultSnapshotError> {
        self.end()?;
        if self.verified.len() < 2 {
            let missing = if self.verified.contains(&MemberName::Meta) {
                MemberName::State
            } else {
                MemberName::Meta
            };
            return Err(VaultSnapshotError::Missing { member: missing });
        }
        self.gzip.write_all(&[0u8; 2 * BLOCK]).map_err(write_err)?;
        self.gzip.finish().map_err(write_err)
    }
}

/// Writes a whole snapshot of the given members (in [`MemberName::ALL`] order, `sums`
/// being the content of `SHA256SUMS`) into `out`: for tests, the fuzz target and
/// `benches/`, which make snapshots without a Vault.
///
/// # Errors
/// As [`SnapWriter`].
pub fn write_snapshot<W: Write>(
    out: W,
    members: &[(Member, &[u8])],
) -> Result<W, VaultSnapshotError> {
    let sums_raw = members
        .iter()
        .find(|(m, _)| m.name == MemberName::Sums)
        .map(|(_, data)| *data)
        .ok_or(VaultSnapshotError::Missing {
            member: MemberName::Sums,
        })?;
    let mut writer = SnapWriter::new(out, Sha256Sums::parse(sums_raw)?);
    for (member, data) in members {
        writer.begin(member)?;
        writer.write(data)?;
    }
    writer.finish()
}
