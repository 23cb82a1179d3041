//! One archived segment checked whole, and summarized for the archive's index.
//!
//! [`check_segment`] is what `wal-push` runs before storing a segment: it refuses any file
//! recovery would not replay as the segment its name says, and returns what the index
//! needs to answer "which segments does a recovery to time T / restore point N / LSN L
//! need" without reading WAL again (`reference/postgresql.md §4`, how targets stop).
//!
//! Invariants:
//! 1. A complete (non-`.partial`) segment passes only if valid WAL runs from its first
//!    page to its end (the last record may continue in the next segment) or to an
//!    XLOG_SWITCH; that is what archiving guarantees, so anything else is damage.
//! 2. A `.partial` segment (`reference/postgresql.md §1`) must have the same first page
//!    and size, but its valid WAL may stop anywhere: the server renamed a full-size file
//!    whose tail can hold zeros, stale data or WAL past the timeline switch.
//! 3. Summaries only count records wholly inside the segment; one that crosses into the
//!    next segment is named in [`SegmentSummary::incomplete_at_end`] so a reader of the
//!    index knows a record is missing there.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::name::{Lsn, SegmentName};
use super::page::SegmentGeometry;
use super::record::{Record, RecordKind, RecordReader, WalEnd};
use super::WalError;

/// `POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE` = 10957 days, in microseconds
/// (`src/include/datatype/timestamp.h`).
const POSTGRES_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A TimestampTz (microseconds since 2000-01-01 00:00 UTC) as a UTC time; `None` if it
/// lies outside what chrono represents (the server's ±infinity, or garbage).
pub fn pg_timestamp_to_utc(timestamp: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(timestamp.checked_add(POSTGRES_EPOCH_UNIX_MICROS)?)
}

/// What the index keeps of one segment. Times are TimestampTz values (see
/// [`pg_timestamp_to_utc`]); LSNs serialize as `X/X` text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSummary {
    /// From the page magic: 12–17.
    pub pg_major: u32,
    pub system_identifier: u64,
    pub seg_size: u32,
    pub page_size: u32,
    /// The first record that starts in this segment; `None` if the whole segment
    /// continues a record begun earlier.
    pub first_record: Option<Lsn>,
    /// Where valid WAL in this file ends: the (MAXALIGNed) end of the last record that
    /// ends here, or of the XLOG_SWITCH; the segment's start if no record ends here.
    pub end_lsn: Lsn,
    /// A record that starts here and continues in the next segment.
    pub incomplete_at_end: Option<Lsn>,
    /// The segment ends with an XLOG_SWITCH (the rest of the file is void).
    pub switched: bool,
    /// Complete records that start in this segment.
    pub record_count: u32,
    /// COMMIT, ABORT, COMMIT PREPARED and ABORT PREPARED records.
    pub xact_count: u32,
    /// `xact_time` of the first and last of those in LSN order. Commit times are not
    /// monotonic in LSN order (`reference/postgresql.md §4`), hence also min and max.
    pub first_xact_time: Option<i64>,
    pub last_xact_time: Option<i64>,
    pub min_xact_time: Option<i64>,
    pub max_xact_time: Option<i64>,
    /// The transaction ids those records ended, as a range in xid order (which wraps
    /// at 2^32): every one lies `first..=last` going forward from `first`. What
    /// `recovery_target_xid` is looked up in; absent in summaries written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xids: Option<XidRange>,
    pub restore_points: Vec<RestorePoint>,
    /// END_OF_RECOVERY records: a new timeline began here (two timelines can begin in
    /// one segment, so a list).
    pub end_of_recovery: Vec<EndOfRecovery>,
    /// Start LSNs of the base backups whose BACKUP_END record is in this segment.
    pub backup_end: Vec<Lsn>,
}

/// Transaction ids `first..=last`, counted forward modulo 2^32 as PostgreSQL compares
/// them (`TransactionIdPrecedes`: `(a - b) as i32 < 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct XidRange {
    pub first: u32,
    pub last: u32,
}

impl XidRange {
    /// Widens the range to take in `xid`.
    pub fn add(range: Option<XidRange>, xid: u32) -> XidRange {
        match range {
            None => XidRange {
                first: xid,
                last: xid,
            },
            Some(mut r) => {
                if (xid.wrapping_sub(r.first) as i32) < 0 {
                    r.first = xid;
                }
                if (xid.wrapping_sub(r.last) as i32) > 0 {
                    r.last = xid;
                }
                r
            }
        }
    }

