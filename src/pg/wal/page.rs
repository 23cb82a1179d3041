//! WAL page headers: parsing, and the per-page checks the server makes.
//!
//! Every XLOG_BLCKSZ page starts with XLogPageHeaderData; the first page of a segment
//! with XLogLongPageHeaderData (`reference/postgresql.md §2`;
//! `src/include/access/xlog_internal.h`). Native byte order, little-endian here:
//!
//! ```text
//!  0 xlp_magic u16 │ 2 xlp_info u16 │ 4 xlp_tli u32 │ 8 xlp_pageaddr u64 │ 16 xlp_rem_len u32 │ 20 pad
//! 24 xlp_sysid u64 │ 32 xlp_seg_size u32 │ 36 xlp_xlog_blcksz u32       (long header only)
//! short header = 24 bytes (MAXALIGNed), long header = 40 bytes
//! ```
//!
//! [`SegmentGeometry::read`] checks a segment's first page and fixes what every later
//! page must agree with; [`check_page`] is XLogReaderValidatePageHeader
//! (`src/backend/access/transam/xlogreader.c`) for one page of that segment.

use super::name::{is_valid_seg_size, Lsn, SegmentName};
use super::WalError;

/// `SizeOfXLogShortPHD`.
pub const SHORT_HEADER_LEN: usize = 24;
/// `SizeOfXLogLongPHD`.
pub const LONG_HEADER_LEN: usize = 40;
/// MAXIMUM_ALIGNOF on every platform PostgreSQL 12–17 packages are built for
/// (`reference/postgresql.md`, ground rules).
pub const MAXALIGN: usize = 8;

/// The record that starts a page is the tail of one begun on an earlier page.
pub const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// This page has the long header (first page of a segment).
pub const XLP_LONG_HEADER: u16 = 0x0002;
/// No backup was forcing full-page writes when the page was written.
pub const XLP_BKP_REMOVABLE: u16 = 0x0004;
/// The page replaces the missing continuation of a record that was never finished
/// (the September 2021 fix, backpatched to 12 and 13; `reference/postgresql.md §2`).
pub const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
/// Every defined flag. 12.2 defines only 0x0007, but the backpatched fix makes 0x0008
/// legal in later 12.x minors, which share 12.2's page magic, so all versions get 0x000F.
pub const XLP_ALL_FLAGS: u16 = 0x000F;

/// Smallest and largest XLOG_BLCKSZ `configure --with-wal-blocksize` allows.
pub const MIN_PAGE_SIZE: u32 = 1 << 10;
pub const MAX_PAGE_SIZE: u32 = 1 << 16;

/// XLOG_PAGE_MAGIC of each supported major version (`reference/postgresql.md §2`).
pub const PAGE_MAGICS: [(u16, u32); 6] = [
    (0xD101, 12),
    (0xD106, 13),
    (0xD10D, 14),
    (0xD110, 15),
    (0xD113, 16),
    (0xD116, 17),
];

/// The major version whose WAL carries `magic`, if it is one we read.
pub fn major_for_magic(magic: u16) -> Option<u32> {
    PAGE_MAGICS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, major)| *major)
}

/// A page size the server can be built with: a power of two from 1 KiB to 64 KiB.
pub fn is_valid_page_size(page_size: u32) -> bool {
    page_size.is_power_of_two() && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size)
}

/// `MAXALIGN(n)`, saturating instead of overflowing.
pub fn maxalign(n: usize) -> usize {
    n.saturating_add(MAXALIGN - 1) & !(MAXALIGN - 1)
}

pub(crate) fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    let mut raw = [0u8; 8];
    raw.copy_from_slice(b);
    Some(u64::from_le_bytes(raw))
}

/// XLogPageHeaderData.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    pub magic: u16,
    pub info: u16,
    pub tli: u32,
    /// The LSN of the page's first byte, as the writer saw it.
    pub pageaddr: Lsn,
    /// Bytes of a record begun on an earlier page still to come (with CONTRECORD).
    pub rem_len: u32,
}

impl PageHeader {
    /// Reads the short header at the start of `page`; `None` if it is shorter.
    pub fn parse(page: &[u8]) -> Option<PageHeader> {
        Some(PageHeader {
            magic: u16_at(page, 0)?,
            info: u16_at(page, 2)?,
            tli: u32_at(page, 4)?,
            pageaddr: Lsn(u64_at(page, 8)?),
            rem_len: u32_at(page, 16)?,
        })
    }

    pub fn is_long(&self) -> bool {
        self.info & XLP_LONG_HEADER != 0
    }

