//! The archive as recovery will see it: which file the server reads for each segment
//! of a timeline path, and what the summary of that file says.
//!
//! The server follows a target timeline's history newest first: for segment `s` it reads
//! the file of the newest timeline on the path that began at or before `s`
//! (`reference/postgresql.md` §7, XLogFileReadAnyTLI). [`Archive::file`] applies the
//! same rule, so "segment present" here means "the file the server will ask for is
//! there", not merely "some timeline has a segment with this number".

use std::collections::BTreeMap;

use crate::pg::archive::ArchiveError;
use crate::pg::wal::{check_history, HistoryEntry, Lsn, SegmentName, SegmentSummary, WalFileName};
use crate::repo::Repository;

use super::RecoveryError;

/// Segment size assumed when the repository has no record of the cluster.
const DEFAULT_SEG_SIZE: u32 = 16 << 20;

/// What is archived for one cluster.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    pub cluster: String,
    pub seg_size: u32,
    pub system_identifier: Option<u64>,
    /// Per timeline: stored segments by number, with their summaries when written.
    segments: BTreeMap<u32, BTreeMap<u64, Option<SegmentSummary>>>,
    /// Per timeline above 1: its history file.
    histories: BTreeMap<u32, Vec<HistoryEntry>>,
}

/// A stretch of a timeline path: WAL from `begin` up to `end` (exclusive) is replayed
/// from timeline `tli`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub tli: u32,
    pub begin: Lsn,
    pub end: Option<Lsn>,
}

/// The timelines recovery passes through to reach a target timeline, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelinePath {
    pub spans: Vec<Span>,
}

impl TimelinePath {
    /// The target timeline.
    pub fn tli(&self) -> u32 {
        self.spans.last().map_or(1, |s| s.tli)
    }

    /// The span of `tli`, if the path passes through it.
    pub fn span(&self, tli: u32) -> Option<&Span> {
        self.spans.iter().find(|s| s.tli == tli)
    }

    /// `1 → 2 → 3`.
    pub fn describe(&self) -> String {
        let tlis: Vec<String> = self.spans.iter().map(|s| s.tli.to_string()).collect();
        tlis.join(" → ")
    }
}

impl Archive {
    /// Lists the cluster's WAL, reads its summaries and history files.
    ///
    /// # Errors
    /// Store errors; an unreadable summary or history file, named.
    pub async fn load(repo: &Repository, cluster: &str) -> Result<Archive, ArchiveError> {
        let record = repo.read_cluster(cluster).await?;
        let mut archive = Archive {
            cluster: cluster.to_string(),
            seg_size: record.as_ref().map_or(DEFAULT_SEG_SIZE, |r| r.seg_size),
            system_identifier: record.map(|r| r.system_identifier),
            ..Archive::default()
        };
        let mut summaries: BTreeMap<String, SegmentSummary> = repo
            .read_wal_summaries(cluster)
            .await?
            .into_iter()
            .map(|(key, s)| (key.name().to_string(), s))
            .collect();
        for meta in repo.list_wal(cluster).await? {
            match WalFileName::parse(meta.key.name()) {
                Ok(WalFileName::Segment(seg)) => {
                    let summary = summaries.remove(&seg.to_string());
                    archive.add_segment(seg, summary);
                }
                Ok(name @ WalFileName::History { tli }) => {
                    let text = repo.get_wal(cluster, &name).await?;
                    let entries =
                        check_history(tli, &text).map_err(|source| ArchiveError::Invalid {
                            path: meta.key.to_string().into(),
                            source,
                        })?;
                    archive.histories.insert(tli, entries);
                }
                // `.partial` and `.backup` files are never read by recovery.
                Ok(_) => {}
                Err(_) => tracing::warn!("{}: not a WAL file name; ignored", meta.key),
            }
        }
        Ok(archive)
    }

    /// An archive built from parts (for tests and tools that already hold them).
    pub fn from_parts(
        cluster: &str,
        seg_size: u32,
        segments: impl IntoIterator<Item = (SegmentName, Option<SegmentSummary>)>,
        histories: impl IntoIterator<Item = (u32, Vec<HistoryEntry>)>,
    ) -> Archive {
        let mut archive = Archive {
            cluster: cluster.to_string(),
            seg_size,
            ..Archive::default()
        };
        for (seg, summary) in segments {
            archive.add_segment(seg, summary);
        }
        archive.histories.extend(histories);
        archive
    }

    fn add_segment(&mut self, seg: SegmentName, summary: Option<SegmentSummary>) {
        self.segments
            .entry(seg.tli)
            .or_default()
            .insert(seg.segno(self.seg_size), summary);
    }

    /// The segment number holding `lsn`.
    pub fn segno(&self, lsn: Lsn) -> u64 {
        lsn.0 / u64::from(self.seg_size.max(1))
    }

    /// The newest timeline `latest` resolves to when recovery starts on `from`: the
    /// server probes `from + 1`, `from + 2`, … until a history file is missing.
    pub fn newest_timeline(&self, from: u32) -> u32 {
        let mut tli = from;
        while self.histories.contains_key(&(tli + 1)) {
            tli += 1;
        }
        tli
    }