    /// Whether `xid` lies in the range.
    pub fn contains(&self, xid: u32) -> bool {
        xid.wrapping_sub(self.first) <= self.last.wrapping_sub(self.first)
    }

    /// Whether every xid of the range precedes `xid`.
    pub fn before(&self, xid: u32) -> bool {
        (xid.wrapping_sub(self.last) as i32) > 0
    }
}

/// A `pg_create_restore_point` record; `recovery_target_name` stops right after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePoint {
    /// Where the record starts.
    pub lsn: Lsn,
    /// Where it ends: what `pg_create_restore_point` returned.
    pub end_lsn: Lsn,
    pub time: i64,
    /// The name, lossily decoded if it is not UTF-8.
    pub name: String,
}

/// An END_OF_RECOVERY record: timeline `tli` began after `prev_tli` at `lsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndOfRecovery {
    pub lsn: Lsn,
    pub time: i64,
    pub tli: u32,
    pub prev_tli: u32,
}

impl SegmentSummary {
    fn new(geometry: &SegmentGeometry) -> Self {
        SegmentSummary {
            pg_major: geometry.pg_major,
            system_identifier: geometry.sysid,
            seg_size: geometry.seg_size,
            page_size: geometry.page_size,
            first_record: None,
            end_lsn: geometry.start,
            incomplete_at_end: None,
            switched: false,
            record_count: 0,
            xact_count: 0,
            first_xact_time: None,
            last_xact_time: None,
            min_xact_time: None,
            max_xact_time: None,
            xids: None,
            restore_points: Vec::new(),
            end_of_recovery: Vec::new(),
            backup_end: Vec::new(),
        }
    }

    fn add(&mut self, record: &Record) {
        self.record_count = self.record_count.saturating_add(1);
        match &record.kind {
            RecordKind::XactEnd(end) => {
                self.xact_count = self.xact_count.saturating_add(1);
                self.first_xact_time.get_or_insert(end.time);
                self.last_xact_time = Some(end.time);
                self.min_xact_time = Some(self.min_xact_time.map_or(end.time, |t| t.min(end.time)));
                self.max_xact_time = Some(self.max_xact_time.map_or(end.time, |t| t.max(end.time)));
                self.xids = Some(XidRange::add(self.xids, end.xid));
            }
            RecordKind::RestorePoint { time, name } => self.restore_points.push(RestorePoint {
                lsn: record.lsn,
                end_lsn: record.end,
                time: *time,
                name: name.clone(),
            }),
            RecordKind::EndOfRecovery {
                time,
                tli,
                prev_tli,
            } => self.end_of_recovery.push(EndOfRecovery {
                lsn: record.lsn,
                time: *time,
                tli: *tli,
                prev_tli: *prev_tli,
            }),
            RecordKind::BackupEnd { start } => self.backup_end.push(*start),
            RecordKind::Switch | RecordKind::Other => {}
        }
    }
}

