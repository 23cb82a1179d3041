//! Restore: snapshot trees back to files, or one stored file to a stream.
//!
//! ```text
//! plan (walk trees) ─► ordered blob fetch + open, N in flight (tokio) ─► writer thread
//! ```
//! Blobs are fetched and verified several at a time but delivered in order, so each file
//! is written sequentially by one blocking thread that owns every file descriptor.
//!
//! Safety (why restoring a hostile snapshot cannot write outside the target):
//! 1. Every name is one path component: not empty, not `.` or `..`, no `/`, no NUL.
//! 2. A name appears at most once per directory, so a restored symlink can never be
//!    used as a directory by a later entry.
//! 3. Directories are created, or found to be real directories (never symlinks), before
//!    anything is written in them; files are opened with `O_NOFOLLOW`.

pub mod delta;
pub mod pg_base;
pub mod pg_dump;
pub mod pitr;
mod plan;
mod runs;
pub mod sqlite;
pub mod vault;
mod write;

pub use plan::{plan_tree, PlannedEntry};
pub use runs::runs;
pub use write::RestoreStats;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::repo::id::{BlobId, SnapshotId};
use crate::repo::master_index::MasterIndex;
use crate::repo::tree::NodeKind;
use crate::repo::{GroupCache, RepoError, Repository, SealedBlob};
use write::{Op, Writer};

/// Runs of blobs (see [`runs`]) fetched and opened at once.
pub const DEFAULT_PARALLEL: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("snapshot {snapshot}: tree {tree} has an unsafe entry name {name:?}; refusing to restore it")]
    UnsafeName {
        snapshot: SnapshotId,
        tree: BlobId,
        name: String,
    },
    #[error("snapshot {snapshot}: tree {tree} names {name:?} twice; refusing to restore it")]
    DuplicateName {
        snapshot: SnapshotId,
        tree: BlobId,
        name: String,
    },
    #[error("snapshot {snapshot}: tree {tree} cannot be decoded: {reason}")]
    BadTree {
        snapshot: SnapshotId,
        tree: BlobId,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Refused { path: PathBuf, reason: String },
    #[error("{path}: {op} failed")]
    Write {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot {snapshot} has no file {path:?}")]
    NoSuchPath { snapshot: SnapshotId, path: String },
    #[error("snapshot {snapshot} holds {count} entries; name the one to stream")]
    NeedPath { snapshot: SnapshotId, count: usize },
    #[error("{path}: stored content is {found} bytes, the tree says {expected}")]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("restore writer stopped")]
    WriterGone,
    #[error("snapshot {snapshot} holds the dumps of several databases ({databases})")]
    ChooseDump {
        snapshot: SnapshotId,
        databases: String,
    },
    #[error(transparent)]
    Program(#[from] crate::source::child::ChildError),
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultSnapshotError),
    #[error(transparent)]
    VaultApi(#[from] crate::vault::api::VaultApiError),
    #[error(transparent)]
    Sqlite(#[from] crate::sqlite::SqliteError),
}

/// Runs fetched at once, beside the `parallel` blobs being opened: enough to keep
/// requests in flight while the cores decrypt, few enough to bound memory (8 MiB a run).
fn fetch_parallel(parallel: usize) -> usize {
    (parallel / 2).clamp(2, 8)
}

/// Something a restore stream carries: an item passed through in its place (a file's
/// start or end, for the writer), or a blob to fetch and open.
enum Job<T> {
    Pass(T),
    Blob(BlobId),
}

/// A [`Job`] done: the item passed through, or the blob's content.
enum Done<T> {
    Pass(T),
    Data(Bytes),
}

/// The blob of a job, if it has one.
fn blob_of<T>(job: &Job<T>) -> Option<BlobId> {
    match job {
        Job::Blob(id) => Some(*id),
        Job::Pass(_) => None,
    }
}

/// Carries out `jobs` in order: blobs are fetched a run at a time (one ranged read for
/// blobs stored side by side, [`runs`]), `fetch_parallel` runs at once, and opened and
/// verified `parallel` at once on the blocking pool; passed items keep their place.
fn ordered<'a, T: Send + 'a>(
    repo: &'a Repository,
    index: &'a MasterIndex,
    jobs: impl IntoIterator<Item = Job<T>>,
    parallel: usize,
) -> impl futures::Stream<Item = Result<Done<T>, RepoError>> + 'a {
    /// A job whose run was fetched: one blob still sealed, or members of one group
    /// (opened together).
    enum Fetched<T> {
        Pass(T),
        Sealed(Vec<SealedBlob>),
    }
    let groups = Arc::new(GroupCache::default());
    stream::iter(runs(index, jobs, blob_of))
        .map(move |run| async move {
            let ids: Vec<BlobId> = run.iter().filter_map(blob_of).collect();
            let mut sealed = repo.fetch_blob_run(index, &ids).await?.into_iter();
            let mut fetched: Vec<Fetched<T>> = Vec::with_capacity(run.len());
            for job in run {
                match job {
                    Job::Pass(item) => fetched.push(Fetched::Pass(item)),
                    Job::Blob(id) => {
                        let blob = sealed
                            .next()
                            .ok_or(RepoError::BlobNotIndexed { blob: id })?;
                        match fetched.last_mut() {
                            Some(Fetched::Sealed(unit)) if unit[0].same_group(&blob) => {
                                unit.push(blob)
                            }
                            _ => fetched.push(Fetched::Sealed(vec![blob])),
                        }
                    }
                }
            }
            Ok::<_, RepoError>(fetched)
        })
        .buffered(fetch_parallel(parallel))
        .map_ok(|fetched| stream::iter(fetched.into_iter().map(Ok)))
        .try_flatten()
        .map_ok(move |fetched| {
            let groups = groups.clone();
            async move {
                match fetched {
                    Fetched::Pass(item) => Ok(vec![Done::Pass(item)]),
                    Fetched::Sealed(unit) => repo
                        .open_sealed(unit, &groups)
                        .await
                        .map(|data| data.into_iter().map(Done::Data).collect()),
                }
            }
        })
        .try_buffered(parallel.max(1))
        .map_ok(|done: Vec<Done<T>>| stream::iter(done.into_iter().map(Ok)))
        .try_flatten()
}

/// Streams the blobs of `ids` in order (see [`ordered`]).
pub fn blob_stream<'a>(
    repo: &'a Repository,
    index: &'a MasterIndex,
    ids: impl IntoIterator<Item = BlobId> + 'a,
    parallel: usize,
) -> impl futures::Stream<Item = Result<Bytes, RepoError>> + 'a {
    let jobs = ids.into_iter().map(Job::<Infallible>::Blob);
    ordered(repo, index, jobs, parallel).map_ok(|done| match done {
        Done::Data(data) => data,
        Done::Pass(never) => match never {},
    })
}

