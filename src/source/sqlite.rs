//! A live SQLite database, read page by page inside one read transaction.
//!
//! ```text
//! check header ─► open (busy timeout) ─► BEGIN + read: one committed state pinned
//!   ─► sqlite_dbpage pages 1..N ─► add_pages (one blob a page) ─► COMMIT ─► tree
//! ```
//! Every page is its own blob, so tomorrow's backup of a database in which 1% of the
//! pages changed stores about 1%; new neighbouring pages are compressed together
//! (`BackupSession::add_pages`). The root tree holds one file, named as the database
//! file is, with its mode, owner and time. Writers go on meanwhile: in WAL mode they
//! are not blocked at all; in rollback mode their commits wait for the read (as they
//! would for `sqlite3 .backup`), so their busy timeout must outlast the backup.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::pipeline::{BackupSession, PipelineError};
use crate::repo::blob::BlobKind;
use crate::repo::tree::{NodeKind, Tree};
use crate::sqlite::{Database, Header, SnapshotFacts, SqliteError};

use super::files::base_node;
use super::{Source, SourceOutcome, SourceReport};

/// The snapshot kind.
pub const KIND: &str = "sqlite";

pub struct SqliteSource {
    path: PathBuf,
    busy_timeout: Duration,
}

impl SqliteSource {
    pub fn new(path: PathBuf, busy_timeout: Duration) -> Self {
        SqliteSource { path, busy_timeout }
    }

    fn copy(
        &self,
        db: &Database,
        session: &mut BackupSession,
    ) -> Result<SourceOutcome, PipelineError> {
        let facts = db.begin()?;
        let what = self.path.display().to_string();
        let size = facts.page_count * u64::from(facts.page_size);
        let (pending, header) = db.pages(&facts, |reader| {
            let pending =
                session.add_pages(&mut *reader, facts.page_size as usize, Some(size), &what);
            (pending, reader.header())
        })?;
        let content = session.wait(pending?)?;
        db.end()?;
        let meta = std::fs::metadata(&self.path).map_err(|source| PipelineError::Read {
            what: what.clone(),
            source,
        })?;
        let name = self
            .path
            .file_name()
            .map_or(b"db".as_slice(), |n| n.as_bytes());
        let mut node = base_node(name, &meta, NodeKind::File);
        node.size = content.size;
        node.content = content.blobs;
        node.content_lists = content.lists;
        let tree = Tree { nodes: vec![node] };
        let tree = session.add_blob(BlobKind::Tree, Bytes::from(tree.encode()))?;
        let mut report = SourceReport::default();
        report.stats.files = 1;
        let absolute = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        report.paths.push(absolute.display().to_string());
        report.facts = source_facts(&absolute, &facts, header.as_ref());
        Ok(SourceOutcome { tree, report })
    }
}

/// The snapshot's `source` object (formats/REPOSITORY.md §11).
fn source_facts(path: &Path, facts: &SnapshotFacts, header: Option<&Header>) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("path".into(), json!(path.display().to_string()));
    map.insert("page_size".into(), json!(facts.page_size));
    map.insert("page_count".into(), json!(facts.page_count));
    map.insert("journal_mode".into(), json!(facts.journal_mode));
    map.insert("data_version".into(), json!(facts.data_version));
    map.insert("sqlite_version".into(), json!(facts.sqlite_version));
    if let Some(h) = header {
        map.insert("file_change_counter".into(), json!(h.change_counter));
        map.insert("schema_cookie".into(), json!(h.schema_cookie));
        map.insert("text_encoding".into(), json!(h.text_encoding));
        map.insert("written_by".into(), json!(h.sqlite_version_number));
    }
    map
}

impl Source for SqliteSource {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run(&mut self, session: &mut BackupSession) -> Result<SourceOutcome, PipelineError> {
        let db = Database::open(&self.path, self.busy_timeout)?;
        self.copy(&db, session)
    }
}

impl From<SqliteError> for PipelineError {
    fn from(e: SqliteError) -> Self {
        PipelineError::Source(Box::new(e))
    }
}
