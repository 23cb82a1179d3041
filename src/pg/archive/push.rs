//! `wal-push`: store one file PostgreSQL hands to `archive_command`, and optionally the
//! next ones it is about to hand over.
//!
//! PostgreSQL archives one file per call, in order, and waits for each. With
//! `parallel > 1` a call that has to reach the repository anyway also pushes up to
//! `parallel - 1` more files already marked `.ready` in `archive_status/`, concurrently,
//! and records each one that became durable in the [`Spool`]; the calls for those files
//! then only re-hash the file and return. Nothing is ever acknowledged that is not durable:
//! a marker is written after the store confirms, and honoured only for identical bytes.

use std::future::Future;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::stream::{self, StreamExt};

use crate::pg::wal::WalFileName;
use crate::repo::wal::{ClusterRecord, WalPut, MAX_WAL_FILE_LEN};
use crate::repo::Repository;

use super::spool::Spool;
use super::validate;
use super::ArchiveError;

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub cluster: String,
    /// Files pushed per call at most, this one included (1 = just this one).
    pub parallel: usize,
    /// zstd level for WAL.
    pub level: i32,
    /// Where push-ahead markers live; `None` disables pushing ahead.
    pub spool: Option<Spool>,
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored by this call.
    Stored { raw_len: u64, stored_len: u64 },
    /// The repository already held the same content under this name.
    AlreadyStored,
    /// An earlier call had pushed it ahead; the spool said so for these exact bytes.
    PushedAhead,
}

/// The result of one `wal-push` call.
#[derive(Debug)]
pub struct PushReport {
    pub name: String,
    pub outcome: Outcome,
    /// Files pushed ahead by this call, and what became of each (an error here is not this
    /// call's failure: that file's own call will retry and report it).
    pub ahead: Vec<(String, Result<Outcome, String>)>,
}

/// Pushes the file at `path`. `open` is called only when the repository is needed (not
/// when the spool already vouches for the file).
///
/// # Errors
/// Anything that keeps the file from being durable in the repository, naming it.
pub async fn push<F, Fut>(
    options: &PushOptions,
    path: &Path,
    open: F,
) -> Result<PushReport, ArchiveError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<Repository>>,
{
    let name = validate::file_name(path)?;
    let spool = options.spool.as_ref().filter(|_| options.parallel > 1);
    let (raw, repo) = if spool.is_some_and(|s| s.has_marker(&name.to_string())) {
        let raw = read(path).await?;
        if spool.is_some_and(|s| s.take_pushed(&name, &raw)) {
            return Ok(PushReport {
                name: name.to_string(),
                outcome: Outcome::PushedAhead,
                ahead: Vec::new(),
            });
        }
        (raw, open().await.map_err(ArchiveError::Open)?)
    } else {
        // The usual case: reading the file and opening the repository overlap.
        let (raw, repo) = futures::join!(read(path), open());
        (raw?, repo.map_err(ArchiveError::Open)?)
    };
    let cluster_id = super::cluster_id(&repo, &options.cluster, options.spool.as_ref()).await?;
    // The very first push binds the cluster name; it goes alone.
    let ahead = match (spool, cluster_id) {
        (Some(spool), Some(_)) => ready_ahead(path, &name, options.parallel - 1, spool),
        _ => Vec::new(),
    };
    let own = push_one(&repo, options, path, &name, raw, cluster_id);
    let others = stream::iter(ahead)
        .map(|(path, name)| {
            let repo = &repo;
            async move {
                let result = async {
                    let raw = read(&path).await?;
                    let outcome =
                        push_one(repo, options, &path, &name, raw.clone(), cluster_id).await?;
                    if let Some(spool) = spool {
                        // Best effort: without the marker the file is simply pushed again.
                        let _ = spool.mark_pushed(&name, &raw);
                    }
                    Ok::<_, ArchiveError>(outcome)
                }
                .await;
                (name.to_string(), result.map_err(|e| format!("{e:#}")))
            }
        })
        .buffer_unordered(options.parallel.max(1))
        .collect::<Vec<_>>();
    let (own, ahead) = futures::join!(own, others);
    if let Some(spool) = spool {
        let status = archive_status(path);
        spool.prune_markers(|n| status.join(format!("{n}.ready")).exists());
    }
    Ok(PushReport {
        name: name.to_string(),
        outcome: own?,
        ahead,
    })
}

