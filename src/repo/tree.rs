//! Trees: one JSON blob per directory, listing its entries.
//!
//! A snapshot names a root tree; a directory entry names its subtree; a file entry lists
//! its content blobs in order. Unchanged directories serialize to the same bytes and so
//! dedup like any other blob. Names are bytes on Unix: a name that is not UTF-8 is kept
//! exactly in `name_hex` (and shown lossily in `name`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use serde::{Deserialize, Serialize};

use super::id::BlobId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_hex: Option<String>,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// File size in bytes (0 for directories and symlinks).
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<BlobId>,
    /// For files of more than [`INLINE_CONTENT`] blobs, instead of `content`: data blobs
    /// each holding up to [`LIST_IDS`] content ids (see [`decode_list`]), so that a tree
    /// stays small whatever the size of its files, and an unchanged stretch of a large
    /// file's list dedups against the last backup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content_lists: Vec<BlobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<BlobId>,
    /// Symlink target (lossy when not UTF-8; exact bytes in `target_hex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hex: Option<String>,
}

impl Node {
    /// A node named by the exact bytes `name`, private (0600 files, 0700 others), owned by
    /// root, timestamped now, empty; sources set what they know.
    pub fn new(name: &[u8], kind: NodeKind) -> Node {
        let (name, name_hex) = text_and_hex(name.to_vec());
        Node {
            name,
            name_hex,
            kind,
            mode: if kind == NodeKind::File { 0o600 } else { 0o700 },
            mtime_ns: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
            uid: 0,
            gid: 0,
            size: 0,
            content: Vec::new(),
            content_lists: Vec::new(),
            subtree: None,
            target: None,
            target_hex: None,
        }
    }
}

/// Most content ids a node lists inline; longer contents go to list blobs.
pub const INLINE_CONTENT: usize = 1024;
/// Content ids per list blob (2 MiB of ids: 512 MiB of 8 KiB pages).
pub const LIST_IDS: usize = 65536;

/// A list blob's bytes: the ids back to back.
pub fn encode_list(ids: &[BlobId]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.0).collect()
}

/// The ids of a list blob.
///
/// # Errors
/// When the length is not a whole number (1 to [`LIST_IDS`]) of 32-byte ids.
pub fn decode_list(raw: &[u8]) -> Result<Vec<BlobId>, String> {
    if raw.is_empty() || raw.len() % 32 != 0 || raw.len() / 32 > LIST_IDS {
        return Err(format!(
            "a content list of {} bytes is not 1 to {LIST_IDS} ids of 32 bytes",
            raw.len()
        ));
    }
    Ok(raw
        .chunks_exact(32)
        .map(|c| {
            let mut id = [0u8; 32];
            id.copy_from_slice(c);
            BlobId(id)
        })
        .collect())
}

/// Text for bytes that may not be UTF-8: (lossy display text, exact hex when needed).
pub fn text_and_hex(raw: Vec<u8>) -> (String, Option<String>) {
    match String::from_utf8(raw) {
        Ok(text) => (text, None),
        Err(e) => {
            let raw = e.into_bytes();
            (
                String::from_utf8_lossy(&raw).into_owned(),
                Some(hex::encode(&raw)),
            )
        }
    }
}

fn exact(text: &str, hex_form: &Option<String>) -> Option<OsString> {
    match hex_form {
        None => Some(OsString::from(text)),
        Some(h) => hex::decode(h).ok().map(OsString::from_vec),
    }
}

impl Node {
    /// The exact name, or `None` when `name_hex` is not valid hex.
    pub fn os_name(&self) -> Option<OsString> {
        exact(&self.name, &self.name_hex)
    }

    /// The exact symlink target.
    pub fn os_target(&self) -> Option<OsString> {
        self.target
            .as_ref()
            .and_then(|t| exact(t, &self.target_hex))
    }
}

/// A directory listing, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// # Errors
    /// The JSON error when `raw` is not a tree.
    pub fn decode(raw: &[u8]) -> Result<Tree, serde_json::Error> {
        serde_json::from_slice(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_lists_round_trip_and_refuse_bad_lengths() {
        let ids: Vec<BlobId> = (0..3u8).map(|n| BlobId([n; 32])).collect();
        assert_eq!(decode_list(&encode_list(&ids)).unwrap(), ids);
        assert!(decode_list(&[]).is_err());
        assert!(decode_list(&[0; 33]).is_err());
        assert!(decode_list(&vec![0; 32 * (LIST_IDS + 1)]).is_err());
    }
}
