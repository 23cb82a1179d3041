//! LSNs and the names of the files the archiver hands to `archive_command`.
//!
//! One parser and one canonical `Display` per kind, so a name is validated once, at the
//! edge, and never travels as a bare `String` (STYLE.md §6). The text forms are exactly
//! the server's (`reference/postgresql.md §1`; `src/include/access/xlog_internal.h`
//! XLogFileName, TLHistoryFileName, BackupHistoryFileName):
//!
//! ```text
//! segment   TTTTTTTTLLLLLLLLSSSSSSSS                 %08X%08X%08X  (timeline, log, seg)
//! history   TTTTTTTT.history
//! backup    TTTTTTTTLLLLLLLLSSSSSSSS.OOOOOOOO.backup  offset of the backup's start LSN
//! partial   TTTTTTTTLLLLLLLLSSSSSSSS.partial
//! LSN       %X/%X                                    high/low 32 bits, unpadded
//! ```
//!
//! Invariants:
//! 1. Parsing accepts only what the server writes: upper-case hex, fixed widths, no
//!    timeline 0, and no `seg` part that no segment size allows (`>= 0x1000`).
//! 2. `Display` of a parsed name gives back the input byte for byte.
//! 3. Nothing here panics, whatever the input or segment size; functions that need a
//!    valid segment size say what they do with an invalid one.

use std::fmt;
use std::str::FromStr;

/// Smallest WAL segment size, `WalSegMinSize` (`xlog_internal.h`).
pub const MIN_SEG_SIZE: u32 = 1 << 20;
/// Largest WAL segment size, `WalSegMaxSize`.
pub const MAX_SEG_SIZE: u32 = 1 << 30;
/// The `seg` part of a segment name is below `2^32 / seg_size`, at most this (1 MiB
/// segments); a larger one names no segment at any size.
const MAX_SEG_PART: u32 = ((1u64 << 32) / MIN_SEG_SIZE as u64) as u32 - 1;

/// `IsValidWalSegSize`: a power of two from 1 MiB to 1 GiB.
pub fn is_valid_seg_size(seg_size: u32) -> bool {
    seg_size.is_power_of_two() && (MIN_SEG_SIZE..=MAX_SEG_SIZE).contains(&seg_size)
}

/// `XLogSegmentsPerXLogId`: how many segments one `log` value holds. Total for any
/// `seg_size` (0 counts as 1 byte), so callers never divide by zero.
fn segs_per_log(seg_size: u32) -> u64 {
    (1u64 << 32) / u64::from(seg_size.max(1))
}

/// A name, size or position that is not what the server writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{text:?} is not a WAL archive file name: {reason}")]
    Invalid { text: String, reason: &'static str },
    #[error("{text:?} is not an LSN (expected X/X with 1 to 8 hex digits on each side)")]
    Lsn { text: String },
    #[error("{seg_size} bytes is not a WAL segment size (a power of two from 1 MiB to 1 GiB)")]
    SegSize { seg_size: u32 },
    #[error(
        "segment {segment} cannot exist with {seg_size}-byte segments \
         (its last 8 digits must be below {per_log:X})"
    )]
    SegOutOfRange {
        segment: SegmentName,
        seg_size: u32,
        per_log: u64,
    },
    #[error("segment number {segno} lies beyond the end of the WAL address space")]
    SegnoOutOfRange { segno: u64, seg_size: u32 },
}

/// A WAL position (`XLogRecPtr`): a byte offset in the cluster's endless WAL stream.
///
/// Text form `%X/%X`, the low half unpadded as the server prints it (`0/1516890`);
/// `pg_waldump` pads it (`0/01516890`), and both parse. Serialized as that text.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `InvalidXLogRecPtr`.
    pub const INVALID: Lsn = Lsn(0);

    /// `XLogSegmentOffset`: the offset of this LSN inside its segment.
    /// `seg_size` must be valid ([`is_valid_seg_size`]); others give a meaningless value.
    pub fn segment_offset(self, seg_size: u32) -> u32 {
        (self.0 & u64::from(seg_size.max(1) - 1)) as u32
    }

    /// `self + bytes`, or `None` past the end of the address space.
    pub fn checked_add(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_add(bytes).map(Lsn)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 as u32)
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lsn({self})")
    }
}

