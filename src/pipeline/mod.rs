//! The backup pipeline: split → hash → dedup → compress → encrypt → pack → upload.
//!
//! Why this shape: every byte of a backup is touched by CPU-heavy steps (chunking,
//! hashing, compression, encryption) and by slow I/O (the store). CPU steps run on OS
//! threads fed by bounded `crossbeam-channel` queues; store I/O runs on tokio; nothing
//! CPU-heavy runs on an async worker. Data flows one way and each stage owns its state.
//!
//! Invariants:
//! 1. Bytes held in read buffers never exceed the read budget
//!    (`in_flight_bytes` minus the packs in memory); every queue is bounded.
//! 2. A chunk is a `Bytes::slice` of a read buffer; only sealing allocates new bytes.
//!    Reading and cutting (the source's thread) overlap with hashing (the hasher's).
//! 3. A pack is indexed only after it is durable; the session returns only after the
//!    index is durable; the snapshot is written by the caller after that.
//! 4. The first stage error stops the rest and is the one reported.

mod budget;
mod buffers;
mod hash;
mod pack;
mod read;
mod seal;
mod session;
pub mod split;
mod upload;

pub use budget::Budget;
pub use buffers::ReadBuffers;
pub use hash::StreamContent;
pub use read::{ChunkReader, DEFAULT_BUFFER_BYTES};
pub use session::{BackupSession, PendingContent, Progress, PAGE_RUN_BYTES};

use crate::repo::RepoError;

/// Knobs for one run; defaults suit a 2-core machine with the default 128 MiB cap.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Sealing (compress + encrypt) threads.
    pub workers: usize,
    /// Cap on bytes held by the pipeline: read buffers plus packs in memory.
    pub in_flight_bytes: usize,
    /// Packs uploaded at once.
    pub uploads: usize,
    /// zstd level for new blobs.
    pub compression_level: i32,
    /// Size of each read buffer.
    pub buffer_bytes: usize,
}

/// The default cap on in-flight bytes.
pub const DEFAULT_IN_FLIGHT_BYTES: usize = 128 * 1024 * 1024;

impl Settings {
    pub fn new(compression_level: i32) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Settings {
            workers: cores,
            in_flight_bytes: DEFAULT_IN_FLIGHT_BYTES,
            uploads: 2,
            compression_level,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("reading {what}")]
    Read {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("cannot start the pipeline")]
    Start(#[source] std::io::Error),
    #[error("blob of {len} bytes exceeds the format's 1 GiB limit")]
    TooLarge { len: usize },
    #[error("pipeline stage failed: {0}")]
    Stage(String),
    #[error("the pipeline stopped before the backup finished")]
    Stopped,
    /// The source's own failure (a database refusing the backup, say).
    #[error(transparent)]
    Source(Box<dyn std::error::Error + Send + Sync>),
}
