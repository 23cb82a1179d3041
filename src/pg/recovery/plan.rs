//! Choosing the base backup for a recovery target, and proving the target reachable
//! before a byte moves.
//!
//! Rules (`reference/postgresql.md` §4, "How recovery targets stop", and the derived
//! rule for the window): a backup can serve a target when recovery, started at the
//! backup's start, reaches consistency (the backup's stop LSN) before the target stops
//! it, and the archive holds every file from the backup's start to where the target
//! stops recovery — which, for a time, is the first commit *after* the target: the
//! server stops at a commit, so a time later than every archived commit is never
//! reached (13+ fail with "recovery ended before configured recovery target was
//! reached"; 12 silently ends early). Of the backups that can, the newest is chosen:
//! it leaves the least WAL to replay.
//!
//! Commit times are known per segment (minimum and maximum), so a backup is judged by
//! the segments it spans: conservative (a later commit in the backup's last segment
//! makes it ineligible for a target just after it), never wrong.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::pg::wal::{Lsn, SegmentSummary};
use crate::repo::id::SnapshotId;
use crate::repo::snapshot::Snapshot;

use super::archive::{Archive, TimelinePath};
use super::target::{show_time, RecoveryTarget, Target, TimelineChoice};
use super::RecoveryError;

/// A `pg-base` snapshot, as far as choosing one goes (`formats/REPOSITORY.md` §22).
#[derive(Debug, Clone, Serialize)]
pub struct BaseBackup {
    pub snapshot: SnapshotId,
    pub name: String,
    /// When the snapshot was written (after the backup's WAL was archived).
    pub time: DateTime<Utc>,
    pub timeline: u32,
    pub start_lsn: Lsn,
    pub stop_lsn: Lsn,
    pub system_identifier: Option<u64>,
}

impl BaseBackup {
    /// Reads a snapshot's `source`; `None` unless it is a base backup of `cluster`.
    ///
    /// # Errors
    /// A message naming the member that is missing or malformed.
    pub fn of_cluster(
        id: SnapshotId,
        snapshot: &Snapshot,
        cluster: &str,
    ) -> Option<Result<BaseBackup, String>> {
        if snapshot.kind != "pg-base" {
            return None;
        }
        let source = &snapshot.source;
        if source.get("cluster").and_then(|v| v.as_str()) != Some(cluster) {
            return None;
        }
        let lsn = |key: &str| -> Result<Lsn, String> {
            source
                .get(key)
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("snapshot {}: source.{key} is not an LSN", id.short()))
        };
        let parsed = (|| {
            Ok(BaseBackup {
                snapshot: id,
                name: snapshot.name.clone(),
                time: snapshot.end,
                timeline: source
                    .get("timeline")
                    .and_then(|v| v.as_u64())
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or_else(|| {
                        format!("snapshot {}: source.timeline is missing", id.short())
                    })?,
                start_lsn: lsn("start_lsn")?,
                stop_lsn: lsn("stop_lsn")?,
                system_identifier: source
                    .get("system_identifier")
                    .and_then(|v| v.as_str())
                    .and_then(|s| s.parse().ok()),
            })
        })();
        Some(parsed)
    }
}

/// Where recovery is expected to stop.
#[derive(Debug, Clone, Serialize)]
pub struct Stop {
    /// The last segment recovery needs.
    pub segment: String,
    /// What ends recovery, in words.
    pub description: String,
    /// The LSN it stops at, when the archive tells: the end of the WAL, a target LSN,
    /// the end of a restore point record.
    pub lsn: Option<Lsn>,
    /// The time of the point it stops at, when known (a restore point's).
    pub time: Option<i64>,
}

/// What a restore will do, decided before it does anything.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub backup: BaseBackup,
    /// The target timeline and the timelines recovery passes through.
    pub timeline: u32,
    pub timelines: String,
    pub first_segment: String,
    pub last_segment: String,
    /// Segments replayed from the backup's start to the stop.
    pub segments: u64,
    pub stop: Stop,
    /// Newer backups passed over, and why.
    pub passed_over: Vec<(SnapshotId, String)>,
}

