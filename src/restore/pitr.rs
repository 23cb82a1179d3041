//! Point-in-time restore: plan ([`crate::pg::recovery`]), restore the chosen base
//! backup, configure recovery. Used by `restore pg` and by `drill`.

use std::path::Path;

use crate::pg::recovery::config::write_recovery;
use crate::pg::recovery::{self, Plan, RecoveryError, RecoveryTarget};
use crate::repo::id::SnapshotId;
use crate::repo::master_index::MasterIndex;
use crate::repo::Repository;

pub use super::pg_base::Destination;
use super::pg_base::{restore_base, tablespace_targets, PgRestoreStats, TablespaceTarget};
use super::RestoreError;

/// Plans a restore of `cluster` to `target`: the base backup, the WAL, the stop.
/// `only` restricts the choice to one snapshot (`--backup`).
///
/// # Errors
/// [`RecoveryError`]: no backups, unknown timeline, or an unreachable target with the
/// restorable window.
pub async fn plan(
    repo: &Repository,
    cluster: &str,
    target: &RecoveryTarget,
    only: Option<SnapshotId>,
) -> Result<Plan, RecoveryError> {
    let (archive, mut backups) = recovery::load(repo, cluster).await?;
    if let Some(only) = only {
        backups.retain(|b| b.snapshot == only);
        if backups.is_empty() {
            return Err(RecoveryError::BadSnapshot {
                snapshot: only.short(),
                reason: format!("not a base backup of cluster {cluster:?}"),
            });
        }
    }
    recovery::plan(&archive, &backups, target)
}

/// What a point-in-time restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Restored {
    pub stats: PgRestoreStats,
    pub tablespaces: Vec<TablespaceTarget>,
}

/// Restores the base backup `plan` chose into `to`, then writes `recovery.signal` and
/// `settings` (the target's, `restore_command`, and any extra) into it.
///
/// # Errors
/// [`RestoreError::Refused`] for a target directory in the way (nothing written), else
/// the first failure.
pub async fn restore(
    repo: &Repository,
    index: &MasterIndex,
    plan: &Plan,
    to: &Destination,
    settings: &[(&str, String)],
) -> Result<Restored, RestoreError> {
    let id = plan.backup.snapshot;
    let snapshot = repo.read_snapshot(id).await?;
    let tablespaces = tablespace_targets(&snapshot, &to.tablespace_map)?;
    let stats = restore_base(repo, index, id, &snapshot, to, &tablespaces).await?;
    let header = format!(
        "recovery settings written by stowage: base backup {} to {}",
        id.short(),
        plan.stop.description
    );
    write_recovery(&to.pgdata, settings, &header).map_err(|source| RestoreError::Write {
        op: "configure recovery",
        path: to.pgdata.clone(),
        source,
    })?;
    Ok(Restored { stats, tablespaces })
}

/// `restore_command` for a restored cluster: this program's `wal-fetch`, with the
/// environment and options that find and open the same repository, as one shell
/// command line (the server runs it with `/bin/sh`).
pub fn restore_command(
    env: &[(&str, String)],
    program: &Path,
    options: &[String],
    cluster: &str,
) -> String {
    use crate::pg::recovery::config::shell_quote;
    let mut words: Vec<String> = env
        .iter()
        .map(|(k, v)| format!("{k}={}", shell_quote(v)))
        .collect();
    words.push(shell_quote(&program.to_string_lossy()));
    words.extend(options.iter().map(|o| shell_quote(o)));
    words.push("wal-fetch".into());
    words.push("--cluster".into());
    words.push(shell_quote(cluster));
    words.push("%f".into());
    words.push("%p".into());
    words.join(" ")
}
