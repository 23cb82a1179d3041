//! Hash and dedup: one thread that names every chunk and decides whether it is new.
//!
//! It runs beside the reader (which cuts) so that cutting and hashing, the two costs every
//! byte pays even when nothing is new, overlap instead of adding up. Jobs arrive in stream
//! order, so each stream's blob list is built here in order and handed back when the
//! stream's end marker arrives. This thread alone owns the set of ids seen in this run; the
//! index of earlier runs is shared read-only.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use crate::repo::blob::BlobKind;
use crate::repo::crypto::Keys;
use crate::repo::id::BlobId;
use crate::repo::master_index::MasterIndex;

use super::seal::NewBlob;

/// One stream's content as stored: its blobs in order and its length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamContent {
    pub blobs: Vec<BlobId>,
    pub size: u64,
}

/// Work for the hasher, in the order the source produced it.
pub enum HashJob {
    /// The next chunk of the current stream.
    Chunk(Bytes),
    /// The current stream ended: reply with its content and start a new one.
    EndStream(Sender<StreamContent>),
    /// A whole blob whose id the sender computed already (trees are small and their id
    /// is needed at once by the parent tree).
    Blob {
        kind: BlobKind,
        id: BlobId,
        data: Bytes,
    },
}

/// What the hasher counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct HashStats {
    pub blobs: u64,
    pub blobs_new: u64,
    pub bytes_new: u64,
}

struct Dedup {
    index: Arc<MasterIndex>,
    seen: HashSet<BlobId>,
    stats: HashStats,
    output: Sender<NewBlob>,
}

impl Dedup {
    /// Forwards a blob not stored before; false when the sealers have gone away.
    fn offer(&mut self, kind: BlobKind, id: BlobId, data: Bytes) -> bool {
        self.stats.blobs += 1;
        if self.index.contains(&id) || !self.seen.insert(id) {
            return true;
        }
        self.stats.blobs_new += 1;
        self.stats.bytes_new += data.len() as u64;
        self.output.send(NewBlob { kind, id, data }).is_ok()
    }
}

/// Runs until `input` closes or the sealers stop; returns the counts.
pub fn run_hasher(
    keys: Keys,
    index: Arc<MasterIndex>,
    input: Receiver<HashJob>,
    output: Sender<NewBlob>,
) -> HashStats {
    let mut dedup = Dedup {
        index,
        seen: HashSet::new(),
        stats: HashStats::default(),
        output,
    };
    let mut current = StreamContent::default();
    for job in input {
        let alive = match job {
            HashJob::Chunk(data) => {
                let id = keys.blob_id(&data);
                current.size += data.len() as u64;
                current.blobs.push(id);
                dedup.offer(BlobKind::Data, id, data)
            }
            HashJob::EndStream(reply) => {
                // A dropped reply only means the source gave up waiting.
                let _ = reply.send(std::mem::take(&mut current));
                true
            }
            HashJob::Blob { kind, id, data } => dedup.offer(kind, id, data),
        };
        if !alive {
            break;
        }
    }
    dedup.stats
}
