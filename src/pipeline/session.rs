//! A backup run: the handle a source pushes streams and trees into.
//!
//! ```text
//! source thread ─ChunkReader─► [hash queue] ─► hasher: hash, dedup ─┬─► [chunk queue] ─► sealers ×N
//!  (this type: read, cut)                                            └─ duplicate: dropped   │
//!                                                                      packer ◄─[sealed queue]┘
//!                                                                        │ [pack queue]
//!                                                         uploader (tokio) ─► packs, then index
//! ```
//! The source thread reads and cuts; the hasher names chunks, decides dedup and builds each
//! stream's blob list in order, so the two costs every byte pays overlap. A stream's list
//! comes back as a [`PendingContent`] that the source resolves when it needs it (at the end
//! of a directory, say), so small files do not wait for the hasher one by one.
//! [`BackupSession::finish`] closes the queues in order and returns only when every pack
//! and the index naming them are durable; the caller writes the snapshot after that.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::repo::blob::{BlobKind, MAX_BLOB_LEN};
use crate::repo::crypto::Keys;
use crate::repo::id::BlobId;
use crate::repo::master_index::MasterIndex;
use crate::repo::snapshot::SnapshotStats;
use crate::repo::Repository;

use super::budget::Budget;
use super::buffers::ReadBuffers;
use super::hash::{run_hasher, HashJob, HashStats, StreamContent};
use super::pack::run_packer;
use super::read::ChunkReader;
use super::seal::spawn_sealers;
use super::split::{FastCdc, Fixed, Splitter};
use super::upload::{run_uploader, UploadOutcome};
use super::{PipelineError, Settings};

/// Bytes of pages handed to the hasher at once (a read-side batch, not a storage unit).
pub const PAGE_RUN_BYTES: usize = 256 * 1024;

/// Live counters for progress display (read from another thread).
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes_read: AtomicU64,
    pub bytes_stored: Arc<AtomicU64>,
}

/// A stream's content, known once the hasher reaches the stream's end; resolve it with
/// [`BackupSession::wait`].
#[must_use]
pub struct PendingContent(Receiver<StreamContent>);

pub struct BackupSession {
    keys: Keys,
    buffers: ReadBuffers,
    chunker: crate::repo::config::ChunkerParams,
    runtime: Handle,
    hash_tx: Option<Sender<HashJob>>,
    hasher: Option<std::thread::JoinHandle<HashStats>>,
    sealers: Vec<std::thread::JoinHandle<()>>,
    packer: Option<std::thread::JoinHandle<()>>,
    uploader: Option<tokio::task::JoinHandle<Result<UploadOutcome, PipelineError>>>,
    bytes_read: u64,
    hashed: HashStats,
    progress: Arc<Progress>,
}

impl BackupSession {
    /// Starts the stages. `index` is what the repository held when the run began.
    ///
    /// # Errors
    /// When the sealer threads cannot start (bad compression level, no threads).
    pub fn start(
        repo: &Repository,
        index: Arc<MasterIndex>,
        settings: Settings,
        runtime: Handle,
    ) -> Result<Self, PipelineError> {
        let config = repo.config();
        let workers = settings.workers.max(1);
        let pack_target = config.pack_target_bytes as usize;
        let (hash_tx, hash_rx) = crossbeam_channel::bounded(16);
        let (chunk_tx, chunk_rx) = crossbeam_channel::bounded(workers * 2);
        let (sealed_tx, sealed_rx) = crossbeam_channel::bounded(workers * 2);
        let (pack_tx, pack_rx) = mpsc::channel(1);
        let sealers = spawn_sealers(
            workers,
            repo.keys(),
            settings.compression_level,
            chunk_rx,
            sealed_tx,
        )
        .map_err(PipelineError::Start)?;
        let keys = repo.keys().clone();
        let hasher = std::thread::Builder::new()
            .name("stowage-hash".into())
            .spawn(move || run_hasher(keys, index, hash_rx, chunk_tx))
            .map_err(PipelineError::Start)?;
        let keys = repo.keys().clone();
        let packer = std::thread::Builder::new()
            .name("stowage-pack".into())
            .spawn(move || run_packer(keys, pack_target, sealed_rx, pack_tx))
            .map_err(PipelineError::Start)?;
        let progress = Arc::new(Progress::default());
        let uploader = runtime.spawn(run_uploader(
            repo.clone(),
            pack_rx,
            settings.uploads,
            progress.bytes_stored.clone(),
        ));
        let (read_budget, buffer_bytes) =
            memory_plan(&settings, pack_target, config.chunker.max_bytes as usize);
        Ok(BackupSession {
            keys: repo.keys().clone(),
            buffers: ReadBuffers::new(Budget::new(read_budget), buffer_bytes),
            chunker: config.chunker,
            runtime,
            hash_tx: Some(hash_tx),
            hasher: Some(hasher),
            sealers,
            packer: Some(packer),
            uploader: Some(uploader),
            bytes_read: 0,
            hashed: HashStats::default(),
            progress,
        })
    }

