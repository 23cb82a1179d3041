//! The records of one WAL segment, read from the whole file in memory.
//!
//! [`RecordReader`] walks a segment as the server's reader does (XLogDecodeNextRecord,
//! XLogFindNextRecord and DecodeXLogRecord in `src/backend/access/transam/xlogreader.c`;
//! `reference/postgresql.md §2–§4`) and yields each complete record with the fields the
//! archive's index needs. Layout of the stream:
//!
//! ```text
//! page 0: long header (40) │ tail of a record from the previous segment (CONTRECORD,
//!         xlp_rem_len bytes, MAXALIGNed) │ record │ record │ … │ first part of a record
//! page 1: header (24) │ rest of that record (CONTRECORD, xlp_rem_len = what is left) │ …
//! record: XLogRecord (24) │ fragment headers (block 0..=32, 252, 253, 254/255) │
//!         block images and data │ main data (the last main_data_len bytes)
//! ```
//!
//! Invariants:
//! 1. Every page the walk touches is checked ([`check_page`]) once, in file order, and
//!    nothing after the end of valid WAL or an XLOG_SWITCH is looked at.
//! 2. A record is yielded only if its header, its CRC-32C and its fragment headers are
//!    valid; the first failure ends the walk, recorded in [`RecordReader::end`].
//! 3. A record whose tail lies in the next segment is not an error:
//!    [`WalEnd::EndOfFile`] names it.
//! 4. No panic, no out-of-bounds index, and no allocation larger than the input on any
//!    bytes: a record is copied only when it crosses a page, and only as far as the file
//!    goes.

use std::borrow::Cow;

use super::name::Lsn;
use super::page::{
    check_page, maxalign, u16_at, u32_at, u64_at, PageError, PageHeader, SegmentGeometry,
};

/// `SizeOfXLogRecord`.
pub const RECORD_HEADER_LEN: usize = 24;

/// Resource manager ids (`src/include/access/rmgrlist.h`, same in 12–17).
pub const RM_XLOG_ID: u8 = 0;
pub const RM_XACT_ID: u8 = 1;
/// The last built-in resource manager (LogicalMessage) in every version 12–17.
pub const RM_MAX_BUILTIN_ID: u8 = 21;
/// 15+ also accept custom resource managers 128..=255 (`src/include/access/rmgr.h`).
pub const RM_MIN_CUSTOM_ID: u8 = 128;

/// `xl_info & XLR_RMGR_INFO_MASK` opcodes of RM_XLOG_ID (`src/include/catalog/pg_control.h`).
pub const XLOG_SWITCH: u8 = 0x40;
pub const XLOG_BACKUP_END: u8 = 0x50;
pub const XLOG_RESTORE_POINT: u8 = 0x70;
pub const XLOG_END_OF_RECOVERY: u8 = 0x90;
/// `xl_info & XLOG_XACT_OPMASK` opcodes of RM_XACT_ID (`src/include/access/xact.h`).
pub const XLOG_XACT_COMMIT: u8 = 0x00;
pub const XLOG_XACT_ABORT: u8 = 0x20;
pub const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;
pub const XLOG_XACT_ABORT_PREPARED: u8 = 0x40;
const XLOG_XACT_OPMASK: u8 = 0x70;
const XLOG_XACT_HAS_INFO: u8 = 0x80;
const XLR_RMGR_INFO_MASK: u8 = 0xF0;

/// One complete, valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where the record starts (ReadRecPtr).
    pub lsn: Lsn,
    /// MAXALIGN of the position after its last byte: the server's EndRecPtr, what
    /// XLogInsert and `pg_create_restore_point` return. Page headers crossed count.
    pub end: Lsn,
    /// `xl_prev`.
    pub prev: Lsn,
    /// `xl_tot_len`: header, fragment headers and payload, without page headers.
    pub tot_len: u32,
    /// `xl_xid`: the (sub)transaction that wrote it, 0 if none.
    pub xid: u32,
    pub rmid: u8,
    /// `xl_info`; the high nibble is the resource manager's opcode.
    pub info: u8,
    pub kind: RecordKind,
}

/// What the archive's index needs from a record; everything else is [`RecordKind::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKind {
    /// A transaction ended: the only records a `recovery_target_time` is tested on.
    XactEnd(XactEnd),
    /// `pg_create_restore_point(name)`: a `recovery_target_name` stops after it.
    RestorePoint {
        time: i64,
        name: String,
    },
    /// XLOG_SWITCH: the rest of the segment is void.
    Switch,
    /// Written by `pg_backup_stop` on a primary; `start` is the backup's start LSN.
    BackupEnd {
        start: Lsn,
    },
    /// Written when recovery ends and timeline `tli` begins after `prev_tli`.
    EndOfRecovery {
        time: i64,
        tli: u32,
        prev_tli: u32,
    },
    Other,
}

/// Which transaction-ending record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum XactOp {
    Commit,
    Abort,
    CommitPrepared,
    AbortPrepared,
}

/// A COMMIT, ABORT, COMMIT PREPARED or ABORT PREPARED record (`reference/postgresql.md §4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XactEnd {
    pub op: XactOp,
    /// `xact_time`: microseconds since 2000-01-01 00:00 UTC (TimestampTz).
    pub time: i64,
    /// The transaction that ended: `xl_xid`, or for the *_PREPARED records the
    /// prepared transaction's xid from the record's twophase sub-record (what
    /// `recovery_target_xid` compares).
    pub xid: u32,
}

/// Why the walk of a segment stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalEnd {
    /// After the XLOG_SWITCH record at `lsn`; the rest of the file is zeros by design
    /// (CopyXLogRecordToWAL in `xlog.c`) and was not read.
    Switch { lsn: Lsn },
    /// The file ended. `incomplete` is a record that starts in this segment and
    /// continues in the next one.
    EndOfFile { incomplete: Option<Lsn> },
    /// Valid WAL ends before the end of the file, for this reason.
    Invalid(RecordError),
}

