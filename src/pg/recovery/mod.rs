//! Point-in-time recovery: from a target a user names to the base backup, the WAL and
//! the settings that reach it.
//!
//! | piece | what it is |
//! |---|---|
//! | [`target`] | targets as users write them and as `postgresql.auto.conf` spells them |
//! | [`archive`] | the archive as recovery reads it: which file serves each segment of a timeline path |
//! | [`plan`] | choosing the newest base backup that reaches the target, or refusing with the window |
//! | [`config`] | `recovery.signal` and the recovery settings written into a restored data directory |
//!
//! Everything here is decided from the repository's listings, WAL summaries and
//! snapshot records before any data is read, so an unreachable target costs nothing.

pub mod archive;
pub mod config;
pub mod plan;
pub mod target;

pub use archive::{Archive, Span, TimelinePath};
pub use plan::{plan, BaseBackup, Plan, Stop};
pub use target::{RecoveryTarget, Target, TargetAction, TimelineChoice};

use crate::pg::archive::ArchiveError;
use crate::repo::{RepoError, Repository};

/// Why a recovery cannot be planned or set up.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("{what} {text:?}: expected {expected}")]
    BadTarget {
        what: &'static str,
        text: String,
        expected: &'static str,
    },
    #[error(
        "the repository has no base backup of cluster {cluster:?}; take one with \
         `stowage backup pg-base` (and check --cluster)"
    )]
    NoBackups { cluster: String },
    #[error(
        "timeline {tli} has no history file in the archive of cluster {cluster:?}, so it \
         cannot be followed (PostgreSQL: \"recovery target timeline {tli} does not exist\")"
    )]
    NoHistory { cluster: String, tli: u32 },
    #[error("cannot restore to {target}: {reason}\n{window}")]
    Unreachable {
        target: String,
        reason: String,
        window: String,
    },
    #[error("snapshot {snapshot} cannot be used: {reason}")]
    BadSnapshot { snapshot: String, reason: String },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// The archive of `cluster` and the base backups of it in `repo`.
///
/// # Errors
/// Store errors; a base-backup snapshot whose `source` is malformed.
pub async fn load(
    repo: &Repository,
    cluster: &str,
) -> Result<(Archive, Vec<BaseBackup>), RecoveryError> {
    let archive = Archive::load(repo, cluster).await?;
    let mut backups = Vec::new();
    for (id, snapshot) in repo.load_snapshots().await? {
        match BaseBackup::of_cluster(id, &snapshot, cluster) {
            Some(Ok(backup)) => backups.push(backup),
            Some(Err(reason)) => {
                return Err(RecoveryError::BadSnapshot {
                    snapshot: id.short(),
                    reason,
                })
            }
            None => {}
        }
    }
    Ok((archive, backups))
}