impl Plan {
    /// WAL bytes between the backup's start and the expected stop, when known.
    pub fn wal_bytes(&self) -> Option<u64> {
        self.stop
            .lsn
            .map(|end| end.0.saturating_sub(self.backup.start_lsn.0))
    }
}

/// Why one backup cannot serve the target.
enum Verdict {
    Serves(Stop, u64),
    /// This backup cannot, an older one might.
    Skip(String),
    /// No backup can: the archive ends, or has a gap, before the target.
    Refuse(String),
}

/// Chooses the newest base backup from which `target` is reachable in `archive`.
///
/// # Errors
/// [`RecoveryError::NoBackups`], [`RecoveryError::NoHistory`], or
/// [`RecoveryError::Unreachable`] with the reason and the restorable window.
pub fn plan(
    archive: &Archive,
    backups: &[BaseBackup],
    target: &RecoveryTarget,
) -> Result<Plan, RecoveryError> {
    if backups.is_empty() {
        return Err(RecoveryError::NoBackups {
            cluster: archive.cluster.clone(),
        });
    }
    let mut ordered: Vec<&BaseBackup> = backups.iter().collect();
    ordered.sort_by(|a, b| b.stop_lsn.cmp(&a.stop_lsn).then(b.time.cmp(&a.time)));
    let mut passed_over = Vec::new();
    let mut last_path = None;
    for backup in ordered {
        let tli = match target.timeline {
            TimelineChoice::Latest => archive.newest_timeline(backup.timeline),
            TimelineChoice::Id(id) => id,
        };
        let path = archive.path(tli)?;
        if let Some(reason) = off_path(archive, backup, &path) {
            passed_over.push((backup.snapshot, reason));
            continue;
        }
        match judge(archive, &path, backup, target) {
            Verdict::Serves(stop, last) => {
                let first = archive.segno(backup.start_lsn);
                return Ok(Plan {
                    backup: backup.clone(),
                    timeline: tli,
                    timelines: path.describe(),
                    first_segment: archive.name(&path, first),
                    last_segment: archive.name(&path, last),
                    segments: last.saturating_sub(first) + 1,
                    stop,
                    passed_over,
                });
            }
            Verdict::Skip(reason) => passed_over.push((backup.snapshot, reason)),
            Verdict::Refuse(reason) => {
                return Err(unreachable(archive, &path, backups, target, reason));
            }
        }
        last_path = Some(path);
    }
    let path = match last_path {
        Some(path) => path,
        None => archive.path(match target.timeline {
            TimelineChoice::Latest => archive.newest_timeline(1),
            TimelineChoice::Id(id) => id,
        })?,
    };
    let reasons: Vec<String> = passed_over
        .iter()
        .map(|(id, why)| format!("snapshot {}: {why}", id.short()))
        .collect();
    let reason = format!("no base backup can reach it:\n  {}", reasons.join("\n  "));
    Err(unreachable(archive, &path, backups, target, reason))
}

/// Why `backup` is not on `path`, if it is not.
fn off_path(archive: &Archive, backup: &BaseBackup, path: &TimelinePath) -> Option<String> {
    if let (Some(have), Some(want)) = (backup.system_identifier, archive.system_identifier) {
        if have != want {
            return Some(format!(
                "taken of system {have}, but the archive of cluster {:?} is of system {want}",
                archive.cluster
            ));
        }
    }
    let Some(span) = path.span(backup.timeline) else {
        return Some(format!(
            "taken on timeline {}, which timeline {} does not descend from ({})",
            backup.timeline,
            path.tli(),
            path.describe()
        ));
    };
    match span.end {
        Some(end) if backup.stop_lsn > end => Some(format!(
            "ends at {} on timeline {}, after timeline {} branched off at {end}",
            backup.stop_lsn,
            backup.timeline,
            path.tli()
        )),
        _ => None,
    }
}

/// Checks that every file of `from..=to` is archived on `path`.
fn have_all(archive: &Archive, path: &TimelinePath, from: u64, to: u64) -> Result<(), u64> {
    match (from..=to).find(|s| archive.file(path, *s).is_none()) {
        Some(missing) => Err(missing),
        None => Ok(()),
    }
}

