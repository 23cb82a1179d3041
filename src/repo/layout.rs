//! Where each kind of object lives in the store (the tree in `formats/REPOSITORY.md`).

use crate::store::ObjectKey;

use super::id::{IndexId, KeyId, PackId, SnapshotId};

pub const CONFIG: &str = "config";
pub const KEYS: &str = "keys/";
pub const DATA: &str = "data/";
pub const INDEX: &str = "index/";
pub const SNAPSHOTS: &str = "snapshots/";

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
