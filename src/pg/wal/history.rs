//! Timeline history files (`TTTTTTTT.history`) and backup history files
//! (`<segment>.OOOOOOOO.backup`): the two text files the archiver hands over beside
//! segments (`reference/postgresql.md §1`).
//!
//! A history file is what recovery reads to follow timelines, so [`check_history`]
//! applies the rules of the server's reader, readTimeLineHistory
//! (`src/backend/access/transam/timeline.c`), and refuses whatever would make it stop
//! with FATAL. A backup history file is informational (recovery never asks for it);
//! [`check_backup_file`] only makes sure it is one and agrees with its name.
//!
//! Invariants:
//! 1. Text need not be UTF-8: reasons and labels are decoded lossily, never refused.
//! 2. Blank lines and `#` comments are normal in history files (the time and LSN
//!    reasons end in an extra `\n`), and are skipped as the server skips them.

use serde::{Deserialize, Serialize};

use super::name::{is_valid_seg_size, Lsn, SegmentName, WalFileName, MAX_SEG_SIZE, MIN_SEG_SIZE};
use super::WalError;

/// One history line: timeline `parent_tli` ended at `switchpoint`, the first LSN of the
/// timeline after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub parent_tli: u32,
    pub switchpoint: Lsn,
    /// What ended it (`before 2026-11-23 18:07:22.952951+00`, `no recovery target
    /// specified`, …), lossily decoded; the server ignores it.
    pub reason: String,
}

/// `isspace` in the C locale, which readTimeLineHistory uses.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r')
}

/// Splits off a leading run of digits of `radix` that fits in a u32 (as sscanf's `%u`
/// and `%X` read them, minus the sign and `0x` prefix the server never writes).
fn take_number(text: &str, radix: u32) -> Option<(u32, &str)> {
    let end = text
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(text.len());
    let value = u32::from_str_radix(text.get(..end)?, radix).ok()?;
    Some((value, &text[end..]))
}

/// `sscanf(line, "%u\t%X/%X", ...)` with the reason after it. `Err` says what was
/// expected, in the server's hint words.
fn parse_line(line: &str) -> Result<HistoryEntry, &'static str> {
    let line_start = line.trim_start_matches(is_c_space);
    let (parent_tli, rest) = take_number(line_start, 10).ok_or("expected a numeric timeline ID")?;
    let rest = rest.trim_start_matches(is_c_space);
    let location = || -> Option<(u32, u32, &str)> {
        let (hi, rest) = take_number(rest, 16)?;
        let (lo, rest) = take_number(rest.strip_prefix('/')?, 16)?;
        Some((hi, lo, rest))
    };
    let (hi, lo, reason) = location().ok_or("expected a write-ahead log switchpoint location")?;
    if parent_tli == 0 {
        return Err("expected a timeline ID of at least 1");
    }
    Ok(HistoryEntry {
        parent_tli,
        switchpoint: Lsn(u64::from(hi) << 32 | u64::from(lo)),
        reason: reason.strip_prefix('\t').unwrap_or(reason).to_string(),
    })
}

/// Parses and checks the history file of timeline `tli` (`TTTTTTTT.history`).
///
/// Rules of readTimeLineHistory: lines that are empty or whose first non-space
/// character is `#` are skipped; every other line is `<parent tli>\t<switchpoint X/X>`
/// followed by anything (the reason); timeline IDs strictly increase and are all below
/// `tli`. Stricter than the server: `tli` must be above 1 (timeline 1 never has a
/// history file), the file must list at least one timeline, and numbers must be plain
/// digits that fit in 32 bits (the server writes nothing else).
///
/// ```
/// use stowage::pg::wal::check_history;
///
/// let file = b"1\t0/40001A8\tbefore 2026-11-23 18:07:22.952951+00\n\n\n\
///              2\t0/50000A0\tno recovery target specified\n";
/// let entries = check_history(3, file)?;
/// assert_eq!(entries[1].parent_tli, 2);
/// assert_eq!(entries[1].switchpoint.to_string(), "0/50000A0");
/// # Ok::<(), stowage::pg::wal::WalError>(())
/// ```
///
/// # Errors
/// [`WalError::HistoryTimeline`], [`WalError::HistorySyntax`],
/// [`WalError::HistoryOrder`], [`WalError::HistoryParent`] or
/// [`WalError::HistoryEmpty`], naming the file and line.
pub fn check_history(tli: u32, bytes: &[u8]) -> Result<Vec<HistoryEntry>, WalError> {
    let file = WalFileName::History { tli };
    if tli <= 1 {
        return Err(WalError::HistoryTimeline { file, tli });
    }
    let mut entries: Vec<HistoryEntry> = Vec::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        let text = String::from_utf8_lossy(raw);
        let content = text.trim_start_matches(is_c_space);
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let entry = parse_line(&text).map_err(|expected| WalError::HistorySyntax {
            file,
            line,
            text: text.chars().take(200).collect(),
            expected,
        })?;
        if let Some(previous) = entries.last() {
            if entry.parent_tli <= previous.parent_tli {
                return Err(WalError::HistoryOrder {
                    file,
                    line,
                    tli: entry.parent_tli,
                    previous: previous.parent_tli,
                });
            }
        }
        if entry.parent_tli >= tli {
            return Err(WalError::HistoryParent {
                file,
                line,
                parent: entry.parent_tli,
                tli,
            });
        }
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err(WalError::HistoryEmpty { file });
    }
    Ok(entries)
}