/// Where and why valid WAL ends, in the server's words where it has them
/// (`xlogreader.c` report_invalid_record).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Page(#[from] PageError),
    #[error("invalid record length at {lsn}: expected at least 24, got {len}")]
    Length { lsn: Lsn, len: u32 },
    #[error("invalid resource manager ID {rmid} at {lsn}")]
    Rmgr { lsn: Lsn, rmid: u8 },
    #[error(
        "record with incorrect prev-link {prev} at {lsn} (the previous record is at {expected})"
    )]
    Prev { lsn: Lsn, prev: Lsn, expected: Lsn },
    #[error("record with incorrect prev-link {prev} at {lsn} (not before the record)")]
    PrevNotBefore { lsn: Lsn, prev: Lsn },
    #[error(
        "incorrect resource manager data checksum in record at {lsn} \
         (stored {stored:08X}, computed {computed:08X})"
    )]
    Crc {
        lsn: Lsn,
        stored: u32,
        computed: u32,
    },
    #[error("there is no contrecord flag at {page} (the record read from {lsn} continues there)")]
    NoContrecord { lsn: Lsn, page: Lsn },
    #[error("invalid contrecord length {found} at {page}{}", expected_note(.expected))]
    ContrecordLength {
        page: Lsn,
        found: u32,
        expected: Option<u32>,
    },
    #[error("contrecord is requested by {lsn} (a record should start there, but its page continues one)")]
    ContrecordAtStart { lsn: Lsn },
    #[error("record at {lsn}: {reason}")]
    Malformed { lsn: Lsn, reason: &'static str },
}

fn expected_note(expected: &Option<u32>) -> String {
    expected.map_or_else(String::new, |e| format!(" (expected {e})"))
}

/// Reads the records of one segment, in LSN order, as an iterator. When it returns
/// `None`, [`RecordReader::end`] says why.
///
/// ```
/// use stowage::pg::wal::page::SegmentGeometry;
/// use stowage::pg::wal::record::{RecordReader, WalEnd};
/// # fn check(name: stowage::pg::wal::name::SegmentName, file: &[u8]) -> Result<(), stowage::pg::wal::WalError> {
/// let geometry = SegmentGeometry::read(&name, file)?;
/// let mut reader = RecordReader::new(file, geometry);
/// let commits = reader.by_ref().filter(|r| r.rmid == 1).count();
/// assert!(!matches!(reader.end(), Some(WalEnd::Invalid(_))), "{commits} then garbage");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RecordReader<'a> {
    /// The file, cut to a whole number of pages.
    bytes: &'a [u8],
    geometry: SegmentGeometry,
    page_size: usize,
    /// Pages `0..checked_pages` have passed [`check_page`].
    checked_pages: usize,
    last_tli: u32,
    state: State,
    /// The last record read, for the next one's `xl_prev`.
    prev: Option<Lsn>,
    first_record: Option<Lsn>,
    valid_end: Lsn,
    end: Option<WalEnd>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Before the first record: skip what continues the previous segment.
    Start,
    /// The next record starts at this file offset (or, at a page boundary, right after
    /// that page's header).
    At(usize),
    Done,
}

/// What reading at one position gave.
enum Step {
    Record(Record, usize),
    /// The record being read was abandoned (XLP_FIRST_IS_OVERWRITE_CONTRECORD): read
    /// again from this page.
    Restart(usize),
    End(WalEnd),
}

impl<'a> RecordReader<'a> {
    /// A reader over `bytes`, the whole segment file whose first page gave `geometry`.
    /// A trailing part-page is ignored.
    pub fn new(bytes: &'a [u8], geometry: SegmentGeometry) -> Self {
        let page_size = (geometry.page_size as usize).max(1);
        let whole = bytes.len() - bytes.len() % page_size;
        RecordReader {
            bytes: &bytes[..whole],
            page_size,
            checked_pages: 0,
            last_tli: 0,
            state: State::Start,
            prev: None,
            first_record: None,
            valid_end: geometry.start,
            end: None,
            geometry,
        }
    }

    /// Why the walk stopped; `None` while records remain.
    pub fn end(&self) -> Option<&WalEnd> {
        self.end.as_ref()
    }

    /// The first record that starts in this segment (complete or continuing into the
    /// next segment), once the walk has reached it.
    pub fn first_record(&self) -> Option<Lsn> {
        self.first_record
    }

    /// The end of the last record read, MAXALIGNed; before any, the end of the record
    /// continued from the previous segment if it ends here, else the segment's start.
    pub fn valid_end(&self) -> Lsn {
        self.valid_end
    }

    pub fn geometry(&self) -> &SegmentGeometry {
        &self.geometry
    }

    /// The header of the page at `offset`, after checking every page up to it.
    fn page(&mut self, offset: usize) -> Result<PageHeader, RecordError> {
        let index = offset / self.page_size;
        while self.checked_pages <= index {
            let start = self.checked_pages * self.page_size;
            let page = self.bytes.get(start..).unwrap_or_default();
            check_page(&self.geometry, start, page, &mut self.last_tli)?;
            self.checked_pages += 1;
        }
        let page = self.bytes.get(offset..).unwrap_or_default();
        PageHeader::parse(page).ok_or(RecordError::Page(PageError::Truncated {
            page: self.geometry.lsn_at(offset),
        }))
    }

    /// Finds the first record that starts in the segment, skipping the tail of one
    /// begun in the previous segment (XLogFindNextRecord): on a CONTRECORD page, if
    /// `MAXALIGN(xlp_rem_len)` covers the page's payload the whole page is continuation;
    /// else the first record starts at `header + MAXALIGN(xlp_rem_len)`. Unlike
    /// XLogFindNextRecord, each further page must carry the rest of the same record
    /// (CONTRECORD and the remaining length), as in a continuous read. `None`: the
    /// whole file is continuation.
    fn skip_continuation(&mut self) -> Result<Option<usize>, RecordError> {
        let mut page_off = 0;
        let mut expected: Option<u32> = None;
        while page_off < self.bytes.len() {
            let hdr = self.page(page_off)?;
            let page_lsn = self.geometry.lsn_at(page_off);
            let header_len = hdr.header_len();
            if expected.is_some() && hdr.is_overwrite_contrecord() {
                // The record being continued was abandoned; this page starts afresh.
                return Ok(Some(page_off));
            }
            if !hdr.is_contrecord() {
                if expected.is_some() {
                    return Err(RecordError::NoContrecord {
                        lsn: self.geometry.start,
                        page: page_lsn,
                    });
                }
                return Ok(Some(page_off));
            }
            if hdr.rem_len == 0 || expected.is_some_and(|e| e != hdr.rem_len) {
                return Err(RecordError::ContrecordLength {
                    page: page_lsn,
                    found: hdr.rem_len,
                    expected,
                });
            }
            let payload = self.page_size - header_len;
            let rem = hdr.rem_len as usize;
            if maxalign(rem) < payload {
                let first = page_off + header_len + maxalign(rem);
                self.valid_end = self.geometry.lsn_at(first);
                return Ok(Some(first));
            }
            match rem.checked_sub(payload).filter(|left| *left > 0) {
                Some(left) => expected = Some(left as u32),
                None => {
                    // The tail ends on this page, its padding reaches the page end.
                    let next = page_off + self.page_size;
                    self.valid_end = self.geometry.lsn_at(next);
                    return Ok(Some(next));
                }
            }
            page_off += self.page_size;
        }
        Ok(None)
    }