    pub fn is_contrecord(&self) -> bool {
        self.info & XLP_FIRST_IS_CONTRECORD != 0
    }

    pub fn is_overwrite_contrecord(&self) -> bool {
        self.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0
    }

    /// `XLogPageHeaderSize`: where the page's data begins, decided by the flag alone.
    pub fn header_len(&self) -> usize {
        if self.is_long() {
            LONG_HEADER_LEN
        } else {
            SHORT_HEADER_LEN
        }
    }
}

/// XLogLongPageHeaderData.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongPageHeader {
    pub std: PageHeader,
    /// `xlp_sysid`: pg_control's system identifier.
    pub sysid: u64,
    pub seg_size: u32,
    /// `xlp_xlog_blcksz`: the WAL page size.
    pub page_size: u32,
}

impl LongPageHeader {
    /// Reads a long header at the start of `page`, whatever its flags say; `None` if
    /// `page` is shorter than 40 bytes.
    pub fn parse(page: &[u8]) -> Option<LongPageHeader> {
        Some(LongPageHeader {
            std: PageHeader::parse(page)?,
            sysid: u64_at(page, 24)?,
            seg_size: u32_at(page, 32)?,
            page_size: u32_at(page, 36)?,
        })
    }
}

/// What every page of one segment must agree with, fixed by its first page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentGeometry {
    /// The file's name, as archived.
    pub segment: SegmentName,
    /// The first page's magic, and the major version it stands for.
    pub magic: u16,
    pub pg_major: u32,
    pub sysid: u64,
    pub seg_size: u32,
    pub page_size: u32,
    /// The LSN of the segment's first byte, from its name.
    pub start: Lsn,
}

impl SegmentGeometry {
    /// Checks the first page of `segment` (`bytes` is the file, or at least its first
    /// 40 bytes): a known page magic, the long header, a valid segment and page size,
    /// a name that can exist at that size, an `xlp_pageaddr` equal to the start of the
    /// segment the name says (a file renamed to another segment's name fails here), and
    /// a page timeline no later than the name's.
    ///
    /// # Errors
    /// The first of those checks that fails, naming `segment`.
    pub fn read(segment: &SegmentName, bytes: &[u8]) -> Result<SegmentGeometry, WalError> {
        let segment = *segment;
        let long = LongPageHeader::parse(bytes).ok_or(WalError::TooShort {
            segment,
            len: bytes.len(),
        })?;
        let hdr = long.std;
        let pg_major = major_for_magic(hdr.magic).ok_or(WalError::NotWal {
            segment,
            magic: hdr.magic,
        })?;
        if !hdr.is_long() {
            return Err(WalError::NoLongHeader { segment });
        }
        if !is_valid_seg_size(long.seg_size) {
            return Err(WalError::BadSegSize {
                segment,
                seg_size: long.seg_size,
            });
        }
        if !is_valid_page_size(long.page_size) {
            return Err(WalError::BadPageSize {
                segment,
                page_size: long.page_size,
            });
        }
        segment.check_seg_size(long.seg_size)?;
        let start = segment.start_lsn(long.seg_size);
        if hdr.pageaddr != start {
            return Err(
                match SegmentName::from_lsn(segment.tli, hdr.pageaddr, long.seg_size) {
                    Ok(found) if found.start_lsn(long.seg_size) == hdr.pageaddr => {
                        WalError::WrongSegment { segment, found }
                    }
                    _ => WalError::FirstPageAddress {
                        segment,
                        pageaddr: hdr.pageaddr,
                    },
                },
            );
        }
        let geometry = SegmentGeometry {
            segment,
            magic: hdr.magic,
            pg_major,
            sysid: long.sysid,
            seg_size: long.seg_size,
            page_size: long.page_size,
            start,
        };
        let mut last_tli = 0;
        check_page(&geometry, 0, bytes, &mut last_tli)
            .map_err(|source| WalError::Page { segment, source })?;
        Ok(geometry)
    }

    /// The LSN of the byte at `offset` in the file.
    pub fn lsn_at(&self, offset: usize) -> Lsn {
        Lsn(self.start.0.saturating_add(offset as u64))
    }
}