/// Restores the whole snapshot under `target` (created if missing).
///
/// # Errors
/// A [`RestoreError`] naming the entry at fault; files written before it stay.
pub async fn restore_snapshot(
    repo: &Repository,
    index: &MasterIndex,
    snapshot: SnapshotId,
    tree: BlobId,
    target: &Path,
    parallel: usize,
) -> Result<RestoreStats, RestoreError> {
    let entries = plan_tree(repo, index, snapshot, tree).await?;
    restore_entries(repo, index, entries, target, Mode::Fresh, parallel).await
}

/// How [`restore_entries`] treats what is already in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Files are created or truncated and written whole.
    Fresh,
    /// Delta: what the snapshot lacks is removed, and files are compared blob by blob
    /// with the snapshot and patched where they differ ([`delta`]).
    Delta,
    /// Delta into a directory shared with others (a tablespace location): names at its
    /// top that the snapshot lacks are left alone.
    DeltaShared,
}

/// Restores planned `entries` (paths relative to `target`, directories first) under
/// `target`, created if missing.
///
/// # Errors
/// A [`RestoreError`] naming the entry at fault; files written before it stay.
pub async fn restore_entries(
    repo: &Repository,
    index: &MasterIndex,
    entries: Vec<PlannedEntry>,
    target: &Path,
    mode: Mode,
    parallel: usize,
) -> Result<RestoreStats, RestoreError> {
    std::fs::create_dir_all(target).map_err(|source| RestoreError::Write {
        op: "create directory",
        path: target.to_path_buf(),
        source,
    })?;
    let (entries, matches) = match mode {
        Mode::Fresh => (entries, None),
        Mode::Delta | Mode::DeltaShared => {
            let root = target.to_path_buf();
            let keys = repo.keys().clone();
            let index_ref = index;
            // Reading and hashing the files is blocking work; the index is borrowed,
            // so this runs on a scoped thread inside the blocking section.
            let (entries, found) = tokio::task::block_in_place(|| {
                delta::remove_extra(&root, &entries, mode == Mode::DeltaShared)?;
                let found =
                    delta::scan(&keys, index_ref, &root, &entries, crate::repo::wal::cores())?;
                Ok::<_, RestoreError>((entries, found))
            })?;
            (entries, Some(found))
        }
    };
    let (writer, tx) = Writer::spawn(target.to_path_buf());
    let mut matches = matches.map(Vec::into_iter);
    let jobs = entries.into_iter().flat_map(|entry| {
        let found = matches.as_mut().and_then(Iterator::next).flatten();
        let is_file = entry.node.kind == NodeKind::File;
        if !is_file {
            return vec![Job::Pass(Op::Start(entry))];
        }
        let blobs = entry.node.content.clone();
        let mut jobs = Vec::with_capacity(blobs.len() + 2);
        match found {
            None => {
                jobs.push(Job::Pass(Op::Start(entry)));
                jobs.extend(blobs.into_iter().map(Job::Blob));
            }
            Some(found) => {
                jobs.push(Job::Pass(Op::Patch(entry)));
                for (id, same) in blobs.into_iter().zip(found) {
                    match (same, index.get(&id)) {
                        (true, Some(loc)) => jobs.push(Job::Pass(Op::Skip(u64::from(loc.raw_len)))),
                        _ => jobs.push(Job::Blob(id)),
                    }
                }
            }
        }
        jobs.push(Job::Pass(Op::EndFile));
        jobs
    });
    let mut stream = ordered(repo, index, jobs, parallel).map_ok(|done| match done {
        Done::Pass(op) => op,
        Done::Data(data) => Op::Data(data),
    });
    let fetched = forward_batched(&mut stream, &tx).await;
    drop(tx);
    let written = writer.finish().await;
    fetched?;
    written
}

