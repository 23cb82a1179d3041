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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<BlobId>,
    /// Symlink target (lossy when not UTF-8; exact bytes in `target_hex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hex: Option<String>,
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
