//! The uploader: stores finished packs with a few in flight, then indexes them.
//!
//! Runs on tokio. An index file is written only after every pack it names is durable,
//! every [`INDEX_EVERY_PACKS`] packs and at the end, so an interrupted run still leaves
//! its finished packs indexed for the next run to dedup against. The snapshot comes later
//! still, from the session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::repo::id::IndexId;
use crate::repo::index::IndexPack;
use crate::repo::{RepoError, Repository};

use super::pack::FinishedPack;
use super::PipelineError;

/// Index files are flushed at least this often during a long run (64 packs ≈ 1 GiB).
pub const INDEX_EVERY_PACKS: usize = 64;

/// What the upload stage did.
#[derive(Debug, Default)]
pub struct UploadOutcome {
    pub packs: u64,
    pub bytes_stored: u64,
    pub index_files: Vec<IndexId>,
}

async fn store_pack(repo: Repository, pack: FinishedPack) -> Result<IndexPack, RepoError> {
    let len = pack.bytes.len() as u64;
    repo.put_pack(pack.id, pack.bytes).await?;
    Ok(IndexPack {
        id: pack.id,
        len,
        entries: pack.entries,
    })
}

/// Receives packs until the packer closes the channel; stores them `parallel` at a time.
///
/// On the first failure it stops taking packs but lets the uploads already running end on
/// their own (each completes, or aborts its multipart upload), rather than dropping them
/// half-sent, and still indexes the packs that made it, so the next backup reuses them.
///
/// # Errors
/// The first store error.
pub async fn run_uploader(
    repo: Repository,
    mut input: mpsc::Receiver<FinishedPack>,
    parallel: usize,
    stored_counter: Arc<AtomicU64>,
) -> Result<UploadOutcome, PipelineError> {
    let mut outcome = UploadOutcome::default();
    let mut in_flight = JoinSet::new();
    let mut done: Vec<IndexPack> = Vec::new();
    let mut open = true;
    let mut failed: Option<PipelineError> = None;
    while open || !in_flight.is_empty() {
        tokio::select! {
            pack = input.recv(), if open && in_flight.len() < parallel.max(1) => match pack {
                Some(pack) => { in_flight.spawn(store_pack(repo.clone(), pack)); }
                None => open = false,
            },
            Some(joined) = in_flight.join_next() => {
                let packed = match joined {
                    Ok(Ok(packed)) => packed,
                    Ok(Err(e)) => {
                        failed.get_or_insert(e.into());
                        open = false;
                        continue;
                    }
                    Err(e) => {
                        failed.get_or_insert(PipelineError::Stage(format!("upload task: {e}")));
                        open = false;
                        continue;
                    }
                };
                outcome.packs += 1;
                outcome.bytes_stored += packed.len;
                stored_counter.fetch_add(packed.len, Ordering::Relaxed);
                done.push(packed);
                if done.len() >= INDEX_EVERY_PACKS && failed.is_none() {
                    let (id, len) = repo.put_index(&done).await?;
                    outcome.bytes_stored += len;
                    outcome.index_files.push(id);
                    done.clear();
                }
            }
        }
    }
    if !done.is_empty() {
        match repo.put_index(&done).await {
            Ok((id, len)) => {
                outcome.bytes_stored += len;
                outcome.index_files.push(id);
            }
            Err(e) => {
                failed.get_or_insert(e.into());
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}