/// Data gathered into one batch for the writer thread.
const BATCH_BYTES: usize = 1 << 20;
/// Ops gathered into one batch at most.
const BATCH_OPS: usize = 256;

/// Like [`forward`], but sends what the stream has ready in batches (up to
/// [`BATCH_BYTES`] of data): a base backup restores a page (8 KiB) per op, and handing
/// each to the writer thread on its own cost a thread wake-up per page, which left the
/// writer idle a third of the time.
async fn forward_batched(
    stream: &mut (impl futures::Stream<Item = Result<Op, RepoError>> + Unpin),
    tx: &tokio::sync::mpsc::Sender<Vec<Op>>,
) -> Result<(), RepoError> {
    use futures::FutureExt;
    let mut ended = false;
    while !ended {
        let Some(first) = stream.next().await else {
            break;
        };
        let first = first?;
        let mut bytes = first.len();
        let mut batch = vec![first];
        while bytes < BATCH_BYTES && batch.len() < BATCH_OPS {
            match stream.next().now_or_never() {
                Some(Some(op)) => {
                    let op = op?;
                    bytes += op.len();
                    batch.push(op);
                }
                Some(None) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        if tx.send(batch).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Sends each item of `stream` on `tx` until either ends; the first fetch error stops it.
/// A closed `tx` means the consumer failed; its own error is the one to report.
async fn forward<T>(
    stream: &mut (impl futures::Stream<Item = Result<T, RepoError>> + Unpin),
    tx: &tokio::sync::mpsc::Sender<T>,
) -> Result<(), RepoError> {
    while let Some(item) = stream.next().await {
        if tx.send(item?).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Streams one stored file into `out` (standard output for `cat`), blobs fetched and
/// verified `parallel` at a time, written in order by a blocking thread.
///
/// Returns the bytes written, or `None` when the reader went away early (`| head`), which
/// is not a failure of the restore.
///
/// # Errors
/// The first fetch or write error, or [`RestoreError::SizeMismatch`] when the stored
/// content does not add up to the size the tree records.
pub async fn stream_file<W: std::io::Write + Send + 'static>(
    repo: &Repository,
    index: &MasterIndex,
    entry: &PlannedEntry,
    mut out: W,
    parallel: usize,
) -> Result<Option<u64>, RestoreError> {
    use std::io::ErrorKind::BrokenPipe;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(parallel.max(1));
    let path = entry.path.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<Option<u64>, RestoreError> {
        let failed = |source| RestoreError::Write {
            op: "write",
            path: path.clone(),
            source,
        };
        let mut written = 0;
        while let Some(chunk) = rx.blocking_recv() {
            match out.write_all(&chunk) {
                Ok(()) => written += chunk.len() as u64,
                Err(e) if e.kind() == BrokenPipe => return Ok(None),
                Err(e) => return Err(failed(e)),
            }
        }
        match out.flush() {
            Err(e) if e.kind() == BrokenPipe => Ok(None),
            other => other.map(|()| Some(written)).map_err(failed),
        }
    });
    let mut blobs = blob_stream(repo, index, entry.node.content.clone(), parallel);
    let fetched = forward(&mut blobs, &tx).await;
    drop(tx);
    let written = writer.await.map_err(|_| RestoreError::WriterGone)??;
    fetched?;
    if let Some(found) = written {
        if found != entry.node.size {
            return Err(RestoreError::SizeMismatch {
                path: entry.path.clone(),
                expected: entry.node.size,
                found,
            });
        }
    }
    Ok(written)
}

/// Finds the file to stream for `cat`: `path` inside the snapshot, or its only file.
///
/// # Errors
/// [`RestoreError::NoSuchPath`], or [`RestoreError::NeedPath`] when `path` is `None` and
/// the snapshot holds more than one entry.
pub async fn find_file(
    repo: &Repository,
    index: &MasterIndex,
    snapshot: SnapshotId,
    tree: BlobId,
    path: Option<&str>,
) -> Result<PlannedEntry, RestoreError> {
    let entries = plan_tree(repo, index, snapshot, tree).await?;
    let files: Vec<PlannedEntry> = entries
        .into_iter()
        .filter(|e| e.node.kind == NodeKind::File)
        .collect();
    match path {
        None if files.len() == 1 => Ok(files.into_iter().next().ok_or(RestoreError::WriterGone)?),
        None => Err(RestoreError::NeedPath {
            snapshot,
            count: files.len(),
        }),
        Some(wanted) => {
            let wanted = Path::new(wanted.trim_start_matches('/'));
            files
                .into_iter()
                .find(|e| e.path == wanted)
                .ok_or_else(|| RestoreError::NoSuchPath {
                    snapshot,
                    path: wanted.display().to_string(),
                })
        }
    }
}
