//! `stowage restore SNAPSHOT --to FILE` for a `sqlite` snapshot: a database file that
//! passes `PRAGMA integrity_check`, never written over one another process has open.

use std::path::Path;
use std::time::Instant;

use stowage::repo::id::SnapshotId;
use stowage::repo::master_index::MasterIndex;
use stowage::repo::snapshot::Snapshot;
use stowage::repo::Repository;
use stowage::restore::sqlite::restore_to_file;
use stowage::restore::DEFAULT_PARALLEL;

use super::super::render::{self, print_json};
use super::super::Resolved;

pub async fn run(
    settings: &Resolved,
    repo: &Repository,
    index: &MasterIndex,
    id: SnapshotId,
    snapshot: &Snapshot,
    to: &Path,
    force: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let done = restore_to_file(repo, index, id, snapshot.tree, to, force, DEFAULT_PARALLEL).await?;
    let elapsed = started.elapsed();
    if settings.json {
        print_json(&serde_json::json!({
            "snapshot": id,
            "target": done.path,
            "bytes": done.bytes,
            "integrity_check": "ok",
            "duration_secs": elapsed.as_secs_f64(),
        }))?;
    } else if !settings.quiet {
        println!(
            "restored snapshot {} to {}: {}, integrity_check ok, in {:.1} s",
            id.short(),
            done.path.display(),
            render::bytes(done.bytes),
            elapsed.as_secs_f64(),
        );
    }
    Ok(())
}
