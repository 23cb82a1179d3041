//! Running one backup end to end: index → session → source → durable data → snapshot.
//!
//! The snapshot is the commit point: it is written only after [`BackupSession::finish`]
//! has made every pack and index durable, so a run killed at any moment leaves either
//! no snapshot or a complete one. Leftover packs from a killed run are harmless; the next
//! run dedups against whatever of them an index names.

use std::sync::Arc;

use crate::pipeline::{BackupSession, PipelineError, Progress, Settings};
use crate::repo::id::SnapshotId;
use crate::repo::snapshot::{Snapshot, SNAPSHOT_VERSION};
use crate::repo::Repository;
use crate::source::Source;

/// Who and what a snapshot is about, chosen by the caller.
#[derive(Debug, Clone, Default)]
pub struct SnapshotMeta {
    pub name: String,
    pub tags: Vec<String>,
    pub host: Option<String>,
    pub source: serde_json::Map<String, serde_json::Value>,
}

/// A finished backup.
#[derive(Debug)]
pub struct BackupResult {
    pub id: SnapshotId,
    pub snapshot: Snapshot,
    /// Non-fatal problems (unreadable files); the snapshot exists but is incomplete.
    pub warnings: Vec<String>,
}

/// Backs up `source` into `repo`. Blocks the calling thread, which must not be an async
/// worker (use `spawn_blocking`); `runtime` runs the store I/O.
///
/// `on_start` receives the live progress counters once the pipeline runs.
///
/// # Errors
/// Any failure; no snapshot is written then.
pub fn run_backup(
    repo: &Repository,
    runtime: &tokio::runtime::Handle,
    source: &mut dyn Source,
    meta: SnapshotMeta,
    settings: Settings,
    on_start: impl FnOnce(Arc<Progress>),
) -> Result<BackupResult, PipelineError> {
    let start = chrono::Utc::now();
    let index = Arc::new(runtime.block_on(repo.load_index())?);
    let mut session = BackupSession::start(repo, index, settings, runtime.clone())?;
    on_start(session.progress());
    let outcome = source.run(&mut session)?;
    let pipeline_stats = session.finish()?;
    let mut stats = outcome.report.stats;
    stats.bytes_read = pipeline_stats.bytes_read;
    stats.bytes_new = pipeline_stats.bytes_new;
    stats.bytes_stored = pipeline_stats.bytes_stored;
    stats.blobs = pipeline_stats.blobs;
    stats.blobs_new = pipeline_stats.blobs_new;
    let mut source_facts = meta.source;
    source_facts.extend(outcome.report.facts);
    let snapshot = Snapshot {
        version: SNAPSHOT_VERSION,
        kind: source.kind().to_string(),
        name: meta.name,
        host: meta.host.unwrap_or_else(crate::host::hostname),
        user: crate::host::username(),
        tags: meta.tags,
        paths: outcome.report.paths,
        start,
        end: chrono::Utc::now(),
        tree: outcome.tree,
        stats,
        source: source_facts,
    };
    let id = runtime.block_on(repo.put_snapshot(&snapshot))?;
    Ok(BackupResult {
        id,
        snapshot,
        warnings: outcome.report.warnings,
    })
}
