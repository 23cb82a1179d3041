//! The properties the PostgreSQL fuzz targets check: `wal_segment`, `wal_history` and
//! `pg_backup_files` (a base backup's `backup_label` and `backup_manifest`).
//!
//! Like `mod.rs` beside it, this file is compiled twice, by the fuzz targets
//! (`fuzz/fuzz_targets/wal_*.rs`, through `#[path]`) and by the corpus replay
//! (`tests/fuzz_corpus.rs`), so `cargo test` replays exactly what the fuzzer ran. It uses
//! only `std` and `stowage`. Each check takes arbitrary bytes and panics only when a
//! property fails; the first is always that no parser panics.

#![allow(dead_code)]

use stowage::pg::wal::name::MIN_SEG_SIZE;
use stowage::pg::wal::page::LongPageHeader;
use stowage::pg::wal::{
    check_backup_file, check_history, check_segment, Lsn, SegmentName, SegmentSummary, WalError,
    WalFileName,
};

/// A target's property: panics when `data` breaks it.
pub type Check = fn(data: &[u8]);

/// The WAL targets, by the name of their corpus directory.
pub const TARGETS: &[(&str, Check)] = &[
    ("wal_segment", wal_segment),
    ("wal_history", wal_history),
    ("pg_backup_files", pg_backup_files),
];

/// The name inputs are checked under besides the one their own header implies.
pub const FIXED_SEGMENT: SegmentName = SegmentName {
    tli: 1,
    log: 0,
    seg: 3,
};

/// `wal_segment` input: a segment file, or the first part of one.
///
/// 1. The input as is, and (when its header says 1 MiB segments) padded with zeros to
///    1 MiB, goes through `check_segment` as a complete and as a `.partial` segment,
///    under [`FIXED_SEGMENT`] and under the name its first page's address implies.
/// 2. Whatever passes as complete passes as `.partial` with the same summary.
/// 3. Accepted summaries are consistent: sizes, LSNs inside the segment, time order.
/// 4. The expected system identifier is honoured both ways.
pub fn wal_segment(data: &[u8]) {
    let own = LongPageHeader::parse(data).and_then(|long| {
        SegmentName::from_lsn(long.std.tli.max(1), long.std.pageaddr, long.seg_size).ok()
    });
    let padded = LongPageHeader::parse(data)
        .filter(|long| long.seg_size == MIN_SEG_SIZE && data.len() < MIN_SEG_SIZE as usize)
        .map(|_| {
            let mut padded = data.to_vec();
            padded.resize(MIN_SEG_SIZE as usize, 0);
            padded
        });
    for name in [Some(FIXED_SEGMENT), own].into_iter().flatten() {
        check_both_ways(&name, data);
        if let Some(padded) = &padded {
            check_both_ways(&name, padded);
        }
    }
}

fn check_both_ways(name: &SegmentName, bytes: &[u8]) {
    let complete = check_segment(name, bytes, false, None);
    let partial = check_segment(name, bytes, true, None);
    if let Ok(summary) = &complete {
        assert_eq!(
            partial.as_ref(),
            Ok(summary),
            "a complete segment must read the same as a .partial"
        );
    }
    let Ok(summary) = partial else {
        return;
    };
    assert_consistent(name, bytes, &summary);
    let sysid = summary.system_identifier;
    assert_eq!(
        check_segment(name, bytes, true, Some(sysid)).as_ref(),
        Ok(&summary)
    );
    assert!(matches!(
        check_segment(name, bytes, true, Some(sysid ^ 1)),
        Err(WalError::ForeignCluster { .. })
    ));
}