    /// ValidXLogRecordHeader on the 24 header bytes of the record at `lsn`: a known
    /// resource manager, and `xl_prev` equal to the previous record's LSN, or for the
    /// first record of the segment (whose predecessor we cannot see) before it.
    fn check_header(&self, header: &[u8], lsn: Lsn) -> Result<(), RecordError> {
        let rmid = header.get(17).copied().unwrap_or_default();
        let prev = Lsn(u64_at(header, 8).unwrap_or_default());
        if !rmid_is_valid(rmid, self.geometry.pg_major) {
            return Err(RecordError::Rmgr { lsn, rmid });
        }
        match self.prev {
            Some(expected) if prev != expected => Err(RecordError::Prev {
                lsn,
                prev,
                expected,
            }),
            None if prev >= lsn => Err(RecordError::PrevNotBefore { lsn, prev }),
            _ => Ok(()),
        }
    }

    /// Reads the record that starts at file offset `start`.
    fn read_at(&mut self, start: usize) -> Step {
        match self.try_read_at(start) {
            Ok(step) => step,
            Err(e) => Step::End(WalEnd::Invalid(e)),
        }
    }

    fn try_read_at(&mut self, start: usize) -> Result<Step, RecordError> {
        let bytes = self.bytes;
        let page_size = self.page_size;
        let file_len = bytes.len();
        let mut pos = start;
        if pos >= file_len {
            return Ok(Step::End(WalEnd::EndOfFile { incomplete: None }));
        }
        if pos % page_size == 0 {
            let hdr = self.page(pos)?;
            pos += hdr.header_len();
            if hdr.is_contrecord() {
                return Err(RecordError::ContrecordAtStart {
                    lsn: self.geometry.lsn_at(pos),
                });
            }
        }
        let lsn = self.geometry.lsn_at(pos);
        let page_end = (pos / page_size + 1) * page_size;
        let tot_len = u32_at(bytes, pos).ok_or(RecordError::Malformed {
            lsn,
            reason: "record starts past the end of the file",
        })?;
        if (tot_len as usize) < RECORD_HEADER_LEN {
            return Err(RecordError::Length { lsn, len: tot_len });
        }
        let tot = tot_len as usize;
        let first = &bytes[pos..page_end.min(pos.saturating_add(tot))];
        // The whole header on this page: check it before reading further, as the
        // server does; else once the next page has completed it.
        let mut header_checked = first.len() >= RECORD_HEADER_LEN;
        if header_checked {
            self.check_header(first, lsn)?;
        }
        let (data, end_pos) = if first.len() == tot {
            (Cow::Borrowed(first), pos + tot)
        } else {
            let mut data = Vec::with_capacity(tot.min(file_len - pos));
            data.extend_from_slice(first);
            let mut page_off = page_end;
            loop {
                if page_off >= file_len {
                    self.first_record.get_or_insert(lsn);
                    return Ok(Step::End(WalEnd::EndOfFile {
                        incomplete: Some(lsn),
                    }));
                }
                let hdr = self.page(page_off)?;
                let page_lsn = self.geometry.lsn_at(page_off);
                if hdr.is_overwrite_contrecord() {
                    return Ok(Step::Restart(page_off));
                }
                if !hdr.is_contrecord() {
                    return Err(RecordError::NoContrecord {
                        lsn,
                        page: page_lsn,
                    });
                }
                let want = tot - data.len();
                if hdr.rem_len == 0 || hdr.rem_len as usize != want {
                    return Err(RecordError::ContrecordLength {
                        page: page_lsn,
                        found: hdr.rem_len,
                        expected: Some(want as u32),
                    });
                }
                let from = page_off + hdr.header_len();
                let chunk = want.min(page_size - hdr.header_len());
                data.extend_from_slice(&bytes[from..from + chunk]);
                if !header_checked && data.len() >= RECORD_HEADER_LEN {
                    self.check_header(&data, lsn)?;
                    header_checked = true;
                }
                if data.len() == tot {
                    break (Cow::Owned(data), from + chunk);
                }
                page_off += page_size;
            }
        };
        let record = self.finish_record(&data, lsn, maxalign(end_pos))?;
        self.prev = Some(lsn);
        self.first_record.get_or_insert(lsn);
        self.valid_end = record.end;
        Ok(Step::Record(record, maxalign(end_pos)))
    }

    /// CRC check and decoding of a whole record (`data`, `xl_tot_len` bytes).
    fn finish_record(&self, data: &[u8], lsn: Lsn, end_pos: usize) -> Result<Record, RecordError> {
        let field = |at| u32_at(data, at).unwrap_or_default();
        let stored = field(20);
        let body = data.get(RECORD_HEADER_LEN..).unwrap_or_default();
        let head = data.get(..20).unwrap_or_default();
        let computed = crc32c::crc32c_append(crc32c::crc32c(body), head);
        if computed != stored {
            return Err(RecordError::Crc {
                lsn,
                stored,
                computed,
            });
        }
        let xid = field(4);
        let rmid = data.get(17).copied().unwrap_or_default();
        let info = data.get(16).copied().unwrap_or_default();
        let pg_major = self.geometry.pg_major;
        let malformed = |reason| RecordError::Malformed { lsn, reason };
        let main = main_data(data, pg_major).map_err(malformed)?;
        let kind = decode_kind(rmid, info, xid, main, pg_major).map_err(malformed)?;
        Ok(Record {
            lsn,
            end: self.geometry.lsn_at(end_pos),
            prev: Lsn(u64_at(data, 8).unwrap_or_default()),
            tot_len: field(0),
            xid,
            rmid,
            info,
            kind,
        })
    }

    fn finish(&mut self, end: WalEnd) {
        self.state = State::Done;
        self.end = Some(end);
    }
}

impl Iterator for RecordReader<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        loop {
            match self.state {
                State::Done => return None,
                State::Start => match self.skip_continuation() {
                    Ok(Some(at)) => self.state = State::At(at),
                    Ok(None) => self.finish(WalEnd::EndOfFile { incomplete: None }),
                    Err(e) => self.finish(WalEnd::Invalid(e)),
                },
                State::At(at) => match self.read_at(at) {
                    Step::Record(record, next) => {
                        if record.kind == RecordKind::Switch {
                            self.finish(WalEnd::Switch { lsn: record.lsn });
                        } else {
                            self.state = State::At(next);
                        }
                        return Some(record);
                    }
                    Step::Restart(at) => self.state = State::At(at),
                    Step::End(end) => self.finish(end),
                },
            }
        }
    }
}