/// A page header the server would refuse (XLogReaderValidatePageHeader). Each names
/// the page by its LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("page at {page}: bad magic {magic:#06X} (not a PostgreSQL 12–17 WAL page)")]
    UnknownMagic { page: Lsn, magic: u16 },
    #[error(
        "page at {page}: magic {magic:#06X} is PostgreSQL {found}'s, but the segment's \
         first page is PostgreSQL {expected}'s"
    )]
    MixedMagic {
        page: Lsn,
        magic: u16,
        found: u32,
        expected: u32,
    },
    #[error("page at {page}: unknown flag bits in xlp_info {info:#06X}")]
    UnknownFlags { page: Lsn, info: u16 },
    #[error("page at {page}: first page of a segment without a long header")]
    NoLongHeader { page: Lsn },
    #[error(
        "page at {page}: long header (system identifier {sysid}, segment size {seg_size}, \
         page size {page_size}) disagrees with the segment's first page"
    )]
    LongHeaderMismatch {
        page: Lsn,
        sysid: u64,
        seg_size: u32,
        page_size: u32,
    },
    #[error(
        "page at {page}: header says the page is at {found} (stale data of a recycled segment?)"
    )]
    WrongAddress { page: Lsn, found: Lsn },
    #[error("page at {page}: timeline {tli} is later than the file's timeline {file_tli}")]
    TimelineAhead { page: Lsn, tli: u32, file_tli: u32 },
    #[error("page at {page}: timeline {tli} goes back from {previous} on an earlier page")]
    TimelineBackwards { page: Lsn, tli: u32, previous: u32 },
    #[error("page at {page}: the file ends inside the page header")]
    Truncated { page: Lsn },
}