    /// Every timeline the archive knows of.
    pub fn timelines(&self) -> Vec<u32> {
        let mut all: Vec<u32> = self.segments.keys().copied().collect();
        all.extend(self.histories.keys());
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The path to timeline `tli`, from its history file.
    ///
    /// # Errors
    /// [`RecoveryError::NoHistory`] for a timeline above 1 without a history file (the
    /// server refuses it too: "recovery target timeline N does not exist").
    pub fn path(&self, tli: u32) -> Result<TimelinePath, RecoveryError> {
        if tli <= 1 {
            return Ok(TimelinePath {
                spans: vec![Span {
                    tli: 1,
                    begin: Lsn(0),
                    end: None,
                }],
            });
        }
        let history = self.histories.get(&tli).ok_or(RecoveryError::NoHistory {
            cluster: self.cluster.clone(),
            tli,
        })?;
        let mut spans = Vec::with_capacity(history.len() + 1);
        let mut begin = Lsn(0);
        for entry in history {
            spans.push(Span {
                tli: entry.parent_tli,
                begin,
                end: Some(entry.switchpoint),
            });
            begin = entry.switchpoint;
        }
        spans.push(Span {
            tli,
            begin,
            end: None,
        });
        Ok(TimelinePath { spans })
    }

    /// The timeline whose file the server reads for segment `segno` on `path`.
    pub fn file_tli(&self, path: &TimelinePath, segno: u64) -> u32 {
        path.spans
            .iter()
            .rev()
            .find(|span| self.segno(span.begin) <= segno)
            .map_or(1, |span| span.tli)
    }

    /// The file the server reads for segment `segno` on `path`, if it is archived:
    /// its name and summary (`None` when it was stored without one).
    pub fn file(&self, path: &TimelinePath, segno: u64) -> Option<(u32, Option<&SegmentSummary>)> {
        let tli = self.file_tli(path, segno);
        let summary = self.segments.get(&tli)?.get(&segno)?;
        Some((tli, summary.as_ref()))
    }

    /// The name of segment `segno` as read on `path` (for messages).
    pub fn name(&self, path: &TimelinePath, segno: u64) -> String {
        SegmentName::from_segno(self.file_tli(path, segno), segno, self.seg_size)
            .map_or_else(|_| format!("segment {segno}"), |s| s.to_string())
    }

    /// The highest segment number archived anywhere on `path`.
    pub fn last_segno(&self, path: &TimelinePath) -> Option<u64> {
        path.spans
            .iter()
            .filter_map(|span| {
                let segs = self.segments.get(&span.tli)?;
                let lo = self.segno(span.begin);
                let hi = span
                    .end
                    .map_or(u64::MAX, |end| self.segno(Lsn(end.0.saturating_sub(1))));
                segs.range(lo..=hi).next_back().map(|(segno, _)| *segno)
            })
            .max()
    }

    /// The first segment from `from` on that is missing from `path`, or `None` when
    /// every segment up to the last archived one is there.
    pub fn first_missing(&self, path: &TimelinePath, from: u64) -> Option<u64> {
        let last = self.last_segno(path)?;
        (from..=last).find(|segno| self.file(path, *segno).is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u32 = 1 << 20;

    fn seg(tli: u32, segno: u64) -> (SegmentName, Option<SegmentSummary>) {
        (SegmentName::from_segno(tli, segno, MIB).unwrap(), None)
    }

    fn history(entries: &[(u32, u64)]) -> Vec<HistoryEntry> {
        entries
            .iter()
            .map(|&(parent_tli, at)| HistoryEntry {
                parent_tli,
                switchpoint: Lsn(at),
                reason: String::new(),
            })
            .collect()
    }

    #[test]
    fn each_segment_is_read_from_the_newest_timeline_that_began_by_then() {
        // Timeline 2 branched off 1 in the middle of segment 5.
        let fork = 5 * u64::from(MIB) + 4096;
        let archive = Archive::from_parts(
            "main",
            MIB,
            (1..=7).map(|s| seg(1, s)).chain((5..=6).map(|s| seg(2, s))),
            [(2, history(&[(1, fork)]))],
        );
        assert_eq!(archive.newest_timeline(1), 2);
        let path = archive.path(2).unwrap();
        assert_eq!(path.describe(), "1 → 2");
        assert_eq!(archive.file_tli(&path, 4), 1);
        assert_eq!(archive.file_tli(&path, 5), 2);
        assert_eq!(archive.last_segno(&path), Some(6));
        assert_eq!(archive.first_missing(&path, 1), None);
        // Timeline 1 alone goes on to segment 7.
        let one = archive.path(1).unwrap();
        assert_eq!(archive.last_segno(&one), Some(7));
        assert!(archive.path(3).is_err());
    }

    #[test]
    fn a_hole_is_found_on_the_path() {
        let archive = Archive::from_parts("main", MIB, [seg(1, 1), seg(1, 2), seg(1, 4)], []);
        let path = archive.path(1).unwrap();
        assert_eq!(archive.first_missing(&path, 1), Some(3));
        assert_eq!(archive.name(&path, 3), "000000010000000000000003");
    }
}
