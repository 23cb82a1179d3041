//! Where backup bytes come from. A source reads its input and pushes named byte streams
//! and directory trees into a [`BackupSession`]; it knows nothing of packs or stores.
//!
//! Every source ends by naming one root tree, so every snapshot restores the same way.

pub mod child;
pub(crate) mod files;
pub mod pg_base;
pub mod pg_dump;
pub mod sqlite;
mod stdin;
pub mod vault;

pub use files::FilesSource;
pub use pg_base::{PgBaseOptions, PgBaseSource};
pub use pg_dump::PgDumpSource;
pub use sqlite::SqliteSource;
pub use stdin::StdinSource;
pub use vault::VaultSource;

use crate::pipeline::{BackupSession, PipelineError, StreamContent};
use crate::repo::id::BlobId;
use crate::repo::snapshot::SnapshotStats;
use crate::repo::tree::{Node, NodeKind};

/// What a source reports once its input is consumed.
#[derive(Debug)]
pub struct SourceOutcome {
    pub tree: BlobId,
    pub report: SourceReport,
}

/// What a source noticed on the way.
#[derive(Debug, Default)]
pub struct SourceReport {
    /// Counts the source keeps (files, dirs, symlinks, skipped).
    pub stats: SnapshotStats,
    pub paths: Vec<String>,
    /// Problems that did not stop the backup (an unreadable file); the snapshot is kept
    /// but the command exits non-zero.
    pub warnings: Vec<String>,
    /// Kind-specific facts learned while reading (a dump's server version), added to the
    /// snapshot's `source` object.
    pub facts: serde_json::Map<String, serde_json::Value>,
}

/// A backup source.
pub trait Source: Send {
    /// The snapshot kind (`stdin`, `files`, …).
    fn kind(&self) -> &'static str;

    /// Reads the whole input into `session`.
    ///
    /// # Errors
    /// A read or pipeline failure that makes the backup unusable.
    fn run(&mut self, session: &mut BackupSession) -> Result<SourceOutcome, PipelineError>;
}

/// A file node named `name` holding a stream's content as the hasher gave it (its blobs,
/// or for a long stream its content lists).
pub(crate) fn stream_node(name: &[u8], content: StreamContent) -> Node {
    Node {
        size: content.size,
        content: content.blobs,
        content_lists: content.lists,
        ..Node::new(name, NodeKind::File)
    }
}