/// The summary of a segment known to be archived, or why it cannot be judged.
fn summary<'a>(
    archive: &'a Archive,
    path: &TimelinePath,
    segno: u64,
) -> Result<&'a SegmentSummary, String> {
    match archive.file(path, segno) {
        Some((_, Some(summary))) => Ok(summary),
        _ => Err(format!(
            "{} has no summary (archived by an older stowage), so commit times and restore \
             points in it are unknown; give --target-lsn instead",
            archive.name(path, segno)
        )),
    }
}

/// Why WAL after `from` cannot be followed to a stop: a gap, or the end of the archive.
fn runs_out(archive: &Archive, path: &TimelinePath, missing: u64, what: &str) -> String {
    let beyond = archive.last_segno(path).is_some_and(|last| last > missing);
    if beyond {
        format!(
            "segment {} is missing from the archive, so WAL after it cannot be replayed, and \
             {what} lies beyond it",
            archive.name(path, missing)
        )
    } else {
        format!("{what} lies after the newest archived WAL")
    }
}

/// Whether `backup` can serve `target` on `path`.
fn judge(
    archive: &Archive,
    path: &TimelinePath,
    backup: &BaseBackup,
    target: &RecoveryTarget,
) -> Verdict {
    let start = archive.segno(backup.start_lsn);
    let end = archive
        .segno(Lsn(backup.stop_lsn.0.saturating_sub(1)))
        .max(start);
    if let Err(missing) = have_all(archive, path, start, end) {
        return Verdict::Skip(format!(
            "its own WAL is incomplete: {} is missing",
            archive.name(path, missing)
        ));
    }
    match &target.target {
        Target::Latest => {
            let last = archive.last_segno(path).unwrap_or(end).max(end);
            if let Err(missing) = have_all(archive, path, start, last) {
                return Verdict::Refuse(format!(
                    "segment {} is missing from the archive, so recovery would stop there \
                     instead of at the newest WAL ({}); to accept the loss, restore to a \
                     target before the gap (--target-lsn or --target-time)",
                    archive.name(path, missing),
                    archive.name(path, last)
                ));
            }
            let stop_lsn = archive
                .file(path, last)
                .and_then(|(_, s)| s)
                .map(|s| s.end_lsn);
            Verdict::Serves(
                Stop {
                    segment: archive.name(path, last),
                    description: "the end of the archived WAL".into(),
                    lsn: stop_lsn,
                    time: None,
                },
                last,
            )
        }
        Target::Time(t) => judge_time(archive, path, backup, *t, target.exclusive, start, end),
        Target::Lsn(lsn) => judge_lsn(archive, path, backup, *lsn, start),
        Target::Xid(xid) => judge_xid(archive, path, *xid, start, end),
        Target::Name(name) => judge_name(archive, path, backup, name, start),
    }
}

fn judge_time(
    archive: &Archive,
    path: &TimelinePath,
    backup: &BaseBackup,
    t: i64,
    exclusive: bool,
    start: u64,
    end: u64,
) -> Verdict {
    // The server stops before the first commit later than the target (exclusive: at or
    // later), so such a commit inside the backup's span stops it before consistency.
    let stops = |time: i64| if exclusive { time >= t } else { time > t };
    for segno in start..=end {
        match summary(archive, path, segno) {
            Ok(s) if s.max_xact_time.is_some_and(stops) => {
                return Verdict::Skip(format!(
                    "ends after the target (a commit at {} precedes its end at {})",
                    s.max_xact_time.map_or_else(String::new, show_time),
                    backup.stop_lsn
                ));
            }
            Ok(_) => {}
            Err(why) => return Verdict::Refuse(why),
        }
    }
    let mut segno = end;
    loop {
        segno += 1;
        if archive.file(path, segno).is_none() {
            return Verdict::Refuse(runs_out(
                archive,
                path,
                segno,
                "the first commit after the target, where recovery stops,",
            ));
        }
        match summary(archive, path, segno) {
            Ok(s) if s.max_xact_time.is_some_and(stops) => {
                return Verdict::Serves(
                    Stop {
                        segment: archive.name(path, segno),
                        description: format!(
                            "the last commit {} {}",
                            if exclusive { "before" } else { "at or before" },
                            show_time(t)
                        ),
                        lsn: None,
                        time: None,
                    },
                    segno,
                );
            }
            Ok(_) => {}
            Err(why) => return Verdict::Refuse(why),
        }
    }
}

