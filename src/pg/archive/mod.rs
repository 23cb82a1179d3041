//! PostgreSQL's continuous archive: `archive_command` and `restore_command` done right.
//!
//! | piece | what it is |
//! |---|---|
//! | [`validate`] | what a file must be before it is stored |
//! | [`push`] | `wal-push`: one file, or a batch of `.ready` files pushed ahead |
//! | [`fetch`] | `wal-fetch` and the prefetcher behind it |
//! | [`spool`] | the local state that lets one call do the work of the next ones |
//! | [`window`] | what is restorable: timelines, runs of segments, gaps, commit times |
//!
//! The contract with the server is in `reference/postgresql.md` §7: exit 0 only once a
//! file is durable; for `restore_command`, a missing file is an ordinary answer (exit 1)
//! while "cannot tell" must abort recovery (exit above 125), or the server would take a
//! network error for the end of WAL and promote early.

pub mod fetch;
pub mod push;
pub mod spool;
pub mod validate;
pub mod window;

use std::path::PathBuf;

use crate::pg::wal::WalError;
use crate::repo::{RepoError, Repository};
use spool::Spool;

/// Why an archive command failed. Each variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {reason}")]
    BadName { path: PathBuf, reason: String },
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: refused, not a valid WAL file")]
    Invalid {
        path: PathBuf,
        #[source]
        source: WalError,
    },
    #[error(
        "{path}: refused: WAL from another cluster: its system identifier is {found}, but \
         cluster {cluster:?} in this repository is {expected}; give this cluster its own \
         name (--cluster / `cluster =` in the settings file)"
    )]
    ForeignCluster {
        path: PathBuf,
        cluster: String,
        expected: u64,
        found: u64,
    },
    #[error(
        "{location} has no WAL archive for cluster {cluster:?} (its first wal-push records \
         it); check the cluster name (--cluster, STOWAGE_CLUSTER or `cluster =`)"
    )]
    NoSuchCluster { cluster: String, location: String },
    #[error(
        "this data directory's pg_control has system identifier {found}, but the archive of \
         cluster {cluster:?} is of system {expected}: wrong cluster name for this server?"
    )]
    OtherSystem {
        cluster: String,
        expected: u64,
        found: u64,
    },
    #[error("{name} is not in the archive of cluster {cluster:?}")]
    NotArchived { name: String, cluster: String },
    #[error("opening the repository")]
    Open(#[source] anyhow::Error),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl ArchiveError {
    /// True when the repository answered that the file is not there (not a failure to ask).
    pub fn is_not_archived(&self) -> bool {
        matches!(self, ArchiveError::NotArchived { .. })
    }
}

/// The system identifier `repo` records for `cluster`, if any. The record is write-once,
/// so a copy in the spool (keyed by the repository's id) saves a read per call: per
/// segment pushed, and per "not archived" answer during recovery.
///
/// # Errors
/// Store errors and an unreadable record.
pub async fn cluster_id(
    repo: &Repository,
    cluster: &str,
    spool: Option<&Spool>,
) -> Result<Option<u64>, ArchiveError> {
    let repo_id = repo.config().id.to_string();
    if let Some(id) = spool.and_then(|s| s.cluster_id(&repo_id)) {
        return Ok(Some(id));
    }
    let id = repo
        .read_cluster(cluster)
        .await?
        .map(|r| r.system_identifier);
    if let (Some(id), Some(spool)) = (id, spool) {
        spool.set_cluster_id(&repo_id, id);
    }
    Ok(id)
}