/// Parses one side of an LSN: 1 to 8 hex digits, either case (`pg_lsn_in_internal`,
/// `src/backend/utils/adt/pg_lsn.c`, MAXPG_LSNCOMPONENT).
fn lsn_half(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

impl FromStr for Lsn {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parsed = text
            .split_once('/')
            .and_then(|(hi, lo)| Some((lsn_half(hi)?, lsn_half(lo)?)));
        match parsed {
            Some((hi, lo)) => Ok(Lsn(u64::from(hi) << 32 | u64::from(lo))),
            None => Err(NameError::Lsn { text: text.into() }),
        }
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A WAL segment's name: timeline, then the segment number split in two as
/// `log = segno / per_log`, `seg = segno % per_log` with `per_log = 2^32 / seg_size`
/// (`reference/postgresql.md §1`). Ordered as the names sort, which within one timeline
/// is WAL order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentName {
    pub tli: u32,
    pub log: u32,
    pub seg: u32,
}

impl SegmentName {
    /// The segment number, `log * (2^32 / seg_size) + seg` (XLogFromFileName).
    /// `seg_size` must be valid; others give a meaningless (but defined) number.
    pub fn segno(&self, seg_size: u32) -> u64 {
        u64::from(self.log)
            .saturating_mul(segs_per_log(seg_size))
            .saturating_add(u64::from(self.seg))
    }

    /// The name of segment `segno` on timeline `tli` (XLogFileName).
    ///
    /// # Errors
    /// [`NameError::SegSize`], or [`NameError::SegnoOutOfRange`] when the segment would
    /// start beyond the last LSN.
    pub fn from_segno(tli: u32, segno: u64, seg_size: u32) -> Result<Self, NameError> {
        if !is_valid_seg_size(seg_size) {
            return Err(NameError::SegSize { seg_size });
        }
        let per_log = segs_per_log(seg_size);
        let log = u32::try_from(segno / per_log)
            .map_err(|_| NameError::SegnoOutOfRange { segno, seg_size })?;
        Ok(SegmentName {
            tli,
            log,
            seg: (segno % per_log) as u32,
        })
    }

    /// The segment on timeline `tli` that holds `lsn` (XLByteToSeg; note that SQL's
    /// `pg_walfile_name` uses XLByteToPrevSeg instead).
    ///
    /// # Errors
    /// [`NameError::SegSize`].
    pub fn from_lsn(tli: u32, lsn: Lsn, seg_size: u32) -> Result<Self, NameError> {
        if !is_valid_seg_size(seg_size) {
            return Err(NameError::SegSize { seg_size });
        }
        Self::from_segno(tli, lsn.0 / u64::from(seg_size), seg_size)
    }

    /// The LSN of the segment's first byte. Assumes [`Self::check_seg_size`] holds;
    /// otherwise the result saturates instead of overflowing.
    pub fn start_lsn(&self, seg_size: u32) -> Lsn {
        Lsn(self.segno(seg_size).saturating_mul(u64::from(seg_size)))
    }

    /// The next segment on the same timeline, or `None` after the last one (or when
    /// `seg_size` is invalid).
    pub fn next(&self, seg_size: u32) -> Option<SegmentName> {
        let segno = self.segno(seg_size).checked_add(1)?;
        Self::from_segno(self.tli, segno, seg_size).ok()
    }

    /// Whether this name can exist with `seg_size`-byte segments: the size is valid and
    /// `seg < 2^32 / seg_size` (the server writes no other names).
    ///
    /// # Errors
    /// [`NameError::SegSize`] or [`NameError::SegOutOfRange`].
    pub fn check_seg_size(&self, seg_size: u32) -> Result<(), NameError> {
        if !is_valid_seg_size(seg_size) {
            return Err(NameError::SegSize { seg_size });
        }
        let per_log = segs_per_log(seg_size);
        if u64::from(self.seg) >= per_log {
            return Err(NameError::SegOutOfRange {
                segment: *self,
                seg_size,
                per_log,
            });
        }
        Ok(())
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}{:08X}{:08X}", self.tli, self.log, self.seg)
    }
}

impl fmt::Debug for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentName({self})")
    }
}

impl FromStr for SegmentName {
    type Err = NameError;

    /// Exactly a segment name; `.partial`, `.backup` and `.history` names are refused
    /// (use [`WalFileName::parse`] for those).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match WalFileName::parse(text)? {
            WalFileName::Segment(segment) => Ok(segment),
            _ => Err(invalid(text, "not a plain segment name")),
        }
    }
}