fn assert_consistent(name: &SegmentName, bytes: &[u8], s: &SegmentSummary) {
    assert_eq!(bytes.len() as u64, u64::from(s.seg_size));
    assert!((12..=17).contains(&s.pg_major));
    // u128: the last segment of the address space ends at 2^64.
    let start = u128::from(name.start_lsn(s.seg_size).0);
    let end = start + u128::from(s.seg_size);
    let inside = |lsn: Lsn| start <= u128::from(lsn.0) && u128::from(lsn.0) < end;
    let end_lsn = u128::from(s.end_lsn.0);
    assert!(start <= end_lsn && end_lsn <= end, "{s:?}");
    if let Some(first) = s.first_record {
        assert!(inside(first), "{s:?}");
    }
    if let Some(incomplete) = s.incomplete_at_end {
        // Equal, or a page header apart when the last record ended on a page boundary.
        assert!(
            inside(incomplete) && !s.switched && s.end_lsn <= incomplete,
            "{s:?}"
        );
    }
    for rp in &s.restore_points {
        assert!(inside(rp.lsn) && rp.lsn < rp.end_lsn && rp.end_lsn <= s.end_lsn);
    }
    for eor in &s.end_of_recovery {
        assert!(inside(eor.lsn));
    }
    let times = [
        s.first_xact_time,
        s.last_xact_time,
        s.min_xact_time,
        s.max_xact_time,
    ];
    if s.xact_count == 0 {
        assert_eq!(times, [None; 4]);
    } else {
        let [Some(first), Some(last), Some(min), Some(max)] = times else {
            panic!("{s:?}")
        };
        assert!(min <= first && first <= max && min <= last && last <= max);
    }
    let decoded = s.xact_count as usize
        + s.restore_points.len()
        + s.end_of_recovery.len()
        + s.backup_end.len()
        + usize::from(s.switched);
    assert!(decoded <= s.record_count as usize, "{s:?}");
}

/// `wal_history` input: text read as a timeline history file, a backup history file,
/// and line by line as file names and LSNs.
///
/// 1. `check_history` for timelines 2, 3, 100 and `u32::MAX`: accepted entries are
///    non-empty, strictly increasing and below the timeline, and written back as the
///    server writes them they read back the same.
/// 2. `check_backup_file` under `000000010000000000000003.00000028.backup` and under
///    every line that is a backup file name: accepted files stop at or after their start.
/// 3. Every line that parses as a file name or an LSN prints back to itself (names) or
///    to a text that parses to the same value (LSNs, whose digits may be padded).
pub fn wal_history(data: &[u8]) {
    for tli in [2, 3, 100, u32::MAX] {
        let Ok(entries) = check_history(tli, data) else {
            continue;
        };
        assert!(!entries.is_empty());
        assert!(entries
            .windows(2)
            .all(|w| w[0].parent_tli < w[1].parent_tli));
        assert!(entries.iter().all(|e| e.parent_tli < tli));
        let written: String = entries
            .iter()
            .map(|e| format!("{}\t{}\t{}\n", e.parent_tli, e.switchpoint, e.reason))
            .collect();
        assert_eq!(check_history(tli, written.as_bytes()), Ok(entries));
    }
    let text = String::from_utf8_lossy(data);
    let mut backup_names = vec![(FIXED_SEGMENT, 0x28)];
    for line in text.lines() {
        if let Ok(name) = WalFileName::parse(line) {
            assert_eq!(name.to_string(), line);
            if let WalFileName::Backup { segment, offset } = name {
                backup_names.push((segment, offset));
            }
        }
        if let Ok(lsn) = line.parse::<Lsn>() {
            assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn));
        }
    }
    for (segment, offset) in backup_names.into_iter().take(8) {
        if let Ok(info) = check_backup_file(&segment, offset, data) {
            assert!(info.start <= info.stop);
            assert!(info.stop_timeline.is_none_or(|t| t == segment.tli));
        }
    }
}

/// `pg_backup_files` input: a `backup_label` (first byte even) or a `backup_manifest`
/// (odd), after that byte. Labels come from the server; manifests from a tar stream on
/// stdin, which may be anything.
///
/// 1. Neither parser panics.
/// 2. A label's LSNs print and parse back to themselves.
/// 3. A manifest accepts exactly its own file list, and refuses it with one file gone.
pub fn pg_backup_files(data: &[u8]) {
    use stowage::pg::backup::{BackupLabel, Manifest};
    let Some((&select, rest)) = data.split_first() else {
        return;
    };
    if select % 2 == 0 {
        if let Ok(label) = BackupLabel::parse(&String::from_utf8_lossy(rest)) {
            for lsn in [label.start_lsn, label.checkpoint_lsn] {
                assert_eq!(lsn.to_string().parse::<Lsn>().ok(), Some(lsn));
            }
        }
    } else if let Ok(manifest) = Manifest::parse(rest) {
        assert!(manifest.check(&manifest.files).is_ok());
        let mut fewer = manifest.files.clone();
        if let Some(first) = fewer.keys().next().cloned() {
            fewer.remove(&first);
            assert!(manifest.check(&fewer).is_err());
        }
    }
}