/// Checks one WAL segment file and summarizes it.
///
/// `name` is the name it was archived under (for a `.partial` file, the name without
/// the suffix, with `partial` set). Checks, in order: the file is not empty; its first
/// page has a known magic, the long header, valid segment and page sizes, the address
/// of the segment `name` says, and a timeline no later than the name's; the system
/// identifier is `expected_sysid` when given; the file is exactly the segment size
/// (also for `.partial` files, which the server archives full-size by renaming the
/// segment, `xlog.c` CleanupAfterArchiveRecovery); then every page header and record
/// as the server's reader checks them, up to the end of valid WAL or an XLOG_SWITCH,
/// which for a complete segment must reach the end of the file.
///
/// ```
/// use stowage::pg::wal::{check_segment, SegmentName, WalError};
///
/// let name: SegmentName = "000000010000000000000003".parse()?;
/// let err = check_segment(&name, &[0u8; 8192], false, None).unwrap_err();
/// assert!(matches!(err, WalError::NotWal { magic: 0, .. }));
/// # Ok::<(), WalError>(())
/// ```
///
/// # Errors
/// The first failed check as a [`WalError`] naming the file, and the LSN where there
/// is one: [`WalError::ForeignCluster`], [`WalError::WrongSegment`],
/// [`WalError::SizeMismatch`], [`WalError::EndsEarly`] (whose source says why valid
/// WAL ends), and so on.
pub fn check_segment(
    name: &SegmentName,
    bytes: &[u8],
    partial: bool,
    expected_sysid: Option<u64>,
) -> Result<SegmentSummary, WalError> {
    if bytes.is_empty() {
        return Err(WalError::Empty { segment: *name });
    }
    let geometry = SegmentGeometry::read(name, bytes)?;
    if let Some(expected) = expected_sysid {
        if geometry.sysid != expected {
            return Err(WalError::ForeignCluster {
                segment: *name,
                found: geometry.sysid,
                expected,
            });
        }
    }
    if bytes.len() as u64 != u64::from(geometry.seg_size) {
        return Err(WalError::SizeMismatch {
            segment: *name,
            len: bytes.len(),
            seg_size: geometry.seg_size,
        });
    }
    let mut summary = SegmentSummary::new(&geometry);
    let mut reader = RecordReader::new(bytes, geometry);
    for record in reader.by_ref() {
        summary.add(&record);
    }
    match reader.end() {
        Some(WalEnd::Switch { .. }) => summary.switched = true,
        Some(WalEnd::EndOfFile { incomplete }) => summary.incomplete_at_end = *incomplete,
        Some(WalEnd::Invalid(problem)) if !partial => {
            return Err(WalError::EndsEarly {
                segment: *name,
                lsn: reader.valid_end(),
                source: problem.clone(),
            })
        }
        Some(WalEnd::Invalid(_)) | None => {}
    }
    summary.first_record = reader.first_record();
    summary.end_lsn = reader.valid_end();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::super::page::tests::SYSID;
    use super::super::record::tests::{main_only, Stream, MIB, PAGE};
    use super::super::record::{RecordError, RM_XACT_ID, RM_XLOG_ID, XLOG_SWITCH};
    use super::super::tests::chain;
    use super::*;

    const BASE: u64 = 0x300000;

    fn restore_point(s: &mut Stream, time: i64, name: &str) -> u64 {
        let mut main = time.to_le_bytes().to_vec();
        let mut raw = [0u8; 64];
        raw[..name.len()].copy_from_slice(name.as_bytes());
        main.extend_from_slice(&raw);
        s.add(RM_XLOG_ID, 0x70, 0, &main_only(&main))
    }

    /// Two segments: commits out of time order, a restore point, an abort, a record
    /// across the boundary, then a switch in the second one.
    #[test]
    fn xid_ranges_wrap_as_postgresql_counts() {
        let mut r = XidRange::add(None, u32::MAX - 1);
        r = XidRange::add(Some(r), 3);
        r = XidRange::add(Some(r), u32::MAX);
        assert_eq!(
            r,
            XidRange {
                first: u32::MAX - 1,
                last: 3
            }
        );
        assert!(r.contains(0) && r.contains(u32::MAX) && !r.contains(4));
        assert!(r.before(10) && !r.before(2));
    }

    fn stream() -> Stream {
        let mut s = Stream::new(BASE, MIB);
        s.commit(10, 500);
        s.commit(11, 400);
        restore_point(&mut s, 450, "before_big_load");
        s.add(RM_XACT_ID, 0x20, 12, &main_only(&600i64.to_le_bytes()));
        while s.lsn() < BASE + MIB as u64 - 5000 {
            s.filler(4000);
        }
        s.filler(8000);
        s.commit(13, 700);
        s.add(RM_XLOG_ID, XLOG_SWITCH, 0, &[]);
        s.pad_segment();
        s
    }

    #[test]
    fn summarizes_a_segment() {
        let s = stream();
        let summary = check_segment(&s.name(0), s.segment(0), false, Some(SYSID)).unwrap();
        assert_eq!(
            (
                summary.pg_major,
                summary.system_identifier,
                summary.seg_size,
                summary.page_size
            ),
            (15, SYSID, MIB as u32, PAGE as u32)
        );
        assert_eq!(summary.first_record, Some(Lsn(BASE + 40)));
        assert_eq!(summary.xact_count, 3);
        assert_eq!(
            (
                summary.first_xact_time,
                summary.last_xact_time,
                summary.min_xact_time,
                summary.max_xact_time
            ),
            (Some(500), Some(600), Some(400), Some(600))
        );
        assert_eq!(
            summary.xids,
            Some(XidRange {
                first: 10,
                last: 12
            })
        );
        assert_eq!(summary.restore_points.len(), 1);
        let rp = &summary.restore_points[0];
        assert_eq!((rp.name.as_str(), rp.time), ("before_big_load", 450));
        assert_eq!(
            rp.end_lsn.0 - rp.lsn.0,
            104,
            "98 bytes, MAXALIGNed (reference §3)"
        );
        assert!(!summary.switched);
        let incomplete = summary.incomplete_at_end.unwrap();
        assert_eq!(summary.end_lsn, incomplete);
        assert!(summary.backup_end.is_empty() && summary.end_of_recovery.is_empty());

        let next = check_segment(&s.name(1), s.segment(1), false, None).unwrap();
        assert!(next.switched);
        assert_eq!(next.xact_count, 1);
        assert_eq!(next.min_xact_time, Some(700));
        assert!(
            next.first_record.unwrap() > incomplete,
            "after the crossing record's tail"
        );
        assert_eq!(next.incomplete_at_end, None);
        let json = serde_json::to_string(&next).unwrap();
        assert!(json.contains(r#""end_lsn":"0/"#), "{json}");
        assert_eq!(serde_json::from_str::<SegmentSummary>(&json).unwrap(), next);
    }

    #[test]
    fn refuses_what_recovery_would_not_replay() {
        let s = stream();
        let (name, seg) = (s.name(0), s.segment(0));
        let err = |bytes: &[u8], partial, sysid| {
            chain(&check_segment(&name, bytes, partial, sysid).unwrap_err())
        };
        assert_eq!(
            err(&[], false, None),
            "000000010000000000000003: the file is empty"
        );
        assert_eq!(
            err(&seg[..MIB / 16], false, None),
            "000000010000000000000003: file is 65536 bytes but its header says segments \
             are 1048576 bytes (truncated?)"
        );
        assert!(err(&seg[..MIB / 16], true, None).contains("truncated"));
        assert_eq!(
            err(seg, false, Some(7_312_000_000_000_000_000)),
            format!(
                "000000010000000000000003: WAL from another cluster: system identifier \
                 {SYSID} but this cluster is 7312000000000000000"
            )
        );
        let renamed = SegmentName { seg: 5, ..name };
        assert_eq!(
            chain(&check_segment(&renamed, seg, false, None).unwrap_err()),
            "000000010000000000000005: header says this is segment 000000010000000000000003, \
             not 000000010000000000000005 (file renamed?)"
        );
        // Garbage after a valid first page.
        let mut garbage = seg.to_vec();
        garbage[2 * PAGE..].fill(0x5A);
        let text = err(&garbage, false, None);
        assert!(
            text.starts_with("000000010000000000000003: valid WAL ends at 0/")
                && text.contains("page at 0/304000: bad magic 0x5A5A"),
            "{text}"
        );
        assert!(
            check_segment(&name, &garbage, true, None).is_ok(),
            "a .partial may stop early"
        );
        // A timeline-2 file may start with pages of timeline 1; not the reverse.
        let later = SegmentName { tli: 2, ..name };
        let summary = check_segment(&later, seg, false, None).unwrap();
        assert_eq!(summary.xact_count, 3);
        let mut wrong_tli = seg.to_vec();
        wrong_tli[4] = 2;
        assert!(
            err(&wrong_tli, false, None).contains("timeline 2 is later than the file's timeline 1")
        );
    }

    #[test]
    fn partial_segment_stops_quietly() {
        let mut s = Stream::new(BASE, MIB);
        s.commit(1, 100);
        restore_point(&mut s, 150, "rp");
        s.commit(2, 200);
        s.pad_segment();
        let (name, seg) = (s.name(0), s.segment(0));
        let err = check_segment(&name, seg, false, None).unwrap_err();
        let WalError::EndsEarly {
            lsn,
            source: RecordError::Length { len: 0, .. },
            ..
        } = err
        else {
            panic!("{err:?}")
        };
        let summary = check_segment(&name, seg, true, None).unwrap();
        assert_eq!(summary.end_lsn, lsn);
        assert_eq!(summary.xact_count, 2);
        assert_eq!(summary.restore_points[0].name, "rp");
        assert_eq!(summary.incomplete_at_end, None);
    }

    #[test]
    fn timestamps_convert() {
        assert_eq!(
            pg_timestamp_to_utc(0).unwrap().to_rfc3339(),
            "2000-01-01T00:00:00+00:00"
        );
        // pg_waldump's "COMMIT 2026-11-23 18:06:49.943063 UTC" (reference §8).
        let t = pg_timestamp_to_utc(848_772_409_943_063).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T18:06:49.943063+00:00");
        assert_eq!(pg_timestamp_to_utc(i64::MAX), None, "+infinity");
        assert_eq!(pg_timestamp_to_utc(i64::MIN), None, "-infinity");
    }

    /// Real WAL from PostgreSQL 15, checked against `pg_waldump` (reference §8).
    mod real {
        use std::collections::{BTreeMap, HashMap};
        use std::os::unix::fs::PermissionsExt;
        use std::path::{Path, PathBuf};
        use std::process::{Command, Output};

        use super::super::super::record::{RecordReader, XactOp};
        use super::*;

        const BIN: &str = "/usr/lib/postgresql/15/bin";
        /// Rmgr names as pg_waldump prints them, in id order (`rmgrlist.h`).
        const RMGRS: [&str; 22] = [
            "XLOG",
            "Transaction",
            "Storage",
            "CLOG",
            "Database",
            "Tablespace",
            "MultiXact",
            "RelMap",
            "Standby",
            "Heap2",
            "Heap",
            "Btree",
            "Hash",
            "Gin",
            "Gist",
            "Sequence",
            "SPGist",
            "BRIN",
            "CommitTs",
            "ReplicationOrigin",
            "Generic",
            "LogicalMessage",
        ];

        /// A throwaway cluster in a temporary directory, stopped on drop.
        struct Cluster {
            root: tempfile::TempDir,
            running: bool,
        }

        /// Runs a PostgreSQL program as `postgres` when we are root (initdb refuses root).
        fn run(program: &str, args: &[&str]) -> Output {
            let path = format!("{BIN}/{program}");
            // SAFETY: geteuid has no preconditions and cannot fail.
            let root = unsafe { libc::geteuid() } == 0;
            let mut command = if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--", &path]);
                c
            } else {
                Command::new(&path)
            };
            let out = command.args(args).env("TZ", "UTC").output().expect("runs");
            assert!(
                out.status.success(),
                "{program} {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            out
        }

        impl Cluster {
            fn start() -> Cluster {
                let root = tempfile::tempdir().expect("tempdir");
                let mode = std::fs::Permissions::from_mode(0o777);
                std::fs::set_permissions(root.path(), mode.clone()).expect("chmod");
                let archive = root.path().join("archive");
                std::fs::create_dir(&archive).expect("mkdir");
                std::fs::set_permissions(&archive, mode).expect("chmod");
                let data = root.path().join("data");
                let data_arg = data.to_str().expect("utf-8 path");
                run(
                    "initdb",
                    &[
                        "-D",
                        data_arg,
                        "-A",
                        "trust",
                        "-U",
                        "postgres",
                        "-N",
                        "--wal-segsize=1",
                    ],
                );
                let conf = [
                    "port = 54329".to_string(),
                    "listen_addresses = ''".into(),
                    format!("unix_socket_directories = '{}'", root.path().display()),
                    "wal_level = replica".into(),
                    "fsync = off".into(),
                    "archive_mode = on".into(),
                    format!("archive_command = 'cp %p {}/%f'", archive.display()),
                    "track_commit_timestamp = on".into(),
                    "max_prepared_transactions = 2".into(),
                ];
                let mut text = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
                text.push_str(&conf.join("\n"));
                text.push('\n');
                std::fs::write(data.join("postgresql.conf"), text).unwrap();
                let log = root.path().join("log");
                run(
                    "pg_ctl",
                    &["-D", data_arg, "-l", log.to_str().unwrap(), "-w", "start"],
                );
                Cluster {
                    root,
                    running: true,
                }
            }

            fn data(&self) -> PathBuf {
                self.root.path().join("data")
            }

            fn archive(&self) -> PathBuf {
                self.root.path().join("archive")
            }

            /// Runs `sql` (one psql session, autocommit) and returns its unaligned output.
            fn psql(&self, sql: &str) -> String {
                let host = self.root.path().to_str().unwrap();
                let out = run(
                    "psql",
                    &[
                        "-h",
                        host,
                        "-p",
                        "54329",
                        "-U",
                        "postgres",
                        "-X",
                        "-q",
                        "-A",
                        "-t",
                        "-v",
                        "ON_ERROR_STOP=1",
                        "-c",
                        sql,
                    ],
                );
                String::from_utf8(out.stdout).unwrap().trim().to_string()
            }

            fn stop(&mut self) {
                let data = self.data();
                run(
                    "pg_ctl",
                    &["-D", data.to_str().unwrap(), "-w", "-m", "fast", "stop"],
                );
                self.running = false;
            }
        }

        impl Drop for Cluster {
            fn drop(&mut self) {
                if self.running {
                    let data = self.data();
                    let _ = Command::new("runuser")
                        .args(["-u", "postgres", "--", &format!("{BIN}/pg_ctl")])
                        .args(["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"])
                        .output();
                }
            }
        }

        /// One `pg_waldump` line: rmgr, total length, xid, lsn, prev, description.
        #[derive(Debug, Clone)]
        struct Dumped {
            rmid: u8,
            tot_len: u32,
            xid: u32,
            lsn: Lsn,
            prev: Lsn,
            desc: String,
        }

        fn parse_dump(line: &str) -> Option<Dumped> {
            let rest = line.strip_prefix("rmgr: ")?;
            let (rmgr, rest) = rest.split_once(' ')?;
            let rest = rest.trim_start().strip_prefix("len (rec/tot):")?;
            let (lens, rest) = rest.split_once(", tx:")?;
            let (xid, rest) = rest.split_once(", lsn:")?;
            let (lsn, rest) = rest.split_once(", prev ")?;
            let (prev, desc) = rest.split_once(", desc: ")?;
            Some(Dumped {
                rmid: RMGRS.iter().position(|r| *r == rmgr)? as u8,
                tot_len: lens.split('/').nth(1)?.trim().parse().ok()?,
                xid: xid.trim().parse().ok()?,
                lsn: lsn.trim().parse().ok()?,
                prev: prev.trim().parse().ok()?,
                desc: desc.to_string(),
            })
        }

        /// `2026-11-23 18:06:49.943063 UTC` (pg_waldump's compat.c, TZ=UTC) as TimestampTz.
        fn dump_time(text: &str) -> i64 {
            let text = text.trim().strip_suffix(" UTC").expect("a UTC time");
            let t = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.6f")
                .expect("pg_waldump's time format");
            t.and_utc().timestamp_micros() - POSTGRES_EPOCH_UNIX_MICROS
        }

        /// What pg_waldump's description says about a transaction-ending record.
        fn dump_xact(desc: &str, xl_xid: u32) -> Option<(XactOp, i64, u32)> {
            let (op, rest) = desc.split_once(' ')?;
            let op = match op {
                "COMMIT" => XactOp::Commit,
                "ABORT" => XactOp::Abort,
                "COMMIT_PREPARED" => XactOp::CommitPrepared,
                "ABORT_PREPARED" => XactOp::AbortPrepared,
                _ => return None,
            };
            let time_part = rest.split(';').next()?;
            let (xid, time) = match time_part.split_once(": ") {
                Some((xid, time)) => (xid.parse().ok()?, time),
                None => (xl_xid, time_part),
            };
            Some((op, dump_time(time), xid))
        }

        fn segment_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
            std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_file())
                .map(|p| {
                    let name = p.file_name().unwrap().to_str().unwrap().to_string();
                    (name, std::fs::read(&p).unwrap())
                })
                .collect()
        }

        #[test]
        fn real_wal_from_postgresql_15() {
            if !Path::new(BIN).join("initdb").exists() {
                eprintln!("skipped: {BIN}/initdb not found (PostgreSQL 15 is not installed)");
                return;
            }
            let mut cluster = Cluster::start();
            let sysid: i64 = cluster
                .psql("SELECT system_identifier FROM pg_control_system()")
                .parse()
                .unwrap();
            let sysid = sysid as u64;
            cluster.psql("CREATE TABLE t(i int)");
            for i in 1..=3 {
                cluster.psql(&format!("INSERT INTO t VALUES ({i})"));
            }
            let aborted: u32 = cluster
                .psql("BEGIN; INSERT INTO t VALUES (-1); SELECT pg_current_xact_id(); ROLLBACK")
                .parse()
                .unwrap();
            cluster.psql("BEGIN; INSERT INTO t VALUES (4); PREPARE TRANSACTION 'g1'");
            let prepared: u32 = cluster
                .psql("SELECT transaction FROM pg_prepared_xacts WHERE gid = 'g1'")
                .parse()
                .unwrap();
            cluster.psql("COMMIT PREPARED 'g1'");
            cluster.psql("BEGIN; INSERT INTO t VALUES (-2); PREPARE TRANSACTION 'g2'");
            let rolled_back: u32 = cluster
                .psql("SELECT transaction FROM pg_prepared_xacts WHERE gid = 'g2'")
                .parse()
                .unwrap();
            cluster.psql("ROLLBACK PREPARED 'g2'");
            // Ordinary records across page and segment boundaries, and many commits.
            cluster.psql(
                "CREATE TABLE u AS SELECT g AS i, md5(g::text) AS m \
                 FROM generate_series(1, 20000) g",
            );
            cluster.psql("CREATE TABLE v(i int)");
            cluster.psql(
                "DO $$ BEGIN FOR i IN 1..200 LOOP INSERT INTO v VALUES (i); COMMIT; \
                 END LOOP; END $$",
            );
            // One 3 MB record across several 1 MiB segments.
            cluster.psql("SELECT pg_logical_emit_message(false, 'stowage', repeat('x', 3000000))");
            for i in 5..=7 {
                cluster.psql(&format!("INSERT INTO t VALUES ({i})"));
            }
            let rp_end: Lsn = cluster
                .psql("SELECT pg_create_restore_point('rp_one')")
                .parse()
                .unwrap();
            let switch_end: Lsn = cluster.psql("SELECT pg_switch_wal()").parse().unwrap();
            let commit_times: HashMap<u32, i64> = cluster
                .psql(
                    "SELECT xmin, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) \
                     * 1000000)::int8 FROM t",
                )
                .lines()
                .map(|line| {
                    let (xid, micros) = line.split_once('|').unwrap();
                    let micros: i64 = micros.parse().unwrap();
                    (xid.parse().unwrap(), micros - POSTGRES_EPOCH_UNIX_MICROS)
                })
                .collect();
            assert_eq!(commit_times.len(), 7, "one committed transaction per row");
            cluster.stop();

            // Every archived file is a segment that passes, with and without sysid.
            let archived = segment_files(&cluster.archive());
            // initdb's own segments are never archived; the rest makes 4 or more.
            assert!(archived.len() >= 4, "{:?}", archived.keys());
            let mut summaries = BTreeMap::new();
            let mut ours = BTreeMap::new();
            for (file, bytes) in &archived {
                let name: SegmentName = file.parse().unwrap();
                let summary = check_segment(&name, bytes, false, Some(sysid))
                    .unwrap_or_else(|e| panic!("{}", chain(&e)));
                assert_eq!(check_segment(&name, bytes, true, None).unwrap(), summary);
                let geometry = SegmentGeometry::read(&name, bytes).unwrap();
                for record in RecordReader::new(bytes, geometry) {
                    ours.insert(record.lsn, record);
                }
                summaries.insert(name, summary);
            }
            let names: Vec<&SegmentName> = summaries.keys().collect();
            for pair in names.windows(2) {
                assert_eq!(pair[0].next(MIB as u32).as_ref(), Some(pair[1]), "a gap");
            }

            // pg_waldump over the same files: the same records, field by field.
            let dump = Command::new(format!("{BIN}/pg_waldump"))
                .env("TZ", "UTC")
                .arg("-p")
                .arg(cluster.archive())
                .arg(names[0].to_string())
                .arg(names[names.len() - 1].to_string())
                .output()
                .unwrap();
            let dumped: Vec<Dumped> = String::from_utf8_lossy(&dump.stdout)
                .lines()
                .map(|line| parse_dump(line).unwrap_or_else(|| panic!("unparsed: {line}")))
                .collect();
            assert!(
                dumped.len() > 500,
                "{}",
                String::from_utf8_lossy(&dump.stderr)
            );
            let crossing: Vec<Lsn> = summaries
                .values()
                .filter_map(|s| s.incomplete_at_end)
                .collect();
            let mut xacts = Vec::new();
            for d in &dumped {
                let Some(r) = ours.get(&d.lsn) else {
                    assert!(crossing.contains(&d.lsn), "missed {d:?}");
                    continue;
                };
                assert_eq!(
                    (r.rmid, r.tot_len, r.xid, r.prev),
                    (d.rmid, d.tot_len, d.xid, d.prev),
                    "{d:?}"
                );
                if let Some(expected) = dump_xact(&d.desc, d.xid).filter(|_| d.rmid == 1) {
                    let RecordKind::XactEnd(end) = r.kind else {
                        panic!("not decoded as a transaction end: {d:?}")
                    };
                    assert_eq!((end.op, end.time, end.xid), expected, "{d:?}");
                    xacts.push(end);
                }
                if d.rmid == 0 && d.desc.starts_with("RESTORE_POINT") {
                    assert_eq!(d.desc, "RESTORE_POINT rp_one");
                }
            }
            assert_eq!(ours.len() + crossing.len(), dumped.len());
            assert!(!crossing.is_empty(), "the 3 MB message at least");
            let total: u32 = summaries.values().map(|s| s.xact_count).sum();
            assert_eq!(total as usize, xacts.len());
            assert!(xacts
                .iter()
                .any(|x| x.op == XactOp::Abort && x.xid == aborted));
            assert!(xacts
                .iter()
                .any(|x| x.op == XactOp::CommitPrepared && x.xid == prepared));
            assert!(xacts
                .iter()
                .any(|x| x.op == XactOp::AbortPrepared && x.xid == rolled_back));
            for (xid, time) in &commit_times {
                assert!(
                    xacts.iter().any(|x| x.xid == *xid
                        && x.time == *time
                        && matches!(x.op, XactOp::Commit | XactOp::CommitPrepared)),
                    "commit of {xid} at {time} (pg_xact_commit_timestamp) not found"
                );
            }
            let with_rp: Vec<&SegmentSummary> = summaries
                .values()
                .filter(|s| !s.restore_points.is_empty())
                .collect();
            assert_eq!(with_rp.len(), 1);
            let rp = &with_rp[0].restore_points[0];
            assert_eq!((rp.name.as_str(), rp.end_lsn), ("rp_one", rp_end));
            assert!(summaries
                .values()
                .any(|s| s.switched && s.end_lsn == switch_end));
            assert!(
                summaries.values().any(|s| s.first_record.is_none()),
                "a segment wholly inside the 3 MB message"
            );
            for s in summaries.values() {
                if s.xact_count > 0 {
                    assert!(
                        s.min_xact_time <= s.first_xact_time
                            && s.first_xact_time <= s.max_xact_time
                    );
                }
            }

            // pg_wal: archived files are the same; the rest are the segment being
            // written (valid WAL stops early; fine as a .partial) or recycled files
            // still holding an older segment's pages (refused as renamed).
            let last_archived = *names[names.len() - 1];
            let (mut current, mut recycled) = (0, 0);
            for (file, bytes) in segment_files(&cluster.data().join("pg_wal")) {
                let Ok(name) = file.parse::<SegmentName>() else {
                    continue;
                };
                let result = check_segment(&name, &bytes, false, Some(sysid));
                if let Some(summary) = summaries.get(&name) {
                    assert_eq!(result.as_ref(), Ok(summary));
                } else if Some(name) == last_archived.next(MIB as u32) {
                    assert!(
                        matches!(result, Err(WalError::EndsEarly { .. })),
                        "{result:?}"
                    );
                    let partial = check_segment(&name, &bytes, true, Some(sysid)).unwrap();
                    assert!(partial.record_count > 0, "the shutdown checkpoint");
                    current += 1;
                } else {
                    // Recycled (renamed) or preallocated (zero-filled) by the server.
                    assert!(
                        matches!(
                            result,
                            Err(WalError::WrongSegment { .. } | WalError::NotWal { magic: 0, .. })
                        ),
                        "{file}: {result:?}"
                    );
                    recycled += 1;
                }
            }
            assert_eq!(current, 1);
            eprintln!(
                "real WAL: {} archived segments, {} records as pg_waldump lists them, {} of them \
                 across segment boundaries, {} transaction ends, {} recycled files refused",
                archived.len(),
                dumped.len(),
                crossing.len(),
                xacts.len(),
                recycled
            );
            write_seeds(&archived, &summaries);
        }

        /// With `STOWAGE_WRITE_SEEDS=1`, keeps two real segments as fuzz seeds: the one
        /// with the restore point and the switch (mostly zeros), and the first 32 KiB
        /// of the first segment (padded with zeros by the fuzz check).
        fn write_seeds(
            archived: &BTreeMap<String, Vec<u8>>,
            summaries: &BTreeMap<SegmentName, SegmentSummary>,
        ) {
            if std::env::var_os("STOWAGE_WRITE_SEEDS").is_none_or(|v| v != "1") {
                return;
            }
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/wal_segment");
            std::fs::create_dir_all(&dir).unwrap();
            let (switched, _) = summaries
                .iter()
                .find(|(_, s)| !s.restore_points.is_empty())
                .unwrap();
            std::fs::write(
                dir.join("seed-pg15-switch"),
                &archived[&switched.to_string()],
            )
            .unwrap();
            let first = archived.values().next().unwrap();
            std::fs::write(dir.join("seed-pg15-head"), &first[..32 * 1024]).unwrap();
        }
    }
}