impl serde::Serialize for SegmentName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SegmentName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Any file the archiver may hand to `archive_command` (`reference/postgresql.md §1`;
/// `src/include/postmaster/pgarch.h` VALID_XFN_CHARS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WalFileName {
    /// `TTTTTTTTLLLLLLLLSSSSSSSS`: a complete segment.
    Segment(SegmentName),
    /// `TTTTTTTT.history`: the timeline history written when timeline `tli` began.
    History { tli: u32 },
    /// `<segment>.OOOOOOOO.backup`: a backup history file; `segment` holds the backup's
    /// start LSN at `offset`, and its timeline is the backup's stop timeline.
    Backup { segment: SegmentName, offset: u32 },
    /// `<segment>.partial`: the last, unfinished segment of a timeline that ended
    /// mid-segment. Never served back to recovery.
    Partial(SegmentName),
}

fn invalid(text: &str, reason: &'static str) -> NameError {
    NameError::Invalid {
        text: text.into(),
        reason,
    }
}

/// Exactly 8 upper-case hex digits, as `%08X` writes them.
fn hex8(text: &str) -> Option<u32> {
    let upper = |b: u8| b.is_ascii_digit() || (b'A'..=b'F').contains(&b);
    if text.len() != 8 || !text.bytes().all(upper) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

fn parse_segment(text: &str, whole: &str) -> Result<SegmentName, NameError> {
    let field = |range: std::ops::Range<usize>| {
        text.get(range)
            .and_then(hex8)
            .ok_or_else(|| invalid(whole, "expected 24 upper-case hex digits"))
    };
    if text.len() != 24 {
        return Err(invalid(whole, "expected 24 upper-case hex digits"));
    }
    let segment = SegmentName {
        tli: field(0..8)?,
        log: field(8..16)?,
        seg: field(16..24)?,
    };
    if segment.tli == 0 {
        return Err(invalid(whole, "timeline 0 does not exist"));
    }
    if segment.seg > MAX_SEG_PART {
        return Err(invalid(
            whole,
            "its last 8 digits exceed 00000FFF, which no segment size allows",
        ));
    }
    Ok(segment)
}

impl WalFileName {
    /// Parses a file name exactly as the server writes it.
    ///
    /// # Errors
    /// [`NameError::Invalid`] naming the string and what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if let Some(tli) = text.strip_suffix(".history") {
            let tli = hex8(tli)
                .ok_or_else(|| invalid(text, "expected 8 upper-case hex digits before .history"))?;
            if tli == 0 {
                return Err(invalid(text, "timeline 0 does not exist"));
            }
            return Ok(WalFileName::History { tli });
        }
        if let Some(stem) = text.strip_suffix(".partial") {
            return parse_segment(stem, text).map(WalFileName::Partial);
        }
        if let Some(stem) = text.strip_suffix(".backup") {
            let (segment, offset) = stem
                .split_once('.')
                .ok_or_else(|| invalid(text, "expected <segment>.<offset>.backup"))?;
            let segment = parse_segment(segment, text)?;
            let offset = hex8(offset)
                .ok_or_else(|| invalid(text, "expected an offset of 8 upper-case hex digits"))?;
            if offset >= MAX_SEG_SIZE {
                return Err(invalid(text, "offset lies beyond the largest segment size"));
            }
            return Ok(WalFileName::Backup { segment, offset });
        }
        parse_segment(text, text).map(WalFileName::Segment)
    }

    /// The timeline in the name (for a backup file, the backup's stop timeline).
    pub fn timeline(&self) -> u32 {
        match self {
            WalFileName::Segment(s) | WalFileName::Partial(s) => s.tli,
            WalFileName::Backup { segment, .. } => segment.tli,
            WalFileName::History { tli } => *tli,
        }
    }
}

impl fmt::Display for WalFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalFileName::Segment(s) => write!(f, "{s}"),
            WalFileName::History { tli } => write!(f, "{tli:08X}.history"),
            WalFileName::Backup { segment, offset } => write!(f, "{segment}.{offset:08X}.backup"),
            WalFileName::Partial(s) => write!(f, "{s}.partial"),
        }
    }
}

impl FromStr for WalFileName {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        WalFileName::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u32 = 1 << 20;
    const SIXTEEN_MIB: u32 = 16 << 20;