/// Reads a WAL file whole, in parallel parts for large files: the copy out of the page
/// cache and the page faults of a 16 MiB buffer are a fifth of a push's wall time when
/// done on one core.
async fn read(path: &Path) -> Result<Bytes, ArchiveError> {
    let owned = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || read_parallel(&owned))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    read.map(Bytes::from).map_err(|source| ArchiveError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_parallel(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    const PART: usize = 4 << 20;
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > MAX_WAL_FILE_LEN {
        return Err(std::io::Error::other(format!(
            "{len} bytes is more than a WAL file can be (1 GiB)"
        )));
    }
    let len = len as usize;
    let parts = len.div_ceil(PART).clamp(1, crate::repo::wal::cores());
    let part_len = len.div_ceil(parts).max(1);
    let mut buf = vec![0u8; len];
    std::thread::scope(|scope| {
        let readers: Vec<_> = buf
            .chunks_mut(part_len)
            .enumerate()
            .map(|(i, part)| {
                let file = &file;
                scope.spawn(move || file.read_exact_at(part, (i * part_len) as u64))
            })
            .collect();
        readers.into_iter().try_for_each(|r| {
            r.join()
                .unwrap_or_else(|_| Err(std::io::Error::other("reader thread failed")))
        })
    })?;
    // A file that grew while being read is not a finished WAL file.
    if file.metadata()?.len() != len as u64 {
        return Err(std::io::Error::other(
            "the file changed size while being read",
        ));
    }
    Ok(buf)
}

fn archive_status(path: &Path) -> PathBuf {
    path.parent()
        .unwrap_or(Path::new("."))
        .join("archive_status")
}

/// The next files PostgreSQL will archive, in its order (`.history` first, then oldest
/// name: `pgarch.c`), skipping `name` and those already pushed ahead.
fn ready_ahead(
    path: &Path,
    name: &WalFileName,
    count: usize,
    spool: &Spool,
) -> Vec<(PathBuf, WalFileName)> {
    let Ok(entries) = std::fs::read_dir(archive_status(path)) else {
        return Vec::new();
    };
    let own = name.to_string();
    let mut ready: Vec<(bool, String)> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            let stem = file.strip_suffix(".ready")?.to_string();
            (stem != own && !spool.has_marker(&stem)).then(|| (!stem.ends_with(".history"), stem))
        })
        .collect();
    ready.sort();
    let dir = path.parent().unwrap_or(Path::new("."));
    ready
        .into_iter()
        .filter_map(|(_, stem)| Some((dir.join(&stem), WalFileName::parse(&stem).ok()?)))
        .take(count)
        .collect()
}

/// Checks and stores one file; binds the cluster name on its first segment.
async fn push_one(
    repo: &Repository,
    options: &PushOptions,
    path: &Path,
    name: &WalFileName,
    raw: Bytes,
    cluster_id: Option<u64>,
) -> Result<Outcome, ArchiveError> {
    // Checking and sealing are both CPU work on the whole file and independent: run them
    // side by side (nothing is stored until the check has passed).
    let check = {
        let (owned, name, raw, cluster) = (
            path.to_path_buf(),
            *name,
            raw.clone(),
            options.cluster.clone(),
        );
        tokio::task::spawn_blocking(move || {
            validate::check(&owned, &name, &raw, &cluster, cluster_id)
        })
    };
    let seal = repo.seal_wal(&options.cluster, name, raw.clone(), options.level);
    let (checked, sealed) = futures::join!(check, seal);
    let summary = checked.map_err(|e| ArchiveError::Read {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })??;
    let sealed = sealed?;
    if let (None, Some(summary)) = (cluster_id, &summary) {
        let record = repo
            .record_cluster(&ClusterRecord {
                name: options.cluster.clone(),
                system_identifier: summary.system_identifier,
                pg_major: summary.pg_major,
                seg_size: summary.seg_size,
                recorded_at: chrono::Utc::now(),
                host: crate::host::hostname(),
            })
            .await?;
        if record.system_identifier != summary.system_identifier {
            return Err(ArchiveError::ForeignCluster {
                path: path.to_path_buf(),
                cluster: options.cluster.clone(),
                expected: record.system_identifier,
                found: summary.system_identifier,
            });
        }
        if let Some(spool) = &options.spool {
            spool.set_cluster_id(&repo.config().id.to_string(), record.system_identifier);
        }
    }
    let raw_len = raw.len() as u64;
    let put = repo
        .put_wal(&options.cluster, name, &raw, sealed, summary.as_ref())
        .await?;
    Ok(match put {
        WalPut::Stored { stored_len } => Outcome::Stored {
            raw_len,
            stored_len,
        },
        WalPut::AlreadyStored => Outcome::AlreadyStored,
    })
}