/// RmgrIdIsValid: built-in ids, and from 15 on the custom range (whose rmgr need not be
/// loaded for the reader to accept the record).
fn rmid_is_valid(rmid: u8, pg_major: u32) -> bool {
    rmid <= RM_MAX_BUILTIN_ID || (pg_major >= 15 && rmid >= RM_MIN_CUSTOM_ID)
}

/// Fragment ids after the record header (`src/include/access/xlogrecord.h`).
const XLR_MAX_BLOCK_ID: u8 = 32;
const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
const XLR_BLOCK_ID_ORIGIN: u8 = 253;
const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;
const BKPBLOCK_HAS_IMAGE: u8 = 0x10;
const BKPBLOCK_HAS_DATA: u8 = 0x20;
const BKPBLOCK_SAME_REL: u8 = 0x80;
const BKPIMAGE_HAS_HOLE: u8 = 0x01;

/// Whether `bimg_info` says the image is compressed; the bits moved in 15.
fn image_is_compressed(bimg_info: u8, pg_major: u32) -> bool {
    if pg_major >= 15 {
        bimg_info & (0x04 | 0x08 | 0x10) != 0
    } else {
        bimg_info & 0x02 != 0
    }
}

/// A cursor over a record's fragment headers, counting what is left as the server's
/// COPY_HEADER_FIELD does.
struct Headers<'a> {
    data: &'a [u8],
    at: usize,
}

impl Headers<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], &'static str> {
        let field = self
            .data
            .get(self.at..self.at.saturating_add(n))
            .ok_or("record with invalid length (fragment headers run past its end)")?;
        self.at += n;
        Ok(field)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16_at(self.take(2)?, 0).unwrap_or_default())
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32_at(self.take(4)?, 0).unwrap_or_default())
    }
}

/// Walks the fragment headers as DecodeXLogRecord does and returns the main data (the
/// last `main_data_len` bytes, `reference/postgresql.md §3`). Checks what can be
/// checked without the data page size BLCKSZ, which WAL does not record: block ids
/// increase, HAS_DATA agrees with the data length, SAME_REL follows a relation, ids are
/// known for the version, and the payload lengths add up to the record exactly.
fn main_data(record: &[u8], pg_major: u32) -> Result<&[u8], &'static str> {
    let mut headers = Headers {
        data: record,
        at: RECORD_HEADER_LEN,
    };
    let remaining = |h: &Headers| (record.len().saturating_sub(h.at)) as u64;
    let mut payload: u64 = 0;
    let mut main_len: u64 = 0;
    let mut last_block: Option<u8> = None;
    let mut have_rel = false;
    while remaining(&headers) > payload {
        match headers.u8()? {
            XLR_BLOCK_ID_DATA_SHORT => {
                main_len = u64::from(headers.u8()?);
                payload += main_len;
                break;
            }
            XLR_BLOCK_ID_DATA_LONG => {
                main_len = u64::from(headers.u32()?);
                payload += main_len;
                break;
            }
            XLR_BLOCK_ID_ORIGIN => {
                headers.take(2)?;
            }
            XLR_BLOCK_ID_TOPLEVEL_XID if pg_major >= 14 => {
                headers.take(4)?;
            }
            id @ 0..=XLR_MAX_BLOCK_ID => {
                if last_block.is_some_and(|last| id <= last) {
                    return Err("out-of-order block_id");
                }
                last_block = Some(id);
                let fork_flags = headers.u8()?;
                let data_len = headers.u16()?;
                let has_data = fork_flags & BKPBLOCK_HAS_DATA != 0;
                if has_data && data_len == 0 {
                    return Err("BKPBLOCK_HAS_DATA set, but no data included");
                }
                if !has_data && data_len != 0 {
                    return Err("BKPBLOCK_HAS_DATA not set, but data length is not zero");
                }
                payload += u64::from(data_len);
                if fork_flags & BKPBLOCK_HAS_IMAGE != 0 {
                    let image_len = headers.u16()?;
                    let hole_offset = headers.u16()?;
                    let bimg_info = headers.u8()?;
                    let has_hole = bimg_info & BKPIMAGE_HAS_HOLE != 0;
                    if image_is_compressed(bimg_info, pg_major) && has_hole {
                        headers.take(2)?;
                    }
                    if !has_hole && hole_offset != 0 {
                        return Err("BKPIMAGE_HAS_HOLE not set, but hole offset is not zero");
                    }
                    payload += u64::from(image_len);
                }
                if fork_flags & BKPBLOCK_SAME_REL == 0 {
                    headers.take(12)?;
                    have_rel = true;
                } else if !have_rel {
                    return Err("BKPBLOCK_SAME_REL set but no previous rel");
                }
                headers.take(4)?;
            }
            _ => return Err("invalid block_id"),
        }
    }
    if remaining(&headers) != payload {
        return Err("record with invalid length (payload does not match its fragment headers)");
    }
    let main_from = usize::try_from(main_len)
        .ok()
        .and_then(|len| record.len().checked_sub(len))
        .ok_or("main data longer than the record")?;
    Ok(&record[main_from..])
}

fn i64_at(bytes: &[u8], at: usize) -> Option<i64> {
    u64_at(bytes, at).map(|v| v as i64)
}

/// Decodes the few records the index needs from their main data.
fn decode_kind(
    rmid: u8,
    info: u8,
    xid: u32,
    main: &[u8],
    pg_major: u32,
) -> Result<RecordKind, &'static str> {
    match rmid {
        RM_XLOG_ID => decode_xlog(info & XLR_RMGR_INFO_MASK, main),
        RM_XACT_ID => {
            let op = match info & XLOG_XACT_OPMASK {
                XLOG_XACT_COMMIT => XactOp::Commit,
                XLOG_XACT_ABORT => XactOp::Abort,
                XLOG_XACT_COMMIT_PREPARED => XactOp::CommitPrepared,
                XLOG_XACT_ABORT_PREPARED => XactOp::AbortPrepared,
                _ => return Ok(RecordKind::Other),
            };
            decode_xact_end(op, info, xid, main, pg_major).map(RecordKind::XactEnd)
        }
        _ => Ok(RecordKind::Other),
    }
}

/// RM_XLOG_ID records (`src/include/access/xlog_internal.h` xl_restore_point,
/// xl_end_of_recovery; `xlog.c` XLogRestorePoint, do_pg_backup_stop).
fn decode_xlog(opcode: u8, main: &[u8]) -> Result<RecordKind, &'static str> {
    Ok(match opcode {
        XLOG_SWITCH => RecordKind::Switch,
        XLOG_RESTORE_POINT => {
            let time = i64_at(main, 0).ok_or("restore point record too short")?;
            let name = main.get(8..72).ok_or("restore point record too short")?;
            let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            RecordKind::RestorePoint {
                time,
                name: String::from_utf8_lossy(&name[..len]).into_owned(),
            }
        }
        XLOG_BACKUP_END => RecordKind::BackupEnd {
            start: Lsn(u64_at(main, 0).ok_or("backup end record too short")?),
        },
        XLOG_END_OF_RECOVERY => {
            let short = "end-of-recovery record too short";
            RecordKind::EndOfRecovery {
                time: i64_at(main, 0).ok_or(short)?,
                tli: u32_at(main, 8).ok_or(short)?,
                prev_tli: u32_at(main, 12).ok_or(short)?,
            }
        }
        _ => RecordKind::Other,
    })
}

