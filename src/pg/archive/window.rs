//! What the archive can restore: per timeline, the runs of consecutive segments, the gaps
//! between them, and the LSNs and commit times each run covers.
//!
//! Built from listings and the per-segment summaries written by `wal-push`, never from
//! the WAL itself, so it costs a few small reads however much WAL is archived. Commit
//! times are kept as minimum and maximum per segment because they are not monotonic
//! along the WAL (`reference/postgresql.md` §4).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::pg::wal::{self, Lsn, SegmentName, SegmentSummary, WalFileName};
use crate::repo::wal::ClusterRecord;
use crate::repo::Repository;

use super::ArchiveError;

/// Segment size assumed when the repository has no record of the cluster.
const DEFAULT_SEG_SIZE: u32 = 16 << 20;

/// The archive of one cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub cluster: String,
    pub system_identifier: Option<u64>,
    pub seg_size: u32,
    pub timelines: Vec<Timeline>,
}

/// One timeline's archived WAL.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub timeline: u32,
    /// From `<TLI>.history`: the timeline this one branched from, and where.
    pub parent: Option<Branch>,
    /// Runs of consecutive segments, oldest first; more than one means gaps.
    pub runs: Vec<Run>,
    pub gaps: Vec<Gap>,
    pub partial: Vec<String>,
    pub backup_files: Vec<String>,
    pub segments: u64,
    pub stored_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Branch {
    pub parent_timeline: u32,
    pub switchpoint: Lsn,
}

/// Consecutive segments: everything between `start_lsn` and `end_lsn` can be replayed.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub first_segment: String,
    pub last_segment: String,
    pub segments: u64,
    pub start_lsn: Lsn,
    pub end_lsn: Lsn,
    /// Earliest and latest commit or abort time recorded in the run.
    pub earliest_commit: Option<DateTime<Utc>>,
    pub latest_commit: Option<DateTime<Utc>>,
    /// Segments stored without a summary (pushed by a build that did not write one).
    pub unsummarized: u64,
}

/// Segments missing between two runs.
#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    pub after: String,
    pub before: String,
    pub missing: u64,
}

/// Reads the listings, summaries and history files of `cluster`.
///
/// # Errors
/// Store errors and unreadable summaries or history files, named.
pub async fn window(repo: &Repository, cluster: &str) -> Result<Window, ArchiveError> {
    let record: Option<ClusterRecord> = repo.read_cluster(cluster).await?;
    let seg_size = record.as_ref().map_or(DEFAULT_SEG_SIZE, |r| r.seg_size);
    let summaries: BTreeMap<String, SegmentSummary> = repo
        .read_wal_summaries(cluster)
        .await?
        .into_iter()
        .map(|(key, s)| (key.name().to_string(), s))
        .collect();
    let mut timelines: BTreeMap<u32, Timeline> = BTreeMap::new();
    let mut segments: BTreeMap<u32, Vec<(SegmentName, u64)>> = BTreeMap::new();
    for meta in repo.list_wal(cluster).await? {
        let Ok(name) = WalFileName::parse(meta.key.name()) else {
            tracing::warn!("{}: not a WAL file name; ignored", meta.key);
            continue;
        };
        let tli = name.timeline();
        let entry = timelines.entry(tli).or_insert_with(|| Timeline::new(tli));
        entry.stored_bytes += meta.size;
        match name {
            WalFileName::Segment(seg) => segments.entry(tli).or_default().push((seg, meta.size)),
            WalFileName::Partial(_) => entry.partial.push(name.to_string()),
            WalFileName::Backup { .. } => entry.backup_files.push(name.to_string()),
            WalFileName::History { .. } => {
                let text = repo.get_wal(cluster, &name).await?;
                entry.parent = wal::check_history(tli, &text)
                    .ok()
                    .and_then(|h| h.last().cloned())
                    .map(|h| Branch {
                        parent_timeline: h.parent_tli,
                        switchpoint: h.switchpoint,
                    });
            }
        }
    }
    for (tli, mut segs) in segments {
        segs.sort_by_key(|(s, _)| s.segno(seg_size));
        let timeline = timelines.entry(tli).or_insert_with(|| Timeline::new(tli));
        timeline.segments = segs.len() as u64;
        let mut runs: Vec<Vec<SegmentName>> = Vec::new();
        for (seg, _) in segs {
            match runs.last_mut() {
                Some(run)
                    if run
                        .last()
                        .is_some_and(|l| l.segno(seg_size) + 1 == seg.segno(seg_size)) =>
                {
                    run.push(seg)
                }
                _ => runs.push(vec![seg]),
            }
        }
        for pair in runs.windows(2) {
            if let (Some(a), Some(b)) = (pair[0].last(), pair[1].first()) {
                timeline.gaps.push(Gap {
                    after: a.to_string(),
                    before: b.to_string(),
                    missing: b.segno(seg_size) - a.segno(seg_size) - 1,
                });
            }
        }
        timeline.runs = runs
            .iter()
            .map(|run| summarize_run(run, seg_size, &summaries))
            .collect();
    }
    Ok(Window {
        cluster: cluster.to_string(),
        system_identifier: record.as_ref().map(|r| r.system_identifier),
        seg_size,
        timelines: timelines.into_values().collect(),
    })
}

impl Timeline {
    fn new(timeline: u32) -> Self {
        Timeline {
            timeline,
            parent: None,
            runs: Vec::new(),
            gaps: Vec::new(),
            partial: Vec::new(),
            backup_files: Vec::new(),
            segments: 0,
            stored_bytes: 0,
        }
    }
}

fn summarize_run(
    run: &[SegmentName],
    seg_size: u32,
    summaries: &BTreeMap<String, SegmentSummary>,
) -> Run {
    let (first, last) = (run[0], run[run.len() - 1]);
    let found: Vec<&SegmentSummary> = run
        .iter()
        .filter_map(|s| summaries.get(&s.to_string()))
        .collect();
    let times =
        |pick: fn(&SegmentSummary) -> Option<i64>| found.iter().filter_map(move |s| pick(s));
    Run {
        first_segment: first.to_string(),
        last_segment: last.to_string(),
        segments: run.len() as u64,
        start_lsn: first.start_lsn(seg_size),
        end_lsn: summaries
            .get(&last.to_string())
            .map_or(Lsn(last.start_lsn(seg_size).0 + u64::from(seg_size)), |s| {
                s.end_lsn
            }),
        earliest_commit: times(|s| s.min_xact_time)
            .min()
            .and_then(wal::pg_timestamp_to_utc),
        latest_commit: times(|s| s.max_xact_time)
            .max()
            .and_then(wal::pg_timestamp_to_utc),
        unsummarized: (run.len() - found.len()) as u64,
    }
}