fn judge_lsn(
    archive: &Archive,
    path: &TimelinePath,
    backup: &BaseBackup,
    lsn: Lsn,
    start: u64,
) -> Verdict {
    // Consistency comes once the backup's end is replayed, before the next record is
    // tested against the target, so a target at the stop LSN is reachable either way.
    if lsn < backup.stop_lsn {
        return Verdict::Skip(format!(
            "ends at {}, after the target (recovery cannot stop before a backup is consistent)",
            backup.stop_lsn
        ));
    }
    let at = archive.segno(lsn);
    if let Err(missing) = have_all(archive, path, start, at) {
        return Verdict::Refuse(runs_out(archive, path, missing, "the target LSN"));
    }
    // A record must start at or after the target for recovery to stop there.
    let ends_after = archive
        .file(path, at)
        .and_then(|(_, s)| s)
        .is_none_or(|s| s.end_lsn > lsn);
    let last = if ends_after {
        at
    } else if archive.file(path, at + 1).is_some() {
        at + 1
    } else {
        return Verdict::Refuse(
            "the target LSN lies at or after the end of the newest archived WAL".into(),
        );
    };
    Verdict::Serves(
        Stop {
            segment: archive.name(path, last),
            description: format!("LSN {lsn}"),
            lsn: Some(lsn),
            time: None,
        },
        last,
    )
}

fn judge_xid(archive: &Archive, path: &TimelinePath, xid: u32, start: u64, end: u64) -> Verdict {
    let Some(last) = archive.last_segno(path) else {
        return Verdict::Refuse("the archive holds no WAL on this timeline path".into());
    };
    let mut unknown = 0u64;
    let mut candidates = Vec::new();
    for segno in start..=last {
        match archive.file(path, segno) {
            Some((_, Some(s))) => match s.xids {
                Some(range) if range.contains(xid) => candidates.push(segno),
                None if s.xact_count > 0 => unknown += 1,
                _ => {}
            },
            Some((_, None)) => unknown += 1,
            None => {}
        }
    }
    let Some(&first) = candidates.first() else {
        let also = if unknown > 0 {
            format!(" ({unknown} segments have no transaction ids in their summaries)")
        } else {
            String::new()
        };
        return Verdict::Skip(format!(
            "transaction {xid} does not end in the WAL after its start{also}"
        ));
    };
    if first <= end {
        return Verdict::Skip(format!(
            "transaction {xid} may end inside the backup ({}), before it is consistent",
            archive.name(path, first)
        ));
    }
    let through = candidates.last().copied().unwrap_or(first);
    if let Err(missing) = have_all(archive, path, start, through) {
        return Verdict::Refuse(runs_out(
            archive,
            path,
            missing,
            &format!("the end of transaction {xid}"),
        ));
    }
    Verdict::Serves(
        Stop {
            segment: archive.name(path, through),
            description: format!("the end of transaction {xid}"),
            lsn: None,
            time: None,
        },
        through,
    )
}

