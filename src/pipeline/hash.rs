//! Hash and dedup: one thread that names every chunk and decides whether it is new.
//!
//! It runs beside the reader (which cuts) so that cutting and hashing, the two costs every
//! byte pays even when nothing is new, overlap instead of adding up. Jobs arrive in stream
//! order, so each stream's blob list is built here in order and handed back when the
//! stream's end marker arrives. This thread alone owns the set of ids seen in this run; the
//! index of earlier runs is shared read-only.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender};

use crate::repo::blob::{BlobKind, MAX_GROUP_MEMBERS};
use crate::repo::crypto::Keys;
use crate::repo::id::BlobId;
use crate::repo::master_index::MasterIndex;
use crate::repo::tree::{encode_list, INLINE_CONTENT, LIST_IDS};

use super::seal::NewBlob;

/// New pages of one stream gathered into a group before sealing: 32 PostgreSQL pages.
/// Compressed together they come close to whole-file compression; a restore that needs
/// one of them decompresses at most this much.
pub const GROUP_BYTES: usize = 256 * 1024;

/// One stream's content as stored: its blobs in order and its length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamContent {
    /// The content blobs in order, when there are at most [`INLINE_CONTENT`] of them;
    /// otherwise empty, and `lists` names them.
    pub blobs: Vec<BlobId>,
    /// List blobs naming the content blobs of a long stream, [`LIST_IDS`] at a time
    /// (see `repo::tree`). Written as the stream goes, so a stream of any length holds at
    /// most one list's worth of ids in memory.
    pub lists: Vec<BlobId>,
    pub size: u64,
}

/// Work for the hasher, in the order the source produced it.
pub enum HashJob {
    /// The next chunk of the current stream.
    Chunk(Bytes),
    /// The next run of pages of the current stream: each `page` bytes is a blob of its
    /// own (the last may be shorter); the new ones of the stream are sealed together in
    /// groups of [`GROUP_BYTES`].
    Pages { data: Bytes, page: usize },
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
    /// Counts a blob and claims it for this run; false when it is stored already.
    fn is_new(&mut self, id: BlobId, len: usize) -> bool {
        self.stats.blobs += 1;
        if self.index.contains(&id) || !self.seen.insert(id) {
            return false;
        }
        self.stats.blobs_new += 1;
        self.stats.bytes_new += len as u64;
        true
    }

    /// Forwards a blob not stored before; false when the sealers have gone away.
    fn offer(&mut self, kind: BlobKind, id: BlobId, data: Bytes) -> bool {
        !self.is_new(id, data.len()) || self.output.send(NewBlob::One { kind, id, data }).is_ok()
    }

    /// Stores `current`'s pending ids as one list blob.
    fn flush_list(&mut self, keys: &Keys, current: &mut StreamContent) -> bool {
        if current.blobs.is_empty() {
            return true;
        }
        let list = Bytes::from(encode_list(&current.blobs));
        current.blobs.clear();
        let id = keys.blob_id(&list);
        current.lists.push(id);
        self.offer(BlobKind::Data, id, list)
    }

    /// Forwards the pages gathered so far, together when there are several.
    fn flush_pages(&mut self, group: &mut PageGroup) -> bool {
        let mut members = std::mem::take(&mut group.members);
        let data = std::mem::take(&mut group.data).freeze();
        let blob = match members.len() {
            0 => return true,
            1 => NewBlob::One {
                kind: BlobKind::Data,
                id: members[0].0,
                data,
            },
            _ => {
                let mut at = 0;
                NewBlob::Group(
                    members
                        .drain(..)
                        .map(|(id, len)| {
                            at += len;
                            (id, data.slice(at - len..at))
                        })
                        .collect(),
                )
            }
        };
        self.output.send(blob).is_ok()
    }
}

/// New pages of the current stream waiting to be sealed together. They are copied out
/// of the read buffers: a stream with one changed page in every few MiB would otherwise
/// pin a whole read buffer per page and starve the reader.
#[derive(Default)]
struct PageGroup {
    members: Vec<(BlobId, usize)>,
    data: BytesMut,
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
    let mut group = PageGroup::default();
    for job in input {
        let alive = match job {
            HashJob::Chunk(data) => {
                let id = keys.blob_id(&data);
                current.size += data.len() as u64;
                current.blobs.push(id);
                let listed =
                    current.blobs.len() < LIST_IDS || dedup.flush_list(&keys, &mut current);
                listed && dedup.offer(BlobKind::Data, id, data)
            }
            HashJob::Pages { data, page } => {
                let mut alive = true;
                for start in (0..data.len()).step_by(page.max(1)) {
                    let piece = &data[start..data.len().min(start + page)];
                    let id = keys.blob_id(piece);
                    current.size += piece.len() as u64;
                    current.blobs.push(id);
                    if current.blobs.len() >= LIST_IDS {
                        alive &= dedup.flush_list(&keys, &mut current);
                    }
                    if dedup.is_new(id, piece.len()) {
                        group.members.push((id, piece.len()));
                        group.data.extend_from_slice(piece);
                        if group.data.len() >= GROUP_BYTES
                            || group.members.len() >= MAX_GROUP_MEMBERS
                        {
                            alive &= dedup.flush_pages(&mut group);
                        }
                    }
                }
                alive
            }
            HashJob::EndStream(reply) => {
                if !dedup.flush_pages(&mut group) {
                    break;
                }
                let long = !current.lists.is_empty() || current.blobs.len() > INLINE_CONTENT;
                if long && !dedup.flush_list(&keys, &mut current) {
                    break;
                }
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
