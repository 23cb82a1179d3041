//! Where each kind of object lives in the store (the tree in `formats/REPOSITORY.md`).

use crate::store::ObjectKey;

use super::id::{IndexId, KeyId, PackId, SnapshotId};

pub const CONFIG: &str = "config";
pub const KEYS: &str = "keys/";
pub const DATA: &str = "data/";
pub const INDEX: &str = "index/";
pub const SNAPSHOTS: &str = "snapshots/";
pub const CLUSTERS: &str = "clusters/";
pub const WAL: &str = "wal/";
pub const WAL_INDEX: &str = "wal-index/";

fn key(text: String) -> ObjectKey {
    // Every caller passes a fixed prefix and a hex id: always a valid key.
    ObjectKey::new(text).unwrap_or_else(|bad| unreachable!("generated key {bad} is invalid"))
}

pub fn config() -> ObjectKey {
    key(CONFIG.into())
}

/// `data/<first two hex digits>/<pack id>`: 256 directories keep listings short.
pub fn pack(id: &PackId) -> ObjectKey {
    let hex = id.to_string();
    key(format!("{DATA}{}/{hex}", &hex[..2]))
}

pub fn index(id: &IndexId) -> ObjectKey {
    key(format!("{INDEX}{id}"))
}

pub fn snapshot(id: &SnapshotId) -> ObjectKey {
    key(format!("{SNAPSHOTS}{id}"))
}

pub fn key_file(id: &KeyId) -> ObjectKey {
    key(format!("{KEYS}{id}"))
}

/// `clusters/<name>`: the identity a cluster name is bound to.
pub fn cluster(name: &str) -> ObjectKey {
    key(format!("{CLUSTERS}{name}"))
}

/// `wal/<cluster>/`: every archived file of one cluster.
pub fn wal_prefix(cluster: &str) -> String {
    format!("{WAL}{cluster}/")
}

/// `wal/<cluster>/<TLI as 8 hex digits>/<file name>`: one archived WAL file.
pub fn wal(cluster: &str, timeline: u32, name: &str) -> ObjectKey {
    key(format!("{WAL}{cluster}/{timeline:08X}/{name}"))
}

/// `wal-index/<cluster>/`: the summaries of one cluster's segments.
pub fn wal_summary_prefix(cluster: &str) -> String {
    format!("{WAL_INDEX}{cluster}/")
}

/// `wal-index/<cluster>/<TLI>/<file name>`: what one segment or `.partial` file holds
/// (LSNs, commit times).
pub fn wal_summary(cluster: &str, timeline: u32, name: &str) -> ObjectKey {
    key(format!("{WAL_INDEX}{cluster}/{timeline:08X}/{name}"))
}