fn judge_name(
    archive: &Archive,
    path: &TimelinePath,
    backup: &BaseBackup,
    name: &str,
    start: u64,
) -> Verdict {
    let Some(last) = archive.last_segno(path) else {
        return Verdict::Refuse("the archive holds no WAL on this timeline path".into());
    };
    // The server stops at the first restore point of that name it replays.
    for segno in start..=last {
        if archive.file(path, segno).is_none() {
            return Verdict::Refuse(runs_out(
                archive,
                path,
                segno,
                &format!("restore point {name:?}"),
            ));
        }
        let summary = match summary(archive, path, segno) {
            Ok(summary) => summary,
            Err(why) => return Verdict::Refuse(why),
        };
        let found = summary
            .restore_points
            .iter()
            .filter(|p| p.name == name && p.lsn >= backup.start_lsn)
            .min_by_key(|p| p.lsn);
        if let Some(point) = found {
            if point.lsn < backup.stop_lsn {
                return Verdict::Skip(format!(
                    "restore point {name:?} at {} lies inside the backup, before it is consistent",
                    point.lsn
                ));
            }
            let end = archive.segno(Lsn(point.end_lsn.0.saturating_sub(1)));
            if let Err(missing) = have_all(archive, path, segno, end) {
                return Verdict::Refuse(runs_out(
                    archive,
                    path,
                    missing,
                    &format!("the end of restore point {name:?}"),
                ));
            }
            return Verdict::Serves(
                Stop {
                    segment: archive.name(path, end),
                    description: format!(
                        "restore point {name:?} made at {} (LSN {})",
                        show_time(point.time),
                        point.lsn
                    ),
                    lsn: Some(point.end_lsn),
                    time: Some(point.time),
                },
                end,
            );
        }
    }
    Verdict::Skip(format!("no restore point {name:?} after its start"))
}

/// The refusal, with the window the archive can restore on `path`.
fn unreachable(
    archive: &Archive,
    path: &TimelinePath,
    backups: &[BaseBackup],
    target: &RecoveryTarget,
    reason: String,
) -> RecoveryError {
    RecoveryError::Unreachable {
        target: format!("{} on timeline {}", target.target.describe(), path.tli()),
        reason,
        window: window(archive, path, backups),
    }
}

/// The restorable window on `path`, in words: backups, then WAL and commit times.
pub fn window(archive: &Archive, path: &TimelinePath, backups: &[BaseBackup]) -> String {
    let mut lines = Vec::new();
    let on_path: Vec<&BaseBackup> = backups
        .iter()
        .filter(|b| off_path(archive, b, path).is_none())
        .collect();
    match (
        on_path.iter().min_by_key(|b| b.stop_lsn),
        on_path.iter().max_by_key(|b| b.stop_lsn),
    ) {
        (Some(oldest), Some(newest)) => lines.push(format!(
            "base backups on timelines {}: {} — oldest {} ends at LSN {} (written {}), newest {} \
             ends at LSN {} (written {})",
            path.describe(),
            on_path.len(),
            oldest.snapshot.short(),
            oldest.stop_lsn,
            oldest.time.format("%Y-%m-%dT%H:%M:%SZ"),
            newest.snapshot.short(),
            newest.stop_lsn,
            newest.time.format("%Y-%m-%dT%H:%M:%SZ"),
        )),
        _ => lines.push(format!("no base backup on timelines {}", path.describe())),
    }
    if let Some(oldest) = on_path.iter().min_by_key(|b| b.stop_lsn) {
        let from = archive.segno(oldest.start_lsn);
        let last = archive.last_segno(path).unwrap_or(from);
        let reach = archive
            .first_missing(path, from)
            .map_or(last, |missing| missing.saturating_sub(1));
        let (mut earliest, mut latest, mut end) = (None::<i64>, None::<i64>, None);
        for segno in from..=reach {
            if let Some((_, Some(s))) = archive.file(path, segno) {
                earliest = match (earliest, s.min_xact_time) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                latest = latest.max(s.max_xact_time);
                end = Some(s.end_lsn);
            }
        }
        let mut text = format!(
            "WAL replayable from the oldest backup: {} … {}",
            archive.name(path, from),
            archive.name(path, reach)
        );
        if let Some(end) = end {
            text.push_str(&format!(" (up to LSN {end})"));
        }
        if let (Some(a), Some(b)) = (earliest, latest) {
            text.push_str(&format!(
                ", commits from {} to {}",
                show_time(a),
                show_time(b)
            ));
        }
        lines.push(text);
        if reach < last {
            lines.push(format!(
                "gap: {} is missing; WAL after it (up to {}) cannot be reached",
                archive.name(path, reach + 1),
                archive.name(path, last)
            ));
        }
    }
    lines.join("\n")
}
