//! Snapshots: one sealed JSON file per completed backup.
//!
//! Written last, after every pack and index it depends on is durable, so a snapshot that
//! can be listed can be restored. `source` carries what a particular kind of backup needs
//! to record (a PostgreSQL base backup's LSNs, say) without changing this type.

use serde::{Deserialize, Serialize};

use super::id::BlobId;

pub const SNAPSHOT_VERSION: u32 = 1;

/// What one backup run read and wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Special files (devices, sockets, FIFOs) and unreadable entries skipped with a warning.
    pub skipped: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Plaintext bytes of blobs this run added to the repository.
    pub bytes_new: u64,
    /// Bytes this run added to the store (compressed, encrypted, with pack overhead).
    pub bytes_stored: u64,
    pub blobs: u64,
    pub blobs_new: u64,
}

impl SnapshotStats {
    /// Bytes read per byte stored; infinity is reported as `bytes_read` when nothing was new.
    pub fn dedup_ratio(&self) -> f64 {
        if self.bytes_stored == 0 {
            self.bytes_read as f64
        } else {
            self.bytes_read as f64 / self.bytes_stored as f64
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    /// What was backed up: `stdin`, `files`, and later `pg-dump`, `pg-base`, `sqlite`, `vault`.
    pub kind: String,
    /// A name to find it by (the `--name` of a stream, or the first path).
    pub name: String,
    pub host: String,
    pub user: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    pub start: chrono::DateTime<chrono::Utc>,
    pub end: chrono::DateTime<chrono::Utc>,
    pub tree: BlobId,
    pub stats: SnapshotStats,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub source: serde_json::Map<String, serde_json::Value>,
}

impl Snapshot {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// # Errors
    /// A message when `raw` is not a snapshot of a supported version.
    pub fn decode(raw: &[u8]) -> Result<Snapshot, String> {
        let snap: Snapshot = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
        if snap.version != SNAPSHOT_VERSION {
            return Err(format!("unsupported snapshot version {}", snap.version));
        }
        Ok(snap)
    }
}
