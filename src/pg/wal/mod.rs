//! WAL files as the archiver hands them over: names, segments, timeline histories and
//! backup history files, checked before they are stored and summarized for the index.
//!
//! Why check at all: `archive_command` exiting 0 lets the server recycle its copy, so a
//! truncated, renamed, foreign or garbage file stored under a segment's name is WAL lost
//! for good, found only when a restore needs it. The checks are the ones the server's own
//! reader makes when it replays the file (`src/backend/access/transam/xlogreader.c`),
//! so what passes here is what recovery will accept. `/work/shared/reference/postgresql.md`
//! (cited as `reference/postgresql.md §N`) has every byte layout used, checked against
//! PostgreSQL 12–17's source.
//!
//! ```text
//! segment file (seg_size bytes, 1 MiB..1 GiB)
//! ┌──────────────┬──────────────┬─────┬──────────────┐
//! │ page 0       │ page 1       │  …  │ page n−1     │   pages of XLOG_BLCKSZ (8 KiB)
//! │ long header  │ short header │     │ short header │   page.rs
//! │ 40 bytes     │ 24 bytes     │     │              │
//! └──────────────┴──────────────┴─────┴──────────────┘
//!   records laid end to end across pages, MAXALIGNed   record.rs
//!   summary of one file for the index                 summary.rs
//! ```
//!
//! | file | what it is |
//! |---|---|
//! | [`name`] | LSNs and the four kinds of archive file name |
//! | [`page`] | page headers and the per-page checks |
//! | [`record`] | the records of one segment, decoded as far as the index needs |
//! | [`summary`] | [`check_segment`]: one segment checked whole and summarized |
//! | [`history`] | [`check_history`] and [`check_backup_file`] |
//!
//! Invariants (each module's doc has its own):
//! 1. Everything here parses untrusted bytes: no panic, no out-of-bounds index, no
//!    allocation sized by a length field beyond the input's own size, whatever the input.
//! 2. Native byte order is little-endian: a file from a big-endian server is refused
//!    (its page magic reads byte-swapped), never misread.
//! 3. Every error names the file and, where there is one, the LSN at fault.
//!
//! Not here: storing, fetching or ordering files (the archive commands do that).

pub mod history;
pub mod name;
pub mod page;
pub mod record;
pub mod summary;

pub use history::{check_backup_file, check_history, BackupFileInfo, HistoryEntry};
pub use name::{Lsn, NameError, SegmentName, WalFileName};
pub use summary::{check_segment, pg_timestamp_to_utc, SegmentSummary, XidRange};

use page::{major_for_magic, PageError};
use record::RecordError;

/// A WAL archive file that must not be stored (or served) as what its name says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("{segment}: the file is empty")]
    Empty { segment: SegmentName },
    #[error("{segment}: the file is {len} bytes, too short for a WAL page header")]
    TooShort { segment: SegmentName, len: usize },
    #[error(
        "{segment}: first page has magic {magic:#06X}{}, not a PostgreSQL 12–17 WAL page",
        swapped_note(*.magic)
    )]
    NotWal { segment: SegmentName, magic: u16 },
    #[error("{segment}: the first page has no long header, so it is not the start of a segment")]
    NoLongHeader { segment: SegmentName },
    #[error(
        "{segment}: header says segments are {seg_size} bytes, \
         not a power of two from 1 MiB to 1 GiB"
    )]
    BadSegSize { segment: SegmentName, seg_size: u32 },
    #[error(
        "{segment}: header says WAL pages are {page_size} bytes, \
         not a power of two from 1 KiB to 64 KiB"
    )]
    BadPageSize {
        segment: SegmentName,
        page_size: u32,
    },
    #[error(
        "{segment}: file is {len} bytes but its header says segments are {seg_size} bytes{}",
        if (*.len as u64) < u64::from(*.seg_size) { " (truncated?)" } else { " (data appended?)" }
    )]
    SizeMismatch {
        segment: SegmentName,
        len: usize,
        seg_size: u32,
    },
    #[error(
        "{segment}: WAL from another cluster: system identifier {found} \
         but this cluster is {expected}"
    )]
    ForeignCluster {
        segment: SegmentName,
        found: u64,
        expected: u64,
    },
    #[error("{segment}: header says this is segment {found}, not {segment} (file renamed?)")]
    WrongSegment {
        segment: SegmentName,
        found: SegmentName,
    },
    #[error("{segment}: first page says it is at {pageaddr}, which is not the start of a segment")]
    FirstPageAddress { segment: SegmentName, pageaddr: Lsn },
    #[error("{segment}: invalid first page header")]
    Page {
        segment: SegmentName,
        #[source]
        source: PageError,
    },
    #[error("{segment}: valid WAL ends at {lsn}, before the end of the file")]
    EndsEarly {
        segment: SegmentName,
        lsn: Lsn,
        #[source]
        source: RecordError,
    },
    #[error("{file}: timeline {tli} cannot have a history file (timeline 1 never has one)")]
    HistoryTimeline { file: WalFileName, tli: u32 },
    #[error("{file} line {line}: syntax error in history file: {text:?} ({expected})")]
    HistorySyntax {
        file: WalFileName,
        line: usize,
        text: String,
        expected: &'static str,
    },
    #[error(
        "{file} line {line}: timeline IDs must be in increasing sequence \
         ({tli} after {previous})"
    )]
    HistoryOrder {
        file: WalFileName,
        line: usize,
        tli: u32,
        previous: u32,
    },
    #[error("{file} line {line}: timeline {parent} is not below the file's timeline {tli}")]
    HistoryParent {
        file: WalFileName,
        line: usize,
        parent: u32,
        tli: u32,
    },
    #[error("{file}: no timeline entries")]
    HistoryEmpty { file: WalFileName },
    #[error("{file}: no valid {field} line")]
    BackupField {
        file: WalFileName,
        field: &'static str,
    },
    #[error("{file}: START WAL LOCATION {start} (file {start_file}) does not match the file name")]
    BackupStartMismatch {
        file: WalFileName,
        start: Lsn,
        start_file: SegmentName,
    },
    #[error("{file}: STOP TIMELINE {stop_timeline} is not the timeline in the file name")]
    BackupStopTimeline {
        file: WalFileName,
        stop_timeline: u32,
    },
    #[error("{file}: STOP WAL LOCATION {stop} is before START WAL LOCATION {start}")]
    BackupStopBeforeStart {
        file: WalFileName,
        start: Lsn,
        stop: Lsn,
    },
}

/// Says so when a magic is a known one byte-swapped: the file came from a server of the
/// other endianness (WAL is written in native byte order, never swapped).
fn swapped_note(magic: u16) -> String {
    major_for_magic(magic.swap_bytes()).map_or_else(String::new, |major| {
        format!(" (PostgreSQL {major}'s magic byte-swapped: written on a big-endian machine?)")
    })
}

#[cfg(test)]
pub(crate) mod tests {
    /// An error and its sources, as `{:#}` prints them at the edge.
    pub(crate) fn chain(err: &dyn std::error::Error) -> String {
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    #[test]
    fn not_wal_says_when_the_magic_is_byte_swapped() {
        let segment = "000000010000000000000003".parse().unwrap();
        let swapped = super::WalError::NotWal {
            segment,
            magic: 0x10D1,
        };
        assert!(swapped.to_string().contains("big-endian"), "{swapped}");
        let zero = super::WalError::NotWal { segment, magic: 0 };
        assert_eq!(
            zero.to_string(),
            "000000010000000000000003: first page has magic 0x0000, \
             not a PostgreSQL 12–17 WAL page"
        );
    }
}
