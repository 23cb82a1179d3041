//! The 100-byte header at the start of every SQLite database file
//! (<https://www.sqlite.org/fileformat2.html#the_database_header>).
//!
//! Read before SQLite itself opens the file, so that a file that is not a database, or
//! one whose header is damaged, is refused with a message naming what is wrong (SQLite
//! only says "file is not a database"); and read again from page 1 of the snapshot taken,
//! for the facts a snapshot records. Invariants of an accepted header:
//! 1. It starts with the magic string `SQLite format 3\0`.
//! 2. The page size is a power of two from 512 to 65536, and the usable size (page size
//!    less the reserved bytes) is at least 480, as SQLite requires.
//! 3. The file format versions are 1 (rollback journal) or 2 (WAL), the payload
//!    fractions are 64, 32 and 32, and the text encoding is 1, 2 or 3.
//!
//! Only the first [`HEADER_LEN`] bytes are ever looked at.

/// Bytes of the header.
pub const HEADER_LEN: usize = 100;
/// What every SQLite 3 database starts with.
pub const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The header fields stowage uses (big-endian in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Bytes per page: 512 to 65536 (stored as 1 for 65536).
    pub page_size: u32,
    /// 1 for a rollback-journal database, 2 for WAL.
    pub write_version: u8,
    pub read_version: u8,
    /// Bytes at the end of each page reserved for extensions.
    pub reserved: u8,
    /// Incremented by each transaction that changes the file in rollback mode.
    pub change_counter: u32,
    /// The database size in pages, valid only when `version_valid_for` equals
    /// `change_counter` (see [`Header::page_count`]).
    pub in_header_pages: u32,
    pub schema_cookie: u32,
    /// 1 UTF-8, 2 UTF-16le, 3 UTF-16be.
    pub text_encoding: u32,
    pub user_version: u32,
    pub application_id: u32,
    pub version_valid_for: u32,
    /// `SQLITE_VERSION_NUMBER` of the library that last wrote the file.
    pub sqlite_version_number: u32,
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("{len} bytes long, shorter than the 100-byte SQLite header")]
    Short { len: usize },
    #[error("not an SQLite database (it does not start with \"SQLite format 3\")")]
    NotSqlite,
    #[error("corrupt SQLite header: page size {0} is not a power of two from 512 to 65536")]
    PageSize(u32),
    #[error("corrupt SQLite header: {reserved} reserved bytes leave less than 480 usable bytes of a {page_size}-byte page")]
    Reserved { reserved: u8, page_size: u32 },
    #[error(
        "corrupt SQLite header: file format versions {write}/{read} (1 rollback journal, 2 WAL)"
    )]
    FileFormat { write: u8, read: u8 },
    #[error("corrupt SQLite header: payload fractions {0}/{1}/{2} (must be 64/32/32)")]
    PayloadFractions(u8, u8, u8),
    #[error("corrupt SQLite header: text encoding {0} (1, 2 or 3)")]
    TextEncoding(u32),
}

fn be32(data: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&data[at..at + 4]);
    u32::from_be_bytes(b)
}

impl Header {
    /// Parses the header at the start of `data` (a file's first bytes, or page 1).
    ///
    /// # Errors
    /// A [`HeaderError`] naming the first field that is wrong.
    pub fn parse(data: &[u8]) -> Result<Header, HeaderError> {
        if data.len() < HEADER_LEN {
            return Err(match data.get(..data.len().min(MAGIC.len())) {
                Some(start) if MAGIC.starts_with(start) => HeaderError::Short { len: data.len() },
                _ => HeaderError::NotSqlite,
            });
        }
        let data = &data[..HEADER_LEN];
        if &data[..16] != MAGIC {
            return Err(HeaderError::NotSqlite);
        }
        let page_size = match u16::from_be_bytes([data[16], data[17]]) {
            1 => 65536,
            n => u32::from(n),
        };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(HeaderError::PageSize(page_size));
        }
        let (write, read) = (data[18], data[19]);
        if !matches!(write, 1 | 2) || !matches!(read, 1 | 2) {
            return Err(HeaderError::FileFormat { write, read });
        }
        let reserved = data[20];
        if page_size - u32::from(reserved) < 480 {
            return Err(HeaderError::Reserved {
                reserved,
                page_size,
            });
        }
        if (data[21], data[22], data[23]) != (64, 32, 32) {
            return Err(HeaderError::PayloadFractions(data[21], data[22], data[23]));
        }
        let text_encoding = be32(data, 56);
        if !(1..=3).contains(&text_encoding) {
            return Err(HeaderError::TextEncoding(text_encoding));
        }
        Ok(Header {
            page_size,
            write_version: write,
            read_version: read,
            reserved,
            change_counter: be32(data, 24),
            in_header_pages: be32(data, 28),
            schema_cookie: be32(data, 40),
            text_encoding,
            user_version: be32(data, 60),
            application_id: be32(data, 68),
            version_valid_for: be32(data, 92),
            sqlite_version_number: be32(data, 96),
        })
    }

    /// The database size in pages the header states, when it is trustworthy (written by
    /// SQLite 3.7.0 or later, which keeps it with the change counter).
    pub fn page_count(&self) -> Option<u32> {
        (self.in_header_pages != 0 && self.version_valid_for == self.change_counter)
            .then_some(self.in_header_pages)
    }

    /// Whether the file is in WAL mode (file format version 2).
    pub fn is_wal(&self) -> bool {
        self.write_version == 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(page_size: u16) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[..16].copy_from_slice(MAGIC);
        h[16..18].copy_from_slice(&page_size.to_be_bytes());
        h[18] = 2;
        h[19] = 2;
        h[21..24].copy_from_slice(&[64, 32, 32]);
        h[24..28].copy_from_slice(&7u32.to_be_bytes());
        h[28..32].copy_from_slice(&3u32.to_be_bytes());
        h[56..60].copy_from_slice(&1u32.to_be_bytes());
        h[92..96].copy_from_slice(&7u32.to_be_bytes());
        h
    }

    #[test]
    fn reads_a_header() {
        let h = Header::parse(&valid(4096)).expect("valid");
        assert_eq!(
            (h.page_size, h.change_counter, h.page_count()),
            (4096, 7, Some(3))
        );
        assert!(h.is_wal());
        assert_eq!(Header::parse(&valid(1)).map(|h| h.page_size), Ok(65536));
    }

    #[test]
    fn names_what_is_wrong() {
        assert_eq!(Header::parse(b"SQLite"), Err(HeaderError::Short { len: 6 }));
        assert_eq!(Header::parse(b"PGDMP"), Err(HeaderError::NotSqlite));
        assert_eq!(Header::parse(&[0; 200]), Err(HeaderError::NotSqlite));
        assert_eq!(
            Header::parse(&valid(3000)),
            Err(HeaderError::PageSize(3000))
        );
        assert_eq!(Header::parse(&valid(256)), Err(HeaderError::PageSize(256)));
        let mut h = valid(512);
        h[20] = 40;
        assert!(matches!(
            Header::parse(&h),
            Err(HeaderError::Reserved { .. })
        ));
        let mut h = valid(4096);
        h[18] = 9;
        assert!(matches!(
            Header::parse(&h),
            Err(HeaderError::FileFormat { .. })
        ));
        let mut h = valid(4096);
        h[59] = 4;
        assert_eq!(Header::parse(&h), Err(HeaderError::TextEncoding(4)));
    }
}
