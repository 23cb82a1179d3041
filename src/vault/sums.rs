//! `SHA256SUMS`: the integrity list a raft snapshot carries for `meta.json` and `state.bin`.
//!
//! raft-snapshot writes one `"%x  %s\n"` line per member (in Go map order, so any order)
//! and on restore requires a line for each of the two members, a matching hash on every
//! line, and no other names. This parser accepts what that reader accepts, except that it
//! refuses a member listed twice with different hashes outright. The file's bytes are
//! never rewritten: `SHA256SUMS.sealed` is a seal over exactly them.

use sha2::{Digest, Sha256};

use super::{MemberName, VaultSnapshotError};

/// The hashes a snapshot's `SHA256SUMS` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sha256Sums {
    pub meta: [u8; 32],
    pub state: [u8; 32],
}

fn bad(reason: impl Into<String>) -> VaultSnapshotError {
    VaultSnapshotError::BadMember {
        member: MemberName::Sums,
        reason: reason.into(),
    }
}

impl Sha256Sums {
    /// Parses the file.
    ///
    /// # Errors
    /// [`VaultSnapshotError::BadMember`] naming `SHA256SUMS`: a line that is not
    /// `HEX  NAME`, a name other than `meta.json` or `state.bin`, a member listed twice
    /// with different hashes, or a member missing.
    pub fn parse(raw: &[u8]) -> Result<Sha256Sums, VaultSnapshotError> {
        let text = std::str::from_utf8(raw).map_err(|_| bad("not UTF-8 text"))?;
        let (mut meta, mut state) = (None, None);
        for (n, line) in text.lines().enumerate() {
            let mut words = line.split_ascii_whitespace();
            let (Some(hex_sum), Some(name), None) = (words.next(), words.next(), words.next())
            else {
                return Err(bad(format!("line {} is not `SHA256  NAME`", n + 1)));
            };
            let mut sum = [0u8; 32];
            hex::decode_to_slice(hex_sum, &mut sum)
                .map_err(|_| bad(format!("line {}: {hex_sum:?} is not a SHA-256", n + 1)))?;
            let slot = match MemberName::from_file_name(name.as_bytes()) {
                Some(MemberName::Meta) => &mut meta,
                Some(MemberName::State) => &mut state,
                _ => return Err(bad(format!("line {} lists {name:?}", n + 1))),
            };
            match slot {
                Some(earlier) if *earlier != sum => {
                    return Err(bad(format!(
                        "{name} is listed twice, with different hashes"
                    )))
                }
                _ => *slot = Some(sum),
            }
        }
        match (meta, state) {
            (Some(meta), Some(state)) => Ok(Sha256Sums { meta, state }),
            (None, _) => Err(bad("no line for meta.json")),
            (_, None) => Err(bad("no line for state.bin")),
        }
    }

    /// The listed hash of `member` (`meta.json` or `state.bin`).
    pub fn listed(&self, member: MemberName) -> Option<&[u8; 32]> {
        match member {
            MemberName::Meta => Some(&self.meta),
            MemberName::State => Some(&self.state),
            _ => None,
        }
    }

    /// Checks the hash `found` of `member` against the list.
    ///
    /// # Errors
    /// [`VaultSnapshotError::ChecksumMismatch`] naming the member.
    pub fn check(&self, member: MemberName, found: &[u8; 32]) -> Result<(), VaultSnapshotError> {
        match self.listed(member) {
            Some(listed) if listed == found => Ok(()),
            listed => Err(VaultSnapshotError::ChecksumMismatch {
                member,
                listed: listed.map(hex::encode).unwrap_or_else(|| "nothing".into()),
                found: hex::encode(found),
            }),
        }
    }

    /// The file as raft-snapshot writes it (meta.json first); for tests and tools that make
    /// snapshots.
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{}  meta.json\n{}  state.bin\n",
            hex::encode(self.meta),
            hex::encode(self.state)
        )
        .into_bytes()
    }
}

/// A SHA-256 of a member being read or written.
#[derive(Default, Clone)]
pub struct MemberHasher(Sha256);

impl MemberHasher {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// The SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_raft_writes_in_either_order() {
        let sums = Sha256Sums {
            meta: sha256(b"m"),
            state: sha256(b"s"),
        };
        assert_eq!(Sha256Sums::parse(&sums.encode()).unwrap(), sums);
        let reversed = format!(
            "{}  state.bin\n{}  meta.json\n",
            hex::encode(sums.state),
            hex::encode(sums.meta)
        );
        assert_eq!(Sha256Sums::parse(reversed.as_bytes()).unwrap(), sums);
        sums.check(MemberName::State, &sha256(b"s")).unwrap();
        let err = sums.check(MemberName::Meta, &sha256(b"x")).unwrap_err();
        assert!(
            err.to_string().starts_with("meta.json does not match"),
            "{err}"
        );
    }

    #[test]
    fn refuses_other_names_missing_members_and_junk() {
        let h = hex::encode(sha256(b""));
        for (raw, says) in [
            (format!("{h}  meta.json\n"), "no line for state.bin"),
            (format!("{h}  state.bin\n"), "no line for meta.json"),
            (
                format!("{h}  meta.json\n{h}  state.bin\n{h}  x\n"),
                "lists \"x\"",
            ),
            (format!("{h}  meta.json\n\n{h}  state.bin\n"), "line 2"),
            (format!("zz  meta.json\n{h}  state.bin\n"), "not a SHA-256"),
            (
                format!(
                    "{h}  meta.json\n{h}  state.bin\n{}  state.bin\n",
                    hex::encode([1; 32])
                ),
                "listed twice",
            ),
        ] {
            let err = Sha256Sums::parse(raw.as_bytes()).unwrap_err().to_string();
            assert!(
                err.starts_with("SHA256SUMS: ") && err.contains(says),
                "{err}"
            );
        }
    }
}