    /// The repository's content-defined splitter (its parameters and secret seed).
    pub fn content_splitter(&self) -> FastCdc {
        FastCdc::new(&self.chunker, self.keys.chunker_seed())
    }

    /// A content-defined splitter with other sizes (dumps cut finer), keyed by the
    /// repository's secret seed. `params` must have passed [`ChunkerParams::validate`].
    ///
    /// [`ChunkerParams::validate`]: crate::repo::config::ChunkerParams::validate
    pub fn content_splitter_with(&self, params: &crate::repo::config::ChunkerParams) -> FastCdc {
        FastCdc::new(params, self.keys.chunker_seed())
    }

    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Reads `reader` to its end, cut by `splitter`, and sends every chunk on to be hashed
    /// and, when new, stored. `what` names the source in errors (a path, `stdin`).
    ///
    /// # Errors
    /// [`PipelineError::Read`] naming `what`, or the failure of a later stage.
    pub fn add_stream<R: Read>(
        &mut self,
        reader: R,
        splitter: &mut dyn Splitter,
        size_hint: Option<u64>,
        what: &str,
    ) -> Result<PendingContent, PipelineError> {
        self.add_chunks(reader, splitter, size_hint, what, HashJob::Chunk)
    }

    /// Reads a page-structured file (PostgreSQL relation files, SQLite databases): every
    /// `page` bytes is one blob, so tomorrow's backup stores only the pages that changed,
    /// and the new pages of the file are compressed together in groups.
    ///
    /// # Errors
    /// As [`BackupSession::add_stream`].
    pub fn add_pages<R: Read>(
        &mut self,
        reader: R,
        page: usize,
        size_hint: Option<u64>,
        what: &str,
    ) -> Result<PendingContent, PipelineError> {
        let page = page.clamp(1, PAGE_RUN_BYTES);
        let mut runs = Fixed::new(PAGE_RUN_BYTES / page * page);
        self.add_chunks(reader, &mut runs, size_hint, what, |data| HashJob::Pages {
            data,
            page,
        })
    }

    fn add_chunks<R: Read>(
        &mut self,
        reader: R,
        splitter: &mut dyn Splitter,
        size_hint: Option<u64>,
        what: &str,
        job: impl Fn(Bytes) -> HashJob,
    ) -> Result<PendingContent, PipelineError> {
        let buffers = self.buffers.clone();
        let mut chunks = ChunkReader::new(reader, splitter, &buffers, size_hint);
        let mut reported = 0;
        loop {
            let chunk = match chunks.next_chunk() {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(source) => {
                    return Err(PipelineError::Read {
                        what: what.to_string(),
                        source,
                    })
                }
            };
            let read = chunks.bytes_read();
            self.progress
                .bytes_read
                .fetch_add(read - reported, Ordering::Relaxed);
            reported = read;
            self.send(job(chunk))?;
        }
        self.bytes_read += chunks.bytes_read();
        let (reply, pending) = crossbeam_channel::bounded(1);
        self.send(HashJob::EndStream(reply))?;
        Ok(PendingContent(pending))
    }

    /// The content of a stream passed to [`BackupSession::add_stream`]; blocks until the
    /// hasher has reached its end.
    ///
    /// # Errors
    /// The failure of a later stage.
    pub fn wait(&mut self, pending: PendingContent) -> Result<StreamContent, PipelineError> {
        match pending.0.recv() {
            Ok(content) => Ok(content),
            Err(_) => Err(self.shut_down().err().unwrap_or(PipelineError::Stopped)),
        }
    }

