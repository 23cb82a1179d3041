//! SQLite databases: their header, a consistent read of a live database page by page,
//! the integrity check, and whether another process has one open.
//!
//! Why through SQLite and not the file: a database in WAL mode keeps committed pages in
//! the `-wal` file until a checkpoint, and a writer in rollback mode changes the file in
//! place; a copy of the file taken underneath either is torn. So a backup opens the
//! database with SQLite, starts a read transaction ([`Database::begin`]), which pins one
//! committed state (a WAL read mark, or a SHARED lock in rollback mode), and reads every
//! page of that state through the `sqlite_dbpage` virtual table ([`PageReader`]), which
//! goes through SQLite's pager and so sees the WAL's committed pages. Nothing is copied
//! into a temporary file, and memory stays at one page plus SQLite's page cache.
//!
//! `sqlite_dbpage` is compiled in only with `SQLITE_ENABLE_DBPAGE_VTAB`: the crate's
//! `.cargo/config.toml` sets it for the bundled SQLite that rusqlite builds.
//!
//! Invariants:
//! 1. A backup reads pages 1 to `page_count` of one transaction, in order, each exactly
//!    `page_size` bytes; anything else is an error, never a short snapshot.
//! 2. The backup connection never writes (`PRAGMA query_only`).
//! 3. A restored file is checked with `PRAGMA integrity_check` before it takes the
//!    target's name.

pub mod header;
pub mod lock;
mod pages;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use header::{Header, HeaderError, HEADER_LEN};
pub use pages::PageReader;

/// Why a database could not be backed up, checked or restored.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error("{path}: cannot read it")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path}: empty file, not an SQLite database")]
    Empty { path: PathBuf },
    #[error("{path}: {problem}")]
    Header { path: PathBuf, problem: HeaderError },
    #[error("{path}: the database stayed locked by another connection for {waited:?} (--busy-timeout); a writer holds it")]
    Locked { path: PathBuf, waited: Duration },
    #[error("{path}: {what}")]
    Sqlite {
        path: PathBuf,
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: this SQLite library has no sqlite_dbpage table (build stowage with the LIBSQLITE3_FLAGS of .cargo/config.toml)")]
    NoDbPage { path: PathBuf },
    #[error("{path}: read page {found} where page {expected} was due ({reason})")]
    Pages {
        path: PathBuf,
        expected: u64,
        found: u64,
        reason: String,
    },
    #[error("{path}: PRAGMA integrity_check found {count} problem(s), first: {first}")]
    Integrity {
        path: PathBuf,
        count: usize,
        first: String,
    },
}

/// The state of a database that a read transaction pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFacts {
    pub page_size: u32,
    pub page_count: u64,
    /// `wal`, `delete`, `truncate`, `persist`, `memory` or `off`.
    pub journal_mode: String,
    /// `PRAGMA data_version` of this connection (changes when another one commits).
    pub data_version: i64,
    /// Version of the SQLite library reading it.
    pub sqlite_version: String,
}

/// An open database, read-only in effect, with a busy timeout.
pub struct Database {
    conn: Connection,
    path: PathBuf,
    busy_timeout: Duration,
}