/// Checks the header of the page at `offset` of `geometry`'s segment (`page` starts at
/// that offset), as XLogReaderValidatePageHeader does: the segment's magic, no unknown
/// flag bits, a long header on the first page agreeing with it wherever one appears,
/// `xlp_pageaddr` equal to the page's own LSN, and a timeline that is at most the file
/// name's and never decreases from one page to the next (`last_tli` carries it; start
/// it at 0). Returns the header.
///
/// # Errors
/// The first failed check, naming the page's LSN.
pub fn check_page(
    geometry: &SegmentGeometry,
    offset: usize,
    page: &[u8],
    last_tli: &mut u32,
) -> Result<PageHeader, PageError> {
    let lsn = geometry.lsn_at(offset);
    let hdr = PageHeader::parse(page).ok_or(PageError::Truncated { page: lsn })?;
    if hdr.magic != geometry.magic {
        return Err(match major_for_magic(hdr.magic) {
            Some(found) => PageError::MixedMagic {
                page: lsn,
                magic: hdr.magic,
                found,
                expected: geometry.pg_major,
            },
            None => PageError::UnknownMagic {
                page: lsn,
                magic: hdr.magic,
            },
        });
    }
    if hdr.info & !XLP_ALL_FLAGS != 0 {
        return Err(PageError::UnknownFlags {
            page: lsn,
            info: hdr.info,
        });
    }
    if hdr.is_long() {
        let long = LongPageHeader::parse(page).ok_or(PageError::Truncated { page: lsn })?;
        if (long.sysid, long.seg_size, long.page_size)
            != (geometry.sysid, geometry.seg_size, geometry.page_size)
        {
            return Err(PageError::LongHeaderMismatch {
                page: lsn,
                sysid: long.sysid,
                seg_size: long.seg_size,
                page_size: long.page_size,
            });
        }
    } else if offset == 0 {
        return Err(PageError::NoLongHeader { page: lsn });
    }
    if hdr.pageaddr != lsn {
        return Err(PageError::WrongAddress {
            page: lsn,
            found: hdr.pageaddr,
        });
    }
    if hdr.tli > geometry.segment.tli {
        return Err(PageError::TimelineAhead {
            page: lsn,
            tli: hdr.tli,
            file_tli: geometry.segment.tli,
        });
    }
    if hdr.tli < *last_tli {
        return Err(PageError::TimelineBackwards {
            page: lsn,
            tli: hdr.tli,
            previous: *last_tli,
        });
    }
    *last_tli = hdr.tli;
    Ok(hdr)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::tests::chain;
    use super::*;

    pub(crate) const SYSID: u64 = 7_301_234_567_890_123_456;

    /// A page header as the server writes it (long on the first page of a segment).
    pub(crate) fn header(
        magic: u16,
        info: u16,
        tli: u32,
        pageaddr: u64,
        rem_len: u32,
        long: Option<(u32, u32)>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&magic.to_le_bytes());
        out.extend_from_slice(&info.to_le_bytes());
        out.extend_from_slice(&tli.to_le_bytes());
        out.extend_from_slice(&pageaddr.to_le_bytes());
        out.extend_from_slice(&rem_len.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        if let Some((seg_size, page_size)) = long {
            out.extend_from_slice(&SYSID.to_le_bytes());
            out.extend_from_slice(&seg_size.to_le_bytes());
            out.extend_from_slice(&page_size.to_le_bytes());
        }
        out
    }

    fn segment(seg: u32) -> SegmentName {
        SegmentName {
            tli: 2,
            log: 0,
            seg,
        }
    }

    fn first_page(pageaddr: u64, info: u16, tli: u32) -> Vec<u8> {
        let mut page = header(0xD110, info, tli, pageaddr, 0, Some((1 << 20, 8192)));
        page.resize(8192, 0);
        page
    }

    #[test]
    fn magic_table() {
        assert_eq!(major_for_magic(0xD110), Some(15));
        assert_eq!(major_for_magic(0xD116), Some(17));
        assert_eq!(major_for_magic(0x10D1), None, "byte-swapped 15");
        assert_eq!(major_for_magic(0), None);
        assert_eq!(maxalign(0), 0);
        assert_eq!(maxalign(34), 40);
        assert_eq!(maxalign(usize::MAX), usize::MAX & !7);
    }

    #[test]
    fn first_page_is_checked() {
        let seg3 = segment(3);
        let geometry = SegmentGeometry::read(&seg3, &first_page(0x30_0000, 2 | 4, 1)).unwrap();
        assert_eq!(
            (geometry.pg_major, geometry.sysid, geometry.start),
            (15, SYSID, Lsn(0x30_0000))
        );
        let err = |bytes: &[u8]| chain(&SegmentGeometry::read(&seg3, bytes).unwrap_err());
        assert!(err(&[0; 39]).contains("39 bytes"));
        assert!(err(&[0; 8192]).contains("magic 0x0000"));
        assert!(err(&first_page(0x30_0000, 0, 1)).contains("long header"));
        assert!(err(&first_page(0x30_0000, 2 | 0x10, 1)).contains("flag"));
        assert!(err(&first_page(0x30_0000, 2, 3)).contains("timeline 3"));
        let renamed = err(&first_page(0x40_0000, 2, 1));
        assert!(
            renamed.contains("header says this is segment 000000020000000000000004")
                && renamed.contains("file renamed"),
            "{renamed}"
        );
        assert!(err(&first_page(0x40_0028, 2, 1)).contains("0/400028"));
        let mut bad_size = first_page(0x30_0000, 2, 1);
        bad_size[32..36].copy_from_slice(&(3u32 << 20).to_le_bytes());
        assert!(err(&bad_size).contains("3145728"));
        let mut bad_page = first_page(0x30_0000, 2, 1);
        bad_page[36..40].copy_from_slice(&512u32.to_le_bytes());
        assert!(err(&bad_page).contains("512"));
        // Segment 0x1000 cannot exist with 1 MiB segments.
        let too_far = SegmentName {
            tli: 1,
            log: 0,
            seg: 0x1000,
        };
        assert!(SegmentGeometry::read(&too_far, &first_page(0, 2, 1)).is_err());
    }

    #[test]
    fn later_pages_are_checked() {
        let geometry = SegmentGeometry::read(&segment(3), &first_page(0x30_0000, 2, 1)).unwrap();
        let page =
            |magic: u16, info: u16, tli: u32, addr: u64| header(magic, info, tli, addr, 0, None);
        let mut tli = 1;
        assert!(check_page(&geometry, 8192, &page(0xD110, 5, 1, 0x30_2000), &mut tli).is_ok());
        assert!(check_page(&geometry, 16384, &page(0xD110, 0, 2, 0x30_4000), &mut tli).is_ok());
        let mut check = |bytes: Vec<u8>| {
            check_page(&geometry, 0x6000, &bytes, &mut tli)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            check(page(0, 0, 2, 0x30_6000)),
            "page at 0/306000: bad magic 0x0000 (not a PostgreSQL 12–17 WAL page)"
        );
        assert!(check(page(0xD113, 0, 2, 0x30_6000)).contains("PostgreSQL 16"));
        assert!(check(page(0xD110, 0x20, 2, 0x30_6000)).contains("flag"));
        assert!(check(page(0xD110, 0, 2, 0x20_6000)).contains("recycled"));
        assert!(check(page(0xD110, 0, 1, 0x30_6000)).contains("goes back"));
        assert!(check(page(0xD110, 0, 3, 0x30_6000)).contains("later than"));
        let mut long = header(0xD110, 2, 2, 0x30_6000, 0, Some((2 << 20, 8192)));
        long.resize(64, 0);
        assert!(check(long).contains("disagrees"));
        assert!(check(vec![0x10, 0xD1]).contains("ends inside"));
    }
}