    /// Stores one blob whole (a tree, or a small object) and returns its id at once.
    ///
    /// # Errors
    /// [`PipelineError::TooLarge`], or the failure of a later stage.
    pub fn add_blob(&mut self, kind: BlobKind, data: Bytes) -> Result<BlobId, PipelineError> {
        if data.len() > MAX_BLOB_LEN {
            return Err(PipelineError::TooLarge { len: data.len() });
        }
        let id = self.keys.blob_id(&data);
        self.send(HashJob::Blob { kind, id, data })?;
        Ok(id)
    }

    fn send(&mut self, job: HashJob) -> Result<(), PipelineError> {
        let sent = match &self.hash_tx {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self.shut_down().err().unwrap_or(PipelineError::Stopped))
        }
    }

    /// Closes the queues in order and waits for every stage.
    fn shut_down(&mut self) -> Result<UploadOutcome, PipelineError> {
        self.hash_tx = None;
        let mut panicked = false;
        if let Some(hasher) = self.hasher.take() {
            match hasher.join() {
                Ok(stats) => self.hashed = stats,
                Err(_) => panicked = true,
            }
        }
        for sealer in self.sealers.drain(..) {
            panicked |= sealer.join().is_err();
        }
        if let Some(packer) = self.packer.take() {
            panicked |= packer.join().is_err();
        }
        let uploaded = match self.uploader.take() {
            Some(task) => match self.runtime.block_on(task) {
                Ok(result) => result,
                Err(e) => Err(PipelineError::Stage(format!("uploader: {e}"))),
            },
            None => Err(PipelineError::Stopped),
        };
        let outcome = uploaded?;
        if panicked {
            return Err(PipelineError::Stage(
                "a sealing or packing thread panicked".into(),
            ));
        }
        Ok(outcome)
    }

    /// Waits until everything this run stored is durable and indexed.
    ///
    /// # Errors
    /// The first failure of any stage.
    pub fn finish(mut self) -> Result<SnapshotStats, PipelineError> {
        let outcome = self.shut_down()?;
        Ok(SnapshotStats {
            bytes_read: self.bytes_read,
            bytes_new: self.hashed.bytes_new,
            bytes_stored: outcome.bytes_stored,
            blobs: self.hashed.blobs,
            blobs_new: self.hashed.blobs_new,
            ..SnapshotStats::default()
        })
    }
}

/// Splits the in-flight cap: packs in memory (one filling, one queued, `uploads` in
/// flight) come out of it first; read buffers get the rest. Returns the read budget and
/// the read buffer size.
///
/// The reader holds its current buffer while it waits for the next, so the budget must
/// fit two of the largest buffers it can ask for (a standard buffer, or a carried tail
/// plus one maximum chunk); otherwise it would wait for itself.
fn memory_plan(settings: &Settings, pack_target: usize, max_chunk: usize) -> (usize, usize) {
    let packs = pack_target * (2 + settings.uploads);
    let read_budget = settings
        .in_flight_bytes
        .saturating_sub(packs)
        .max(4 * max_chunk);
    let buffer_bytes = settings.buffer_bytes.min(read_budget / 2).max(max_chunk);
    (read_budget, buffer_bytes)
}

impl Drop for BackupSession {
    fn drop(&mut self) {
        // An abandoned run: stop feeding the stages and let them wind down on their own.
        self.hash_tx = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_plan_always_fits_two_buffers() {
        for in_flight in [0, 16 << 20, 64 << 20, 128 << 20, 1 << 30] {
            let mut settings = Settings::new(3);
            settings.in_flight_bytes = in_flight;
            let max_chunk = 4 << 20;
            let (budget, buffer) = memory_plan(&settings, 16 << 20, max_chunk);
            let largest_request = buffer.max(2 * max_chunk);
            assert!(
                2 * largest_request <= budget,
                "{in_flight}: {budget} < 2 × {largest_request}"
            );
        }
        let (budget, buffer) = memory_plan(&Settings::new(3), 16 << 20, 4 << 20);
        assert_eq!((budget, buffer), (64 << 20, 16 << 20), "the default plan");
    }
}
