//! Waiting until the WAL a base backup needs is in the repository.
//!
//! A base backup is only restorable with the WAL from its start to its stop LSN; until
//! that WAL is archived the backup is not complete, so the snapshot is written only after
//! it is there. On a primary `pg_backup_stop` switches to a new segment, so the last one
//! is archived within moments; a standby cannot switch, and its last segment arrives when
//! the primary fills or switches it (`archive_timeout`).

use std::time::{Duration, Instant};

use super::BackupError;
use crate::pg::wal::name::{Lsn, SegmentName, WalFileName};
use crate::repo::Repository;

/// How the wait went.
#[derive(Debug, Clone, Copy)]
pub struct WalWait {
    pub segments: usize,
    pub waited: Duration,
}

/// The segments replay needs to make a backup consistent: from the one holding `start`
/// to the one holding the last byte before `stop`, on `timeline`.
///
/// # Errors
/// [`BackupError::Label`] for LSNs out of order or a segment size PostgreSQL cannot have.
pub fn needed_segments(
    timeline: u32,
    start: Lsn,
    stop: Lsn,
    seg_size: u32,
) -> Result<Vec<SegmentName>, BackupError> {
    let bad = |e: crate::pg::wal::name::NameError| BackupError::Label(e.to_string());
    if stop <= start {
        return Err(BackupError::Label(format!(
            "stop LSN {stop} is not after start LSN {start}"
        )));
    }
    let first = SegmentName::from_lsn(timeline, start, seg_size).map_err(bad)?;
    let last = SegmentName::from_lsn(timeline, Lsn(stop.0 - 1), seg_size).map_err(bad)?;
    let mut out = vec![first];
    while out.last() != Some(&last) {
        let next = out
            .last()
            .and_then(|s| s.next(seg_size))
            .ok_or_else(|| BackupError::Label(format!("no segment after {first}")))?;
        out.push(next);
    }
    Ok(out)
}

/// Polls the repository until every segment of `needed` is archived for `cluster`, or
/// `timeout` passes. `archiver` describes the server's archiver for the timeout message
/// (its last failure, say).
///
/// # Errors
/// [`BackupError::WalTimeout`] naming the first missing segment, [`BackupError::WalGap`]
/// when a later one is there but it is not, or a repository error.
pub async fn wait_for_wal<F>(
    repo: &Repository,
    cluster: &str,
    needed: &[SegmentName],
    timeout: Duration,
    archiver: impl FnOnce() -> F,
) -> Result<WalWait, BackupError>
where
    F: std::future::Future<Output = String>,
{
    let started = Instant::now();
    let mut poll = Duration::from_millis(50);
    let mut next = 0;
    while next < needed.len() {
        let name = WalFileName::Segment(needed[next]);
        if repo.has_wal(cluster, &name).await? {
            next += 1;
            continue;
        }
        if started.elapsed() >= timeout {
            for later in &needed[next + 1..] {
                if repo.has_wal(cluster, &WalFileName::Segment(*later)).await? {
                    return Err(BackupError::WalGap {
                        segment: needed[next].to_string(),
                    });
                }
            }
            return Err(BackupError::WalTimeout {
                segment: needed[next].to_string(),
                waited_secs: started.elapsed().as_secs(),
                archiver: archiver().await,
            });
        }
        tokio::time::sleep(poll).await;
        poll = (poll * 2).min(Duration::from_millis(500));
    }
    Ok(WalWait {
        segments: needed.len(),
        waited: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_from_start_through_the_byte_before_stop() {
        let mib = 1 << 20;
        let lsn = |s: &str| s.parse::<Lsn>().unwrap();
        let names = |v: Vec<SegmentName>| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Stop exactly at a segment boundary: that segment is not needed.
        let got = needed_segments(1, lsn("0/300028"), lsn("0/500000"), mib).unwrap();
        assert_eq!(
            names(got),
            ["000000010000000000000003", "000000010000000000000004"]
        );
        let got = needed_segments(2, lsn("0/3000028"), lsn("0/3000100"), 16 * mib).unwrap();
        assert_eq!(names(got), ["000000020000000000000003"]);
        assert!(needed_segments(1, lsn("0/5"), lsn("0/5"), mib).is_err());
    }
}
