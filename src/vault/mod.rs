//! HashiCorp Vault raft snapshots: the archive format and the HTTP API that makes and takes
//! them.
//!
//! A raft snapshot (the `hashicorp/raft-snapshot` format that Vault and Consul share) is a
//! gzip-compressed tar of exactly these members, written in this order:
//!
//! ```text
//! meta.json           raft's SnapshotMeta as JSON: index, term, configuration, size of state.bin
//! state.bin           the FSM's data (for Vault: its storage entries), the bulk of the file
//! SHA256SUMS          "<sha256 hex>  <name>\n" for meta.json and state.bin, in any order
//! SHA256SUMS.sealed   optional: SHA256SUMS sealed by Vault's seal (kept byte-exact, never opened)
//! ```
//!
//! Why the members are stored apart (see `source::vault`): compressed as one stream, a
//! snapshot changes throughout when one key changes and nothing deduplicates; unpacked,
//! tonight's `state.bin` shares most of its chunks with last night's.
//!
//! | file | idea |
//! |---|---|
//! | [`member`] | the four member names and what each tar header must say |
//! | [`sums`] | `SHA256SUMS`: parsed, and checked against the hashes of the members |
//! | [`meta`] | `meta.json`: the raft facts a snapshot records |
//! | [`archive`] | reading a `.snap` stream member by member, streaming `state.bin` |
//! | [`rebuild`] | writing the `.snap` back, verifying as it goes |
//! | [`api`] | `GET`/`POST /v1/sys/storage/raft/snapshot` over HTTP(S) |

pub mod api;
pub mod archive;
pub mod member;
pub mod meta;
pub mod rebuild;
pub mod sums;

pub use archive::{read_archive, ArchiveSummary, MemberSink};
pub use member::{Member, MemberName};
pub use meta::RaftMeta;
pub use sums::Sha256Sums;

/// Largest `meta.json`, `SHA256SUMS` or `SHA256SUMS.sealed` accepted: raft-snapshot's own
/// reader refuses a small member of 8,192 bytes or more as possibly truncated, so Vault
/// could not restore a snapshot that has one.
pub const SMALL_MEMBER_MAX: usize = 8191;

/// What is wrong with a raft snapshot; the member at fault is always named.
#[derive(Debug, thiserror::Error)]
pub enum VaultSnapshotError {
    #[error("not a gzip-compressed raft snapshot")]
    NotGzip(#[source] std::io::Error),
    #[error("reading the snapshot's tar stream")]
    Tar(#[source] std::io::Error),
    #[error("unexpected member {name:?} in the snapshot (only meta.json, state.bin, SHA256SUMS and SHA256SUMS.sealed belong there)")]
    UnexpectedMember { name: String },
    #[error("{member}: {reason}")]
    BadMember { member: MemberName, reason: String },
    #[error("the snapshot has no {member}")]
    Missing { member: MemberName },
    #[error("the snapshot holds {member} twice")]
    Duplicate { member: MemberName },
    #[error(
        "{member} does not match its SHA256SUMS entry (listed {listed}, content hashes to {found})"
    )]
    ChecksumMismatch {
        member: MemberName,
        listed: String,
        found: String,
    },
    #[error("writing the rebuilt snapshot")]
    Write(#[source] std::io::Error),
    #[error("reading {member}")]
    Read {
        member: MemberName,
        #[source]
        source: std::io::Error,
    },
}
