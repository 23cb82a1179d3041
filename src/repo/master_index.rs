//! The in-memory union of every index file: blob id → where it is stored.
//!
//! Loaded once per command, read-only afterwards, shared across threads behind an `Arc`.
//! A blob stored twice (two hosts raced, or a retried run) keeps its first location;
//! either copy is valid.

use std::collections::HashMap;

use super::blob::BlobKind;
use super::id::{BlobId, IndexId, PackId};
use super::index::IndexPack;

/// Where one blob sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: PackId,
    pub kind: BlobKind,
    pub offset: u32,
    pub sealed_len: u32,
    pub raw_len: u32,
}

#[derive(Debug, Default)]
pub struct MasterIndex {
    blobs: HashMap<BlobId, BlobLocation>,
    packs: HashMap<PackId, u64>,
    files: Vec<IndexId>,
}

impl MasterIndex {
    pub fn add(&mut self, file: IndexId, packs: Vec<IndexPack>) {
        self.files.push(file);
        for pack in packs {
            self.packs.insert(pack.id, pack.len);
            for e in pack.entries {
                self.blobs.entry(e.id).or_insert(BlobLocation {
                    pack: pack.id,
                    kind: e.kind,
                    offset: e.offset,
                    sealed_len: e.sealed_len,
                    raw_len: e.raw_len,
                });
            }
        }
    }

    pub fn get(&self, id: &BlobId) -> Option<&BlobLocation> {
        self.blobs.get(id)
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }

    /// Every pack some index names, with its recorded length.
    pub fn packs(&self) -> &HashMap<PackId, u64> {
        &self.packs
    }

    pub fn index_files(&self) -> &[IndexId] {
        &self.files
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }
}