/// Reads and checks the header of the file at `path`, before SQLite opens it.
///
/// # Errors
/// [`SqliteError::NotAFile`], [`SqliteError::Empty`], [`SqliteError::Header`] (not a
/// database, or a damaged header), or [`SqliteError::Read`].
pub fn read_header(path: &Path) -> Result<Header, SqliteError> {
    use std::io::Read;
    let read = |source| SqliteError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if !meta.is_file() {
        return Err(SqliteError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let file = std::fs::File::open(path).map_err(read)?;
    let mut start = Vec::with_capacity(HEADER_LEN);
    file.take(HEADER_LEN as u64)
        .read_to_end(&mut start)
        .map_err(read)?;
    if start.is_empty() {
        return Err(SqliteError::Empty {
            path: path.to_path_buf(),
        });
    }
    Header::parse(&start).map_err(|problem| SqliteError::Header {
        path: path.to_path_buf(),
        problem,
    })
}

impl Database {
    /// Opens the database at `path` after checking its header. Writers that hold it
    /// locked are waited for up to `busy_timeout`.
    ///
    /// The connection may write SQLite's own bookkeeping (roll back a hot journal left by
    /// a crashed writer, as any reader must; create the `-shm` file), never data.
    ///
    /// # Errors
    /// Those of [`read_header`], or SQLite refusing to open the file.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Database, SqliteError> {
        read_header(path)?;
        // Read-write (as the sqlite3 shell opens it) so that a hot journal can be rolled
        // back; SQLite falls back to read-only when the file is not writable.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|source| SqliteError::Sqlite {
                path: path.to_path_buf(),
                what: "SQLite cannot open it".into(),
                source,
            })?;
        let db = Database {
            conn,
            path: path.to_path_buf(),
            busy_timeout,
        };
        db.conn
            .busy_timeout(busy_timeout)
            .map_err(|e| db.error("setting the busy timeout", e))?;
        db.conn
            .pragma_update(None, "query_only", true)
            .map_err(|e| db.error("PRAGMA query_only", e))?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Maps an SQLite error; "busy" and "locked" become [`SqliteError::Locked`].
    fn error(&self, what: &str, source: rusqlite::Error) -> SqliteError {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
        match source.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked) => SqliteError::Locked {
                path: self.path.clone(),
                waited: self.busy_timeout,
            },
            Some(rusqlite::ErrorCode::NotADatabase) => SqliteError::Header {
                path: self.path.clone(),
                problem: HeaderError::NotSqlite,
            },
            _ => SqliteError::Sqlite {
                path: self.path.clone(),
                what: what.to_string(),
                source,
            },
        }
    }

    /// `PRAGMA data_version`: changes whenever another connection has committed.
    ///
    /// # Errors
    /// SQLite's failure, or [`SqliteError::Locked`].
    pub fn data_version(&self) -> Result<i64, SqliteError> {
        self.conn
            .pragma_query_value(None, "data_version", |row| row.get(0))
            .map_err(|e| self.error("PRAGMA data_version", e))
    }

    /// Starts a read transaction and pins the committed state it sees, then returns that
    /// state's facts. Read its pages with [`Database::pages`]; [`Database::end`] (or
    /// dropping the database) releases it.
    ///
    /// # Errors
    /// [`SqliteError::Locked`] when a writer holds the database beyond the busy timeout,
    /// or SQLite's failure.
    pub fn begin(&self) -> Result<SnapshotFacts, SqliteError> {
        self.conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(|e| self.error("BEGIN", e))?;
        // The first read starts the transaction for real: from here on every read sees
        // the same committed state.
        let _: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .map_err(|e| self.error("reading the schema", e))?;
        let pragma = |name: &str| -> Result<i64, SqliteError> {
            self.conn
                .pragma_query_value(None, name, |row| row.get(0))
                .map_err(|e| self.error(&format!("PRAGMA {name}"), e))
        };
        let page_size = pragma("page_size")?;
        let page_count = pragma("page_count")?;
        let data_version = pragma("data_version")?;
        let journal_mode: String = self
            .conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .map_err(|e| self.error("PRAGMA journal_mode", e))?;
        Ok(SnapshotFacts {
            page_size: u32::try_from(page_size).unwrap_or(0),
            page_count: u64::try_from(page_count).unwrap_or(0),
            journal_mode,
            data_version,
            sqlite_version: rusqlite::version().to_string(),
        })
    }

    /// Reads the pinned state's pages in order with `read` (see [`PageReader`]).
    ///
    /// # Errors
    /// [`SqliteError::NoDbPage`] when SQLite lacks `sqlite_dbpage`, the error `read`
    /// returns, or a page out of order or of the wrong size.
    pub fn pages<T>(
        &self,
        facts: &SnapshotFacts,
        read: impl FnOnce(&mut PageReader<'_>) -> T,
    ) -> Result<T, SqliteError> {
        let mut stmt = match self
            .conn
            .prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")
        {
            Ok(stmt) => stmt,
            Err(e) if e.to_string().contains("no such table") => {
                return Err(SqliteError::NoDbPage {
                    path: self.path.clone(),
                })
            }
            Err(e) => return Err(self.error("reading sqlite_dbpage", e)),
        };
        let rows = stmt
            .query([])
            .map_err(|e| self.error("reading sqlite_dbpage", e))?;
        let mut reader = PageReader::new(rows, facts.page_size as usize, facts.page_count);
        let out = read(&mut reader);
        reader.finish(self)?;
        Ok(out)
    }

    /// Ends the read transaction.
    ///
    /// # Errors
    /// SQLite's failure.
    pub fn end(&self) -> Result<(), SqliteError> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| self.error("COMMIT", e))
    }
}

/// Runs `PRAGMA integrity_check` on the database at `path`: `Ok` when SQLite says `ok`.
///
/// Opening may create (and on close remove) the database's `-wal` and `-shm` files, as
/// any SQLite reader does; the data is not changed.
///
/// # Errors
/// [`SqliteError::Integrity`] with the first problem SQLite lists, or the errors of
/// [`Database::open`].
pub fn integrity_check(path: &Path) -> Result<(), SqliteError> {
    let db = Database::open(path, Duration::from_secs(5))?;
    let mut stmt = db
        .conn
        .prepare("PRAGMA integrity_check")
        .map_err(|e| db.error("PRAGMA integrity_check", e))?;
    let problems: Vec<String> = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| db.error("PRAGMA integrity_check", e))?;
    match problems.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        _ => Err(SqliteError::Integrity {
            path: path.to_path_buf(),
            count: problems.len(),
            first: problems.first().cloned().unwrap_or_default(),
        }),
    }
}
