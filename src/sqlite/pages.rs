//! The pages of a pinned read transaction as one byte stream, for
//! `BackupSession::add_pages`.
//!
//! Rows of `SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno` are copied into the
//! caller's buffer one page at a time: memory is one page. The reader checks as it goes
//! that page numbers run 1, 2, 3… and that every page is `page_size` bytes, stops at the
//! first row that breaks that, and keeps the error for [`PageReader::finish`], which also
//! checks that exactly `page_count` pages came. Page 1's header is kept for the facts a
//! snapshot records.

use std::io::{self, Read};

use rusqlite::Rows;

use super::header::{Header, HEADER_LEN};
use super::{Database, SqliteError};

pub struct PageReader<'stmt> {
    rows: Rows<'stmt>,
    page_size: usize,
    page_count: u64,
    /// Pages handed out so far (the number of the page in `page`, once it is read).
    pages: u64,
    page: Vec<u8>,
    /// Bytes of `page` already handed out.
    at: usize,
    first: Option<Vec<u8>>,
    /// Why reading stopped early, reported by `finish`.
    failure: Option<Failure>,
}

enum Failure {
    Sqlite(rusqlite::Error),
    Page { found: u64, reason: String },
}

impl<'stmt> PageReader<'stmt> {
    pub(super) fn new(rows: Rows<'stmt>, page_size: usize, page_count: u64) -> Self {
        PageReader {
            rows,
            page_size,
            page_count,
            pages: 0,
            page: Vec::with_capacity(page_size),
            at: 0,
            first: None,
            failure: None,
        }
    }

    /// The first [`HEADER_LEN`] bytes of page 1, once it has been read.
    pub fn header(&self) -> Option<Header> {
        self.first.as_deref().and_then(|h| Header::parse(h).ok())
    }

    /// Loads the next page into `page`; `false` at the end.
    fn next_page(&mut self) -> io::Result<bool> {
        let row = match self.rows.next() {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(false),
            Err(e) => {
                let message = e.to_string();
                self.failure = Some(Failure::Sqlite(e));
                return Err(io::Error::other(message));
            }
        };
        let expected = self.pages + 1;
        let pgno: i64 = row.get(0).unwrap_or(-1);
        let data = row.get_ref(1).ok().and_then(|v| v.as_blob_or_null().ok());
        let fail = |found: u64, reason: String| (found, reason);
        let problem = match (u64::try_from(pgno), data) {
            (Ok(found), _) if found != expected => Some(fail(found, "out of order".into())),
            (Ok(found), Some(Some(data))) if data.len() == self.page_size => {
                self.page.clear();
                self.page.extend_from_slice(data);
                if found == 1 {
                    self.first = Some(data[..HEADER_LEN.min(data.len())].to_vec());
                }
                None
            }
            (Ok(found), data) => Some(fail(
                found,
                format!(
                    "{} bytes, page size {}",
                    data.flatten().map_or(0, <[u8]>::len),
                    self.page_size
                ),
            )),
            (Err(_), _) => Some(fail(0, format!("page number {pgno}"))),
        };
        if let Some((found, reason)) = problem {
            let message = format!("page {found}: {reason}");
            self.failure = Some(Failure::Page { found, reason });
            return Err(io::Error::other(message));
        }
        self.pages = expected;
        self.at = 0;
        Ok(true)
    }

    /// Checks that the stream ended cleanly after exactly `page_count` pages.
    pub(super) fn finish(self, db: &Database) -> Result<(), SqliteError> {
        let path = db.path.clone();
        match self.failure {
            Some(Failure::Sqlite(e)) => Err(db.error("reading sqlite_dbpage", e)),
            Some(Failure::Page { found, reason }) => Err(SqliteError::Pages {
                path,
                expected: self.pages + 1,
                found,
                reason,
            }),
            None if self.pages != self.page_count => Err(SqliteError::Pages {
                path,
                expected: self.pages + 1,
                found: self.pages,
                reason: format!("the transaction holds {} pages", self.page_count),
            }),
            None => Ok(()),
        }
    }
}

impl Read for PageReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failure.is_some() {
            return Err(io::Error::other("reading stopped at a bad page"));
        }
        let mut written = 0;
        while written < buf.len() {
            if self.at == self.page.len() {
                self.page.clear();
                self.at = 0;
                if !self.next_page()? {
                    break;
                }
            }
            let n = (self.page.len() - self.at).min(buf.len() - written);
            buf[written..written + n].copy_from_slice(&self.page[self.at..self.at + n]);
            self.at += n;
            written += n;
        }
        Ok(written)
    }
}