/// What a backup history file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFileInfo {
    /// START WAL LOCATION: where replay of the backup begins.
    pub start: Lsn,
    /// STOP WAL LOCATION: the backup is consistent once replay reaches it.
    pub stop: Lsn,
    pub stop_timeline: Option<u32>,
    pub label: Option<String>,
}

/// `X/X (file TTTTTTTTLLLLLLLLSSSSSSSS)`, as do_pg_backup_stop writes it.
fn parse_location(text: &str) -> Option<(Lsn, SegmentName)> {
    let (lsn, rest) = text.split_once(" (file ")?;
    let name = rest.strip_suffix(')')?;
    Some((lsn.parse().ok()?, name.parse().ok()?))
}

/// Whether `start` lies at `offset` of segment `file` for some valid segment size:
/// the size is not in a backup history file, and the name must fit whichever it is.
fn start_matches(start: Lsn, file: &SegmentName, offset: u32) -> bool {
    let mut size = MIN_SEG_SIZE;
    while size <= MAX_SEG_SIZE && is_valid_seg_size(size) {
        let fits = SegmentName::from_lsn(file.tli, start, size).is_ok_and(|s| s == *file)
            && start.segment_offset(size) == offset;
        if fits {
            return true;
        }
        size <<= 1;
    }
    false
}