    #[test]
    fn lsn_text_forms() {
        let lsn: Lsn = "0/1516890".parse().unwrap();
        assert_eq!(lsn, Lsn(0x1516890));
        assert_eq!(lsn.to_string(), "0/1516890");
        assert_eq!("0/015168d0".parse::<Lsn>().unwrap(), Lsn(0x15168D0));
        assert_eq!(
            "FFFFFFFF/FFFFFFFF".parse::<Lsn>().unwrap(),
            Lsn(u64::MAX),
            "the largest LSN"
        );
        assert_eq!(Lsn(0x1_0000_0000).to_string(), "1/0");
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "0",
            "0/1/2",
            "123456789/0",
            "0/123456789",
            "+1/0",
            " 0/1",
            "0/1 ",
            "g/0",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
        let json = serde_json::to_string(&Lsn(0x3000028)).unwrap();
        assert_eq!(json, r#""0/3000028""#);
        assert_eq!(serde_json::from_str::<Lsn>(&json).unwrap(), Lsn(0x3000028));
        assert_eq!(Lsn(0x3000028).segment_offset(MIB), 0x28);
        assert_eq!(Lsn(0x3000028).segment_offset(0), 0, "no panic on size 0");
    }

    #[test]
    fn segment_arithmetic_matches_the_server() {
        // reference §1: with 1 MiB segments, pg_walfile_name('1/00000000') names the
        // previous file 000000010000000000000FFF, so segment 0x1000 is 1/0.
        let last = SegmentName {
            tli: 1,
            log: 0,
            seg: 0xFFF,
        };
        assert_eq!(last.segno(MIB), 0xFFF);
        assert_eq!(last.start_lsn(MIB), Lsn(0xFFF0_0000));
        let next = last.next(MIB).unwrap();
        assert_eq!(next.to_string(), "000000010000000100000000");
        assert_eq!(next.start_lsn(MIB), "1/0".parse().unwrap());
        assert_eq!(
            SegmentName::from_lsn(1, "1/0".parse().unwrap(), MIB).unwrap(),
            next
        );
        // 16 MiB: log = lsn >> 32, seg 0x00..=0xFF.
        let s = SegmentName::from_segno(3, 0x1FF, SIXTEEN_MIB).unwrap();
        assert_eq!(s.to_string(), "0000000300000001000000FF");
        assert_eq!(s.start_lsn(SIXTEEN_MIB), "1/FF000000".parse().unwrap());
        assert!(s.check_seg_size(SIXTEEN_MIB).is_ok());
        assert!(last.check_seg_size(SIXTEEN_MIB).is_err(), "0xFFF > 0xFF");
        assert!(last.check_seg_size(3 << 20).is_err(), "not a power of two");
        // 1 GiB: seg 0..=3.
        let s = SegmentName::from_segno(1, 5, 1 << 30).unwrap();
        assert_eq!((s.log, s.seg), (1, 1));
        // The end of the address space.
        let end = SegmentName::from_segno(1, u64::MAX >> 20, MIB).unwrap();
        assert_eq!(end.to_string(), "00000001FFFFFFFF00000FFF");
        assert_eq!(end.next(MIB), None);
        assert!(SegmentName::from_segno(1, (u64::MAX >> 20) + 1, MIB).is_err());
        assert!(SegmentName::from_segno(1, 0, 0).is_err());
        // Invalid sizes never panic.
        let _ = (
            last.segno(0),
            last.start_lsn(0),
            last.next(0),
            end.start_lsn(0),
        );
    }

    #[test]
    fn file_names_round_trip() {
        for text in [
            "000000010000000000000003",
            "00000002.history",
            "000000010000000000000003.00000028.backup",
            "000000010000000000000004.partial",
            "FFFFFFFFFFFFFFFF00000FFF",
        ] {
            let name = WalFileName::parse(text).unwrap();
            assert_eq!(name.to_string(), text);
        }
        assert_eq!(
            WalFileName::parse("000000020000000A000000FE").unwrap(),
            WalFileName::Segment(SegmentName {
                tli: 2,
                log: 0xA,
                seg: 0xFE
            })
        );
        assert_eq!(
            WalFileName::parse("000000030000000000000003.00000028.backup")
                .unwrap()
                .timeline(),
            3
        );
        assert!("000000010000000000000004.partial"
            .parse::<SegmentName>()
            .is_err());
    }

    #[test]
    fn file_names_are_strict() {
        for bad in [
            "",
            "00000001000000000000000",
            "0000000100000000000000030",
            "00000001000000000000000a",
            "00000000000000000000000A",
            "000000010000000000001000",
            "0000000G0000000000000001",
            "+0000001000000000000000A",
            "00000000.history",
            "1.history",
            "0000000a.history",
            "00000002.HISTORY",
            "000000010000000000000003.28.backup",
            "000000010000000000000003.00000028",
            "000000010000000000000003.40000000.backup",
            "000000010000000000000003.partial.partial",
            "000000010000000000000003.ready",
            "RECOVERYXLOG",
        ] {
            let err = WalFileName::parse(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
