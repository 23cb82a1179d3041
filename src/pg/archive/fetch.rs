//! `wal-fetch`: hand PostgreSQL one verified archived file, and fetch the next segments
//! ahead so that recovery is bound by replay, not by round trips.
//!
//! Recovery calls `restore_command` once per file and waits. A prefetcher (a background
//! process started by the first call, one at a time under a lock) fetches the segments
//! that follow into the [`Spool`], verified and fsynced; later calls rename them into
//! place. The spool sits beside `pg_wal`, so that rename is not a copy.

use std::future::Future;
use std::path::{Path, PathBuf};

use futures::stream::{self, StreamExt};

use crate::pg::wal::page::SegmentGeometry;
use crate::pg::wal::{SegmentName, WalFileName};
use crate::repo::{RepoError, Repository};
use crate::store::StoreError;

use super::spool::{write_atomic, Spool};
use super::ArchiveError;

/// Segment size assumed when the repository has no record of the cluster.
const DEFAULT_SEG_SIZE: u32 = 16 << 20;
/// Segments fetched at once by the prefetcher.
const PREFETCH_CONCURRENCY: usize = 4;

/// Where the file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Fetched ahead by an earlier call.
    Spool,
    /// Fetched from the repository by this call.
    Repository,
}

/// Writes the archived file `name` of `cluster` to `dest`. `open` is called only when the
/// spool does not already hold the file.
///
/// # Errors
/// [`ArchiveError::NotArchived`] when the repository does not have it (PostgreSQL's
/// ordinary "no such file"); anything else means the answer is unknown.
pub async fn fetch<F, Fut>(
    cluster: &str,
    spool: Option<&Spool>,
    name: &str,
    dest: &Path,
    open: F,
) -> Result<Source, ArchiveError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<Repository>>,
{
    let parsed = WalFileName::parse(name).map_err(|e| ArchiveError::BadName {
        path: PathBuf::from(name),
        reason: e.to_string(),
    })?;
    let control_id = control_system_identifier(dest);
    if let Some(spool) = spool {
        forget_passed(spool, &parsed);
        let ahead = spool.fetched_path(name);
        if ahead.exists() {
            if spooled_is_sound(&ahead, &parsed, control_id)
                && std::fs::rename(&ahead, dest).is_ok()
            {
                return Ok(Source::Spool);
            }
            let _ = std::fs::remove_file(&ahead);
        }
    }
    let repo = open().await.map_err(ArchiveError::Open)?;
    let raw = match repo.get_wal(cluster, &parsed).await {
        Ok(raw) => raw,
        Err(RepoError::Store(StoreError::NotFound { .. })) => {
            // "Not archived" ends recovery; say it only when this is the right archive.
            // A mistyped cluster name would otherwise promote the server at the first
            // segment it asks for.
            let recorded = super::cluster_id(&repo, cluster, spool).await?;
            return Err(match (recorded, control_id) {
                (None, _) => ArchiveError::NoSuchCluster {
                    cluster: cluster.to_string(),
                    location: repo.location(),
                },
                (Some(expected), Some(found)) if expected != found => ArchiveError::OtherSystem {
                    cluster: cluster.to_string(),
                    expected,
                    found,
                },
                (Some(_), _) => ArchiveError::NotArchived {
                    name: name.to_string(),
                    cluster: cluster.to_string(),
                },
            });
        }
        Err(e) => return Err(e.into()),
    };
    write_atomic(dest, &raw, true).map_err(|source| ArchiveError::Write {
        path: dest.to_path_buf(),
        source,
    })?;
    Ok(Source::Repository)
}

/// The system identifier of the data directory `dest` is in (`restore_command` runs
/// there, with `%p` = `pg_wal/RECOVERYXLOG`), if there is one.
fn control_system_identifier(dest: &Path) -> Option<u64> {
    crate::pg::control::system_identifier(dest.parent()?.parent()?).ok()
}

/// Whether a prefetched file is still what it claims: its first page names this segment,
/// and this cluster when the data directory says which. The spool is keyed by the
/// repository's location, which can come to hold another repository.
fn spooled_is_sound(path: &Path, name: &WalFileName, control_id: Option<u64>) -> bool {
    let WalFileName::Segment(seg) = name else {
        return false;
    };
    let mut first = vec![0u8; 8192];
    let read = std::fs::File::open(path).and_then(|mut f| {
        let n = std::io::Read::read(&mut f, &mut first)?;
        Ok((n, f.metadata()?.len()))
    });
    let Ok((n, len)) = read else {
        return false;
    };
    match SegmentGeometry::read(seg, &first[..n]) {
        Ok(geometry) => {
            u64::from(geometry.seg_size) == len && control_id.is_none_or(|id| id == geometry.sysid)
        }
        Err(_) => false,
    }
}

/// Drops prefetched segments recovery has passed: those before `name` on its timeline.
/// Other timelines' files stay: recovery asks for each segment on every timeline of its
/// path, newest first, so a request on one timeline says nothing about the others (and
/// what a prefetcher left is bounded by its count).
fn forget_passed(spool: &Spool, name: &WalFileName) {
    let WalFileName::Segment(current) = name else {
        return;
    };
    let current = current.to_string();
    for other in spool.fetched() {
        let passed = other.len() == current.len() && other[..8] == current[..8] && other < current;
        if passed {
            let _ = std::fs::remove_file(spool.fetched_path(&other));
        }
    }
}

/// The `count` segments after `name` on its timeline that the spool does not hold yet.
/// Empty for anything but a segment.
pub fn missing_ahead(spool: &Spool, name: &str, count: usize, seg_size: u32) -> Vec<SegmentName> {
    let Ok(WalFileName::Segment(first)) = WalFileName::parse(name) else {
        return Vec::new();
    };
    let have = spool.fetched();
    std::iter::successors(first.next(seg_size), |s| s.next(seg_size))
        .take(count)
        .filter(|s| !have.contains(&s.to_string()))
        .collect()
}

/// Fetches up to `count` segments following `name` into the spool, in order, stopping
/// at the first one the repository does not have. Runs only if no other prefetcher
/// holds the spool's lock; returns how many it stored.
///
/// # Errors
/// Repository errors other than "not archived" (the caller is a background process: a
/// failure only means the next `wal-fetch` goes to the repository itself).
pub async fn prefetch(
    repo: &Repository,
    cluster: &str,
    spool: &Spool,
    name: &str,
    count: usize,
) -> Result<usize, ArchiveError> {
    let Some(_lock) = spool.try_prefetch_lock() else {
        return Ok(0);
    };
    // Holding the lock, no other prefetcher is writing: leftovers are a killed one's.
    spool.remove_temporaries();
    let seg_size = repo
        .read_cluster(cluster)
        .await?
        .map_or(DEFAULT_SEG_SIZE, |r| r.seg_size);
    let wanted = missing_ahead(spool, name, count, seg_size);
    let mut fetched = stream::iter(wanted)
        .map(|seg| async move {
            let name = seg.to_string();
            let raw = repo.get_wal(cluster, &WalFileName::Segment(seg)).await?;
            spool
                .put_fetched(&name, &raw)
                .map_err(|source| ArchiveError::Write {
                    path: spool.fetched_path(&name),
                    source,
                })
        })
        .buffered(PREFETCH_CONCURRENCY);
    let mut stored = 0;
    while let Some(result) = fetched.next().await {
        match result {
            Ok(()) => stored += 1,
            Err(ArchiveError::Repo(RepoError::Store(StoreError::NotFound { .. }))) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(stored)
}
