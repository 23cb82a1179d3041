//! The members of a raft snapshot and the tar header facts kept for each.

use std::fmt;

/// One of the four members a raft snapshot may hold, in the order raft-snapshot writes
/// them (the order of the variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberName {
    Meta,
    State,
    Sums,
    SealedSums,
}

impl MemberName {
    /// Every member in archive order.
    pub const ALL: [MemberName; 4] = [
        MemberName::Meta,
        MemberName::State,
        MemberName::Sums,
        MemberName::SealedSums,
    ];

    /// The member's file name in the tar (and in the snapshot's tree).
    pub fn file_name(self) -> &'static str {
        match self {
            MemberName::Meta => "meta.json",
            MemberName::State => "state.bin",
            MemberName::Sums => "SHA256SUMS",
            MemberName::SealedSums => "SHA256SUMS.sealed",
        }
    }

    /// The member a file name denotes, if any (exact bytes: no `./` prefix, no case folding,
    /// as raft-snapshot compares them).
    pub fn from_file_name(name: &[u8]) -> Option<MemberName> {
        MemberName::ALL
            .into_iter()
            .find(|m| m.file_name().as_bytes() == name)
    }

    /// Whether the member must be present.
    pub fn required(self) -> bool {
        self != MemberName::SealedSums
    }
}

impl fmt::Display for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}

/// A member as its tar header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: MemberName,
    /// Permission bits (raft-snapshot writes 0600).
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch (the time of the snapshot).
    pub mtime: u64,
    /// Length in bytes.
    pub size: u64,
}
