//! Where repository objects live: one narrow async trait and its implementations.
//!
//! The store knows nothing of packs, indexes or snapshots: it moves opaque bytes under
//! [`ObjectKey`]s. Everything above it is written against [`ObjectStore`], sized for S3
//! (ranged reads, create-only writes, listing by prefix), so a local directory and a
//! bucket behave the same.
//!
//! Invariants every implementation keeps:
//! 1. A `put` that returns `Ok` is durable: a crash afterwards never loses the object.
//! 2. An object is either absent or complete; readers never see a partial object.
//! 3. [`PutMode::Create`] never replaces an existing object and reports
//!    [`StoreError::AlreadyExists`] instead.
//! 4. "Not found" is [`StoreError::NotFound`], never a generic I/O error, because callers
//!    give it meaning (PostgreSQL's `restore_command` contract, for one).

mod key;
mod local;
mod open;
pub mod s3;

pub use key::ObjectKey;
pub use local::LocalStore;
pub use open::{open_store, StoreOptions};

use std::ops::Range;
use std::path::PathBuf;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

/// How a `put` treats an object that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Fail with [`StoreError::AlreadyExists`] if the key exists (write-once objects).
    Create,
    /// Replace whatever is there.
    Overwrite,
}

/// What a listing says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: ObjectKey,
    pub size: u64,
}

/// Errors from an object store. Every variant names the key (or location) at fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {key} not found")]
    NotFound { key: ObjectKey },
    #[error("object {key} already exists")]
    AlreadyExists { key: ObjectKey },
    #[error("object {key}: range {start}..{end} is outside its {size} bytes")]
    RangeOutOfBounds {
        key: ObjectKey,
        start: u64,
        end: u64,
        size: u64,
    },
    #[error("{path}: {op} failed")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("repository location {location:?} is not usable: {reason}")]
    BadLocation { location: String, reason: String },
    /// The store refused who we are or what we asked: credentials, permissions.
    #[error("{location}: access refused: {reason}")]
    Denied { location: String, reason: String },
    /// A remote store failed a request (after its retries, when `retryable`).
    #[error("{op} {target}: {detail}")]
    Remote {
        op: &'static str,
        target: String,
        detail: String,
        retryable: bool,
    },
}

impl StoreError {
    /// Whether trying the same call again could succeed (a transient fault, not a verdict).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            StoreError::Remote { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// True for [`StoreError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

/// A write that was started and never finished: a multipart upload left by a killed
/// process, or a local temporary file. Harmless to readers (no object refers to it),
/// but it holds space until [`ObjectStore::abort_incomplete`] removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteUpload {
    /// The key the write was for, relative to the store's root.
    pub key: String,
    /// What the store needs to abort it (an S3 upload id, a temporary file name).
    pub id: String,
    /// When it was started, if the store says.
    pub started: Option<SystemTime>,
}

/// The contract between the repository and wherever its bytes live.
///
/// Kept to what every backend can do natively; conveniences belong in callers.
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores `body` under `key`, durably, honouring `mode`.
    async fn put(&self, key: &ObjectKey, body: Bytes, mode: PutMode) -> Result<(), StoreError>;

    /// Reads a whole object.
    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StoreError>;

    /// Reads `range` of an object. A range past the end is an error, not a short read.
    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError>;

    /// The object's size, or [`StoreError::NotFound`].
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError>;

    /// Every object whose key starts with `prefix` (a directory-like prefix such as `snapshots/`).
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;

    /// Removes an object; removing an absent object is not an error.
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError>;

    /// Writes that were started and never finished (see [`IncompleteUpload`]).
    async fn list_incomplete(&self) -> Result<Vec<IncompleteUpload>, StoreError>;

    /// Discards one unfinished write; one already gone is not an error.
    async fn abort_incomplete(&self, upload: &IncompleteUpload) -> Result<(), StoreError>;

    /// A human-readable location for messages (`/srv/backup`, `s3://bucket/prefix`).
    fn location(&self) -> String;
}