/// Parses and checks the backup history file `<segment>.<offset>.backup`
/// (`xlog.c` do_pg_backup_stop ≤15, `xlogbackup.c` 16–17): its `START WAL LOCATION`
/// is at `offset` in `segment` (log and seg; its timeline is the start timeline, at most
/// the name's, which is the stop timeline), a `STOP WAL LOCATION` not before it is
/// present, and `STOP TIMELINE`, if present, is the name's timeline.
///
/// # Errors
/// [`WalError::BackupField`] for a missing or unreadable line,
/// [`WalError::BackupStartMismatch`], [`WalError::BackupStopBeforeStart`] or
/// [`WalError::BackupStopTimeline`], naming the file.
pub fn check_backup_file(
    segment: &SegmentName,
    offset: u32,
    bytes: &[u8],
) -> Result<BackupFileInfo, WalError> {
    let file = WalFileName::Backup {
        segment: *segment,
        offset,
    };
    let text = String::from_utf8_lossy(bytes);
    let field = |name: &'static str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
    };
    let missing = |field| WalError::BackupField { file, field };
    let (start, start_file) = field("START WAL LOCATION")
        .and_then(parse_location)
        .ok_or_else(|| missing("START WAL LOCATION"))?;
    let same_place = (start_file.log, start_file.seg) == (segment.log, segment.seg);
    if !same_place || start_file.tli > segment.tli || !start_matches(start, &start_file, offset) {
        return Err(WalError::BackupStartMismatch {
            file,
            start,
            start_file,
        });
    }
    let (stop, _) = field("STOP WAL LOCATION")
        .and_then(parse_location)
        .ok_or_else(|| missing("STOP WAL LOCATION"))?;
    if stop < start {
        return Err(WalError::BackupStopBeforeStart { file, start, stop });
    }
    let stop_timeline = match field("STOP TIMELINE") {
        None => None,
        Some(value) => Some(
            value
                .trim()
                .parse::<u32>()
                .map_err(|_| missing("STOP TIMELINE"))?,
        ),
    };
    if let Some(stop_timeline) = stop_timeline.filter(|t| *t != segment.tli) {
        return Err(WalError::BackupStopTimeline {
            file,
            stop_timeline,
        });
    }
    Ok(BackupFileInfo {
        start,
        stop,
        stop_timeline,
        label: field("LABEL").map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::chain;
    use super::*;

    /// Seen on 15 (reference §1).
    const TLI3: &[u8] = b"1\t0/40001A8\tbefore 2026-11-23 18:07:22.952951+00\n\n\n\
                          2\t0/50000A0\tno recovery target specified\n";

    #[test]
    fn reads_history_as_the_server_does() {
        let entries = check_history(3, TLI3).unwrap();
        assert_eq!(
            entries,
            vec![
                HistoryEntry {
                    parent_tli: 1,
                    switchpoint: Lsn(0x40001A8),
                    reason: "before 2026-11-23 18:07:22.952951+00".into()
                },
                HistoryEntry {
                    parent_tli: 2,
                    switchpoint: Lsn(0x50000A0),
                    reason: "no recovery target specified".into()
                },
            ]
        );
        // Comments, indentation, CRLF, no final newline, no reason, bytes that are not
        // UTF-8, a space instead of the tab.
        let odd = b"# written by hand\n  \t# indented comment\r\n\n  1 0/3000000\r\n\
                    4\t1/ABCDEF00\tat restore point \"\xff\"";
        let entries = check_history(7, odd).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].reason, "\r");
        assert_eq!(entries[1].switchpoint, "1/ABCDEF00".parse().unwrap());
        assert_eq!(entries[1].reason, "at restore point \"\u{FFFD}\"");
    }

    #[test]
    fn refuses_what_recovery_would_refuse() {
        let err = |tli, text: &[u8]| chain(&check_history(tli, text).unwrap_err());
        assert!(err(1, TLI3).contains("timeline 1 never has one"));
        assert!(err(0, TLI3).contains("00000000.history"));
        assert_eq!(
            err(2, b"\n# nothing\n"),
            "00000002.history: no timeline entries"
        );
        assert_eq!(
            err(3, b"1\t0/1000000\tok\nx\t0/2\n"),
            "00000003.history line 2: syntax error in history file: \"x\\t0/2\" \
             (expected a numeric timeline ID)"
        );
        assert!(err(3, b"1\n").contains("switchpoint location"));
        assert!(err(3, b"1\t0-1\n").contains("switchpoint location"));
        assert!(err(3, b"1\t123456789/0\n").contains("switchpoint location"));
        assert!(err(3, b"4294967296\t0/0\n").contains("numeric timeline ID"));
        assert!(err(3, b"0\t0/0\n").contains("at least 1"));
        assert_eq!(
            err(5, b"2\t0/1\n2\t0/2\n"),
            "00000005.history line 2: timeline IDs must be in increasing sequence (2 after 2)"
        );
        assert_eq!(
            err(3, b"1\t0/1\n3\t0/2\n"),
            "00000003.history line 2: timeline 3 is not below the file's timeline 3"
        );
    }

    const BACKUP: &str = "START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\n\
                          STOP WAL LOCATION: 0/3000100 (file 000000010000000000000003)\n\
                          CHECKPOINT LOCATION: 0/3000060\n\
                          BACKUP METHOD: streamed\n\
                          BACKUP FROM: primary\n\
                          START TIME: 2026-11-23 18:07:15 UTC\n\
                          LABEL: nightly: full\n\
                          START TIMELINE: 1\n\
                          STOP TIME: 2026-11-23 18:07:16 UTC\n\
                          STOP TIMELINE: 1\n";

    fn seg(text: &str) -> SegmentName {
        text.parse().unwrap()
    }

    #[test]
    fn reads_backup_history_files() {
        let info =
            check_backup_file(&seg("000000010000000000000003"), 0x28, BACKUP.as_bytes()).unwrap();
        assert_eq!(
            info,
            BackupFileInfo {
                start: Lsn(0x3000028),
                stop: Lsn(0x3000100),
                stop_timeline: Some(1),
                label: Some("nightly: full".into()),
            }
        );
        // 16 MiB segments: segment 3 starts at 0/3000000 too, at offset 0x28; 1 MiB
        // segment 0x30 is the same LSN.
        let one_mib = BACKUP.replace("0000000000000003)", "0000000000000030)");
        assert!(
            check_backup_file(&seg("000000010000000000000030"), 0x28, one_mib.as_bytes()).is_ok()
        );
        // No STOP TIMELINE line (older writers): still fine.
        let short: String = BACKUP.lines().take(2).map(|l| format!("{l}\n")).collect();
        assert_eq!(
            check_backup_file(&seg("000000010000000000000003"), 0x28, short.as_bytes())
                .unwrap()
                .stop_timeline,
            None
        );
    }

    #[test]
    fn backup_history_must_match_its_name() {
        let err = |name: &str, offset, text: &str| {
            chain(&check_backup_file(&seg(name), offset, text.as_bytes()).unwrap_err())
        };
        assert_eq!(
            err("000000010000000000000004", 0x28, BACKUP),
            "000000010000000000000004.00000028.backup: START WAL LOCATION 0/3000028 \
             (file 000000010000000000000003) does not match the file name"
        );
        assert!(err("000000010000000000000003", 0x30, BACKUP).contains("does not match"));
        assert!(err("000000020000000000000003", 0x28, BACKUP).contains("STOP TIMELINE 1"));
        assert!(err("000000010000000000000003", 0x28, "").contains("no valid START WAL LOCATION"));
        let no_stop: String = BACKUP.lines().take(1).collect();
        assert!(err("000000010000000000000003", 0x28, &no_stop).contains("STOP WAL LOCATION"));
        let backwards = BACKUP.replace("0/3000100", "0/3000000");
        assert!(err("000000010000000000000003", 0x28, &backwards).contains("is before"));
        let tli_ahead = BACKUP.replace(
            "(file 000000010000000000000003)\nSTOP",
            "(file 000000020000000000000003)\nSTOP",
        );
        assert!(err("000000010000000000000003", 0x28, &tli_ahead).contains("does not match"));
        let garbage = BACKUP.replace("STOP TIMELINE: 1", "STOP TIMELINE: one");
        assert!(err("000000010000000000000003", 0x28, &garbage).contains("STOP TIMELINE"));
    }
}