/// `xl_xact_xinfo` bits (`src/include/access/xact.h`).
const XACT_XINFO_HAS_DBINFO: u32 = 0x01;
const XACT_XINFO_HAS_SUBXACTS: u32 = 0x02;
const XACT_XINFO_HAS_RELFILENODES: u32 = 0x04;
const XACT_XINFO_HAS_INVALS: u32 = 0x08;
const XACT_XINFO_HAS_TWOPHASE: u32 = 0x10;
const XACT_XINFO_HAS_DROPPED_STATS: u32 = 0x100;
/// sizeof(SharedInvalidationMessage) (its largest member, SharedInvalSmgrMsg).
const SIZEOF_INVAL_MSG: u64 = 16;

/// xl_xact_commit / xl_xact_abort: `xact_time` at 0, then (for the *_PREPARED records)
/// the sub-records ParseCommitRecord / ParseAbortRecord walk to reach the twophase xid
/// (`src/backend/access/rmgrdesc/xactdesc.c`; `reference/postgresql.md §4`).
fn decode_xact_end(
    op: XactOp,
    info: u8,
    xl_xid: u32,
    main: &[u8],
    pg_major: u32,
) -> Result<XactEnd, &'static str> {
    let time = i64_at(main, 0).ok_or("transaction record shorter than its timestamp")?;
    if matches!(op, XactOp::Commit | XactOp::Abort) {
        return Ok(XactEnd {
            op,
            time,
            xid: xl_xid,
        });
    }
    let short = "prepared transaction record shorter than its sub-records";
    let mut at: u64 = 8;
    let mut xinfo = 0;
    if info & XLOG_XACT_HAS_INFO != 0 {
        xinfo = u32_at(main, 8).ok_or(short)?;
        at += 4;
    }
    // One counted array: `i32 n` then n items of `size` bytes.
    let skip_array = |at: u64, size: u64| -> Result<u64, &'static str> {
        let n = usize::try_from(at)
            .ok()
            .and_then(|at| u32_at(main, at))
            .ok_or(short)?;
        let n = i32::from_le_bytes(n.to_le_bytes());
        let n = u64::try_from(n).map_err(|_| "negative count in a transaction record")?;
        Ok(at + 4 + n * size)
    };
    if xinfo & XACT_XINFO_HAS_DBINFO != 0 {
        at += 8;
    }
    if xinfo & XACT_XINFO_HAS_SUBXACTS != 0 {
        at = skip_array(at, 4)?;
    }
    if xinfo & XACT_XINFO_HAS_RELFILENODES != 0 {
        at = skip_array(at, 12)?;
    }
    if pg_major >= 15 && xinfo & XACT_XINFO_HAS_DROPPED_STATS != 0 {
        at = skip_array(at, 12)?;
    }
    if op == XactOp::CommitPrepared && xinfo & XACT_XINFO_HAS_INVALS != 0 {
        at = skip_array(at, SIZEOF_INVAL_MSG)?;
    }
    if xinfo & XACT_XINFO_HAS_TWOPHASE == 0 {
        return Err("prepared transaction record without the prepared transaction's xid");
    }
    let xid = usize::try_from(at)
        .ok()
        .and_then(|at| u32_at(main, at))
        .ok_or(short)?;
    Ok(XactEnd { op, time, xid })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::name::SegmentName;
    use super::super::page::tests::header;
    use super::super::page::{
        XLP_BKP_REMOVABLE, XLP_FIRST_IS_CONTRECORD, XLP_FIRST_IS_OVERWRITE_CONTRECORD,
        XLP_LONG_HEADER,
    };
    use super::*;

    pub(crate) const MIB: usize = 1 << 20;
    pub(crate) const PAGE: usize = 8192;
    pub(crate) const MAGIC_15: u16 = 0xD110;

    /// The main data alone, behind a short or long data header.
    pub(crate) fn main_only(main: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match u8::try_from(main.len()) {
            Ok(len) => out.extend_from_slice(&[XLR_BLOCK_ID_DATA_SHORT, len]),
            Err(_) => {
                out.push(XLR_BLOCK_ID_DATA_LONG);
                out.extend_from_slice(&(main.len() as u32).to_le_bytes());
            }
        }
        out.extend_from_slice(main);
        out
    }

    /// A whole record: header with CRC, then `body` (fragment headers and payload).
    pub(crate) fn record(rmid: u8, info: u8, xid: u32, prev: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((RECORD_HEADER_LEN + body.len()) as u32).to_le_bytes());
        out.extend_from_slice(&xid.to_le_bytes());
        out.extend_from_slice(&prev.to_le_bytes());
        out.extend_from_slice(&[info, rmid, 0, 0]);
        let crc = crc32c::crc32c_append(crc32c::crc32c(body), &out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    /// Writes a WAL stream the way the server lays it out: records MAXALIGNed, a page
    /// header at every page boundary (long on segment boundaries), a record crossing a
    /// page continued after the next header with CONTRECORD and `xlp_rem_len`.
    pub(crate) struct Stream {
        /// The LSN of `bytes[0]`, a segment start.
        pub base: u64,
        pub seg_size: usize,
        pub magic: u16,
        pub tli: u32,
        pub bytes: Vec<u8>,
        pub prev: u64,
    }

    impl Stream {
        pub(crate) fn new(base: u64, seg_size: usize) -> Stream {
            Stream {
                base,
                seg_size,
                magic: MAGIC_15,
                tli: 1,
                bytes: Vec::new(),
                prev: 0,
            }
        }

        pub(crate) fn lsn(&self) -> u64 {
            self.base + self.bytes.len() as u64
        }

        fn page_header(&mut self, rem_len: u32) {
            let off = self.bytes.len();
            let mut info = XLP_BKP_REMOVABLE;
            if rem_len > 0 {
                info |= XLP_FIRST_IS_CONTRECORD;
            }
            let long = off % self.seg_size == 0;
            if long {
                info |= XLP_LONG_HEADER;
            }
            let lsn = self.lsn();
            let hdr = header(
                self.magic,
                info,
                self.tli,
                lsn,
                rem_len,
                long.then_some((self.seg_size as u32, PAGE as u32)),
            );
            self.bytes.extend_from_slice(&hdr);
        }

        /// Appends raw record bytes at the current position, splitting across pages.
        pub(crate) fn put(&mut self, mut data: &[u8]) {
            while !data.is_empty() {
                if self.bytes.len() % PAGE == 0 {
                    self.page_header(data.len() as u32);
                }
                let room = PAGE - self.bytes.len() % PAGE;
                let n = room.min(data.len());
                self.bytes.extend_from_slice(&data[..n]);
                data = &data[n..];
            }
        }

        /// Pads to the next MAXALIGN boundary and writes the page header if a page
        /// starts there. Returns the LSN the next record gets.
        pub(crate) fn align(&mut self) -> u64 {
            let aligned = maxalign(self.bytes.len());
            self.bytes.resize(aligned, 0);
            if self.bytes.len() % PAGE == 0 {
                self.page_header(0);
            }
            self.lsn()
        }

        /// Appends a record; returns its LSN.
        pub(crate) fn add(&mut self, rmid: u8, info: u8, xid: u32, body: &[u8]) -> u64 {
            let lsn = self.align();
            let rec = record(rmid, info, xid, self.prev, body);
            self.put(&rec);
            self.prev = lsn;
            lsn
        }

        pub(crate) fn commit(&mut self, xid: u32, time: i64) -> u64 {
            self.add(
                RM_XACT_ID,
                XLOG_XACT_COMMIT,
                xid,
                &main_only(&time.to_le_bytes()),
            )
        }

        /// A heap-like record: one block reference carrying `len` bytes of block data,
        /// then 3 bytes of main data; 49 + `len` bytes in all.
        pub(crate) fn filler(&mut self, len: u16) -> u64 {
            let flags = if len > 0 { BKPBLOCK_HAS_DATA } else { 0 };
            let mut body = vec![0, flags];
            body.extend_from_slice(&len.to_le_bytes());
            body.extend_from_slice(&[0x7F; 12]);
            body.extend_from_slice(&7u32.to_le_bytes());
            body.extend_from_slice(&[XLR_BLOCK_ID_DATA_SHORT, 3]);
            body.resize(body.len() + usize::from(len), 0xAB);
            body.extend_from_slice(&[1, 2, 3]);
            self.add(10, 0, 700, &body)
        }

        /// Zero-fills to the end of the current segment (or leaves it if at a boundary).
        pub(crate) fn pad_segment(&mut self) {
            let end = self.bytes.len().div_ceil(self.seg_size) * self.seg_size;
            self.bytes.resize(end, 0);
        }

        pub(crate) fn segment(&self, n: usize) -> &[u8] {
            &self.bytes[n * self.seg_size..(n + 1) * self.seg_size]
        }

        pub(crate) fn name(&self, n: usize) -> SegmentName {
            let segno = self.base / self.seg_size as u64 + n as u64;
            SegmentName::from_segno(self.tli, segno, self.seg_size as u32).unwrap()
        }
    }

    pub(crate) fn read_all(
        name: &SegmentName,
        bytes: &[u8],
    ) -> (Vec<Record>, WalEnd, Option<Lsn>, Lsn) {
        let geometry = SegmentGeometry::read(name, bytes).unwrap();
        let mut reader = RecordReader::new(bytes, geometry);
        let records: Vec<Record> = reader.by_ref().collect();
        let end = reader.end().cloned().unwrap();
        (records, end, reader.first_record(), reader.valid_end())
    }

    #[test]
    fn records_in_one_segment() {
        let mut s = Stream::new(0x300000, MIB);
        let c1 = s.commit(731, 800_000_000_000_000);
        let f = s.filler(20_000); // crosses two page boundaries
        let c2 = s.commit(732, 800_000_000_000_001);
        s.pad_segment();
        let (records, end, first, valid_end) = read_all(&s.name(0), s.segment(0));
        assert_eq!(records.len(), 3);
        assert_eq!(first, Some(Lsn(c1)));
        assert_eq!(c1, 0x300028, "first record right after the long header");
        assert_eq!(
            records[0].kind,
            RecordKind::XactEnd(XactEnd {
                op: XactOp::Commit,
                time: 800_000_000_000_000,
                xid: 731
            })
        );
        assert_eq!(records[0].tot_len, 34, "a plain commit (reference §3)");
        assert_eq!(records[0].end, Lsn(c1 + 40), "MAXALIGNed end");
        assert_eq!((records[1].lsn, records[1].prev), (Lsn(f), Lsn(c1)));
        assert_eq!(records[1].end, Lsn(c2), "page headers count in the end");
        assert_eq!(records[2].prev, Lsn(f));
        // Zeros after the last record: the end of valid WAL.
        let WalEnd::Invalid(RecordError::Length { lsn, len: 0 }) = end else {
            panic!("{end:?}")
        };
        assert_eq!(lsn, records[2].end);
        assert_eq!(valid_end, records[2].end);
    }

    #[test]
    fn record_continued_from_the_previous_segment() {
        let mut s = Stream::new(0x300000, MIB);
        // Fill segment 0 so that a record crosses into segment 1 and beyond a page.
        while s.lsn() < 0x300000 + MIB as u64 - 30_000 {
            s.filler(8000);
        }
        let big = s.filler(50_000);
        let after = s.commit(900, 5);
        s.pad_segment();
        let (records, end, first, valid_end) = read_all(&s.name(0), s.segment(0));
        assert_eq!(
            end,
            WalEnd::EndOfFile {
                incomplete: Some(Lsn(big))
            }
        );
        assert_eq!(records.last().unwrap().end, Lsn(big));
        assert_eq!(valid_end, Lsn(big));
        assert_eq!(first, Some(Lsn(0x300028)));
        let (records, end, first, valid_end) = read_all(&s.name(1), s.segment(1));
        assert_eq!(first, Some(Lsn(after)), "skips the tail of the big record");
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].prev,
            Lsn(big),
            "its predecessor is not in this file"
        );
        assert!(matches!(end, WalEnd::Invalid(RecordError::Length { .. })));
        assert_eq!(valid_end, records[0].end);
    }

    #[test]
    fn segment_that_is_all_continuation() {
        let mut s = Stream::new(0, MIB);
        s.filler(100);
        // One record over three segments (a 3 MB logical message does this).
        let body = main_only(&vec![0x55; 2 * MIB + 5000]);
        let big = s.add(21, 0, 0, &body);
        let after = s.commit(3, 4);
        s.pad_segment();
        let (records, end, first, valid_end) = read_all(&s.name(1), s.segment(1));
        assert!(records.is_empty());
        assert_eq!(end, WalEnd::EndOfFile { incomplete: None });
        assert_eq!((first, valid_end), (None, Lsn(MIB as u64)));
        let (records, _, first, _) = read_all(&s.name(2), s.segment(2));
        assert_eq!(first, Some(Lsn(after)));
        assert_eq!(records[0].prev, Lsn(big));
        let (records, _, _, _) = read_all(&s.name(0), s.segment(0));
        assert_eq!(
            records.len(),
            1,
            "the big record is incomplete at the end of 0"
        );
    }

    #[test]
    fn switch_ends_the_segment_and_nothing_after_is_read() {
        let mut s = Stream::new(0x300000, MIB);
        s.commit(1, 2);
        let switch = s.add(RM_XLOG_ID, XLOG_SWITCH, 0, &[]);
        s.pad_segment();
        let mut bytes = s.segment(0).to_vec();
        // Garbage after the switch is never looked at.
        bytes[3 * PAGE..3 * PAGE + 100].fill(0xEE);
        let (records, end, _, valid_end) = read_all(&s.name(0), &bytes);
        assert_eq!(records.len(), 2);
        assert_eq!(end, WalEnd::Switch { lsn: Lsn(switch) });
        assert_eq!(valid_end, Lsn(switch + 24), "what pg_switch_wal returns");
    }

    #[test]
    fn corruption_ends_valid_wal() {
        let mut s = Stream::new(0x300000, MIB);
        let c1 = s.commit(1, 2);
        let c2 = s.commit(2, 3);
        let f = s.filler(9000);
        s.pad_segment();
        let seg = s.segment(0);
        let name = s.name(0);
        let end_with = |patch: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = seg.to_vec();
            patch(&mut bytes);
            read_all(&name, &bytes).1
        };
        let at = |lsn: u64| (lsn - 0x300000) as usize;
        let crc = end_with(&|b| b[at(c2) + 30] ^= 1);
        assert!(
            matches!(crc, WalEnd::Invalid(RecordError::Crc { lsn, .. }) if lsn == Lsn(c2)),
            "{crc:?}"
        );
        let prev = end_with(&|b| b[at(c2) + 8] ^= 8);
        assert!(matches!(prev, WalEnd::Invalid(RecordError::Prev { .. })));
        let rmgr = end_with(&|b| b[at(c2) + 17] = 22);
        assert!(matches!(
            rmgr,
            WalEnd::Invalid(RecordError::Rmgr { rmid: 22, .. })
        ));
        let custom = end_with(&|b| b[at(c2) + 17] = 130);
        assert!(
            matches!(custom, WalEnd::Invalid(RecordError::Crc { .. })),
            "15 accepts custom rmgr ids, so the CRC is what fails"
        );
        let short = end_with(&|b| b[at(c2)..at(c2) + 4].copy_from_slice(&23u32.to_le_bytes()));
        assert!(matches!(
            short,
            WalEnd::Invalid(RecordError::Length { len: 23, .. })
        ));
        let first_prev =
            end_with(&|b| b[at(c1) + 8..at(c1) + 16].copy_from_slice(&c1.to_le_bytes()));
        assert!(matches!(
            first_prev,
            WalEnd::Invalid(RecordError::PrevNotBefore { .. })
        ));
        // The filler crosses into page 1: break that page's continuation.
        let no_flag = end_with(&|b| b[PAGE + 2] &= !1);
        assert!(matches!(
            no_flag,
            WalEnd::Invalid(RecordError::NoContrecord { lsn, .. }) if lsn == Lsn(f)
        ));
        let bad_rem = end_with(&|b| b[PAGE + 16] ^= 1);
        assert!(matches!(
            bad_rem,
            WalEnd::Invalid(RecordError::ContrecordLength { .. })
        ));
        let bad_page = end_with(&|b| b[PAGE] = 0);
        assert!(matches!(
            bad_page,
            WalEnd::Invalid(RecordError::Page(PageError::UnknownMagic { .. }))
        ));
    }

    #[test]
    fn overwrite_contrecord_drops_the_abandoned_record() {
        // A record crosses into page 1 but was never finished; after a crash the server
        // wrote page 1 afresh with XLP_FIRST_IS_OVERWRITE_CONTRECORD, continuing from the
        // last complete record.
        let mut s = Stream::new(0x300000, MIB);
        let c1 = s.commit(1, 2);
        while s.lsn() < 0x300000 + PAGE as u64 - 200 {
            s.commit(2, 3);
        }
        let last_complete = s.prev;
        let abandoned = s.align();
        let rec = record(10, 0, 5, last_complete, &main_only(&[9; 250]));
        let room = PAGE - s.bytes.len() % PAGE;
        s.bytes.extend_from_slice(&rec[..room]);
        let info = XLP_FIRST_IS_OVERWRITE_CONTRECORD | XLP_BKP_REMOVABLE;
        let hdr = header(MAGIC_15, info, 1, s.lsn(), 0, None);
        s.bytes.extend_from_slice(&hdr);
        s.prev = last_complete;
        let overwrite = s.add(RM_XLOG_ID, 0xD0, 0, &main_only(&[0; 16]));
        s.pad_segment();
        let (records, _, first, _) = read_all(&s.name(0), s.segment(0));
        assert_eq!(first, Some(Lsn(c1)));
        let lsns: Vec<Lsn> = records.iter().map(|r| r.lsn).collect();
        assert!(!lsns.contains(&Lsn(abandoned)));
        let last = records.last().unwrap();
        assert_eq!((last.lsn, last.prev), (Lsn(overwrite), Lsn(last_complete)));
    }

    #[test]
    fn header_straddling_a_page() {
        let mut s = Stream::new(0x300000, MIB);
        // Leave exactly 8 bytes on page 0 for the next record.
        while s.lsn() < 0x300000 + PAGE as u64 - 200 {
            s.commit(1, 2);
        }
        let left = PAGE as u64 - (s.align() - 0x300000);
        s.filler((left - 8 - 24 - 2 - 4 - 12 - 4 - 3) as u16);
        let straddling = s.commit(77, 88);
        assert_eq!((straddling - 0x300000) % PAGE as u64, PAGE as u64 - 8);
        let after = s.commit(78, 89);
        s.pad_segment();
        let (records, _, _, _) = read_all(&s.name(0), s.segment(0));
        let r = records.iter().find(|r| r.lsn == Lsn(straddling)).unwrap();
        assert_eq!(r.xid, 77);
        assert_eq!(r.end, Lsn(straddling + 8 + 24 + 32));
        assert!(records.iter().any(|r| r.lsn == Lsn(after)));
    }

    #[test]
    fn decodes_the_records_the_index_needs() {
        let mut s = Stream::new(0x300000, MIB);
        let mut rp = 799_000_000_000_000i64.to_le_bytes().to_vec();
        let mut name = [0u8; 64];
        name[..6].copy_from_slice(b"rp_one");
        rp.extend_from_slice(&name);
        s.add(RM_XLOG_ID, XLOG_RESTORE_POINT, 0, &main_only(&rp));
        s.add(
            RM_XLOG_ID,
            XLOG_BACKUP_END,
            0,
            &main_only(&0x3000028u64.to_le_bytes()),
        );
        let mut eor = 5i64.to_le_bytes().to_vec();
        eor.extend_from_slice(&2u32.to_le_bytes());
        eor.extend_from_slice(&1u32.to_le_bytes());
        s.add(RM_XLOG_ID, XLOG_END_OF_RECOVERY, 0, &main_only(&eor));
        // COMMIT PREPARED with dbinfo, 2 subxacts, 1 rel, 1 dropped stat, 2 invals,
        // twophase xid 4242, GID and origin; behind a block reference and an origin id.
        let mut main = 12i64.to_le_bytes().to_vec();
        let xinfo: u32 = 0x01 | 0x02 | 0x04 | 0x100 | 0x08 | 0x10 | 0x80 | 0x20;
        main.extend_from_slice(&xinfo.to_le_bytes());
        main.extend_from_slice(&[1; 8]);
        main.extend_from_slice(&2i32.to_le_bytes());
        main.extend_from_slice(&[2; 8]);
        main.extend_from_slice(&1i32.to_le_bytes());
        main.extend_from_slice(&[3; 12]);
        main.extend_from_slice(&1i32.to_le_bytes());
        main.extend_from_slice(&[4; 12]);
        main.extend_from_slice(&2i32.to_le_bytes());
        main.extend_from_slice(&[5; 32]);
        main.extend_from_slice(&4242u32.to_le_bytes());
        main.extend_from_slice(b"gid\0");
        main.extend_from_slice(&[6; 16]);
        let mut body = vec![XLR_BLOCK_ID_ORIGIN, 1, 0];
        body.extend_from_slice(&[0, BKPBLOCK_HAS_IMAGE, 0, 0]);
        body.extend_from_slice(&100u16.to_le_bytes()); // image length
        body.extend_from_slice(&0u16.to_le_bytes()); // hole offset
        body.push(0x04); // pglz on 15
        body.extend_from_slice(&[7; 12]);
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(&[XLR_BLOCK_ID_DATA_SHORT, main.len() as u8]);
        body.extend_from_slice(&[0xCC; 100]);
        body.extend_from_slice(&main);
        s.add(RM_XACT_ID, XLOG_XACT_COMMIT_PREPARED | 0x80, 0, &body);
        s.add(
            RM_XACT_ID,
            XLOG_XACT_ABORT,
            55,
            &main_only(&13i64.to_le_bytes()),
        );
        s.pad_segment();
        let (records, _, _, _) = read_all(&s.name(0), s.segment(0));
        let kinds: Vec<RecordKind> = records.into_iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            vec![
                RecordKind::RestorePoint {
                    time: 799_000_000_000_000,
                    name: "rp_one".into()
                },
                RecordKind::BackupEnd {
                    start: Lsn(0x3000028)
                },
                RecordKind::EndOfRecovery {
                    time: 5,
                    tli: 2,
                    prev_tli: 1
                },
                RecordKind::XactEnd(XactEnd {
                    op: XactOp::CommitPrepared,
                    time: 12,
                    xid: 4242
                }),
                RecordKind::XactEnd(XactEnd {
                    op: XactOp::Abort,
                    time: 13,
                    xid: 55
                }),
            ]
        );
    }

    #[test]
    fn fragment_headers_are_checked() {
        let check =
            |body: &[u8], major| main_data(&record(10, 0, 0, 0, body), major).map(<[u8]>::to_vec);
        assert_eq!(check(&main_only(b"abc"), 15), Ok(b"abc".to_vec()));
        assert_eq!(check(&[], 15), Ok(Vec::new()), "no fragments at all");
        assert!(check(&[200], 15).is_err(), "invalid block id");
        let toplevel = [
            &[XLR_BLOCK_ID_TOPLEVEL_XID, 1, 0, 0, 0][..],
            &main_only(b"x"),
        ]
        .concat();
        assert!(check(&toplevel, 14).is_ok());
        assert!(check(&toplevel, 13).is_err(), "252 is not an id before 14");
        let block = |id: u8, flags: u8, len: u16| {
            let mut b = vec![id, flags];
            b.extend_from_slice(&len.to_le_bytes());
            if flags & BKPBLOCK_SAME_REL == 0 {
                b.extend_from_slice(&[0; 12]);
            }
            b.extend_from_slice(&[0; 4]);
            b
        };
        let two = [block(0, 0x20, 1), block(1, 0xA0, 1), vec![0, 0]].concat();
        assert!(check(&two, 15).is_ok());
        let out_of_order = [block(1, 0x20, 1), block(1, 0x20, 1), vec![0, 0]].concat();
        assert_eq!(check(&out_of_order, 15), Err("out-of-order block_id"));
        assert!(check(&[block(0, 0x20, 0), vec![]].concat(), 15).is_err());
        assert!(check(&[block(0, 0, 1), vec![0]].concat(), 15).is_err());
        assert!(
            check(&[block(0, 0xA0, 1), vec![0]].concat(), 15).is_err(),
            "SAME_REL first"
        );
        assert!(
            check(&[block(0, 0x20, 2), vec![0]].concat(), 15).is_err(),
            "short payload"
        );
        assert!(
            check(&[main_only(b"abc"), vec![0]].concat(), 15).is_err(),
            "trailing byte"
        );
        let mut long = vec![XLR_BLOCK_ID_DATA_LONG];
        long.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            check(&long, 15).is_err(),
            "main data longer than the record"
        );
    }

    #[test]
    fn no_panic_on_arbitrary_bytes() {
        let mut s = Stream::new(0x300000, MIB);
        for i in 0..400 {
            s.filler(i * 7);
            s.commit(u32::from(i), i64::from(i));
        }
        s.pad_segment();
        let name = s.name(0);
        let seg = s.segment(0).to_vec();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..300 {
            let mut bytes = seg.clone();
            for _ in 0..20 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state >> 16) as usize % (3 * PAGE);
                bytes[at] = state as u8;
            }
            if let Ok(geometry) = SegmentGeometry::read(&name, &bytes) {
                let mut reader = RecordReader::new(&bytes, geometry);
                for record in reader.by_ref() {
                    assert!(record.end > record.lsn);
                }
                assert!(reader.end().is_some());
            }
        }
    }
}
