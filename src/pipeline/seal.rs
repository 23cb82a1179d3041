//! Compress and encrypt: the CPU stage, on a fixed pool of OS threads.
//!
//! Each worker owns one zstd context (reused for every blob) and reads [`NewBlob`]s from a
//! bounded crossbeam channel; it drops the chunks (returning their read budget) as soon as
//! the sealed copy exists, then hands the sealed blob or group to the packer.

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use crate::repo::blob::{BlobKind, Sealer};
use crate::repo::crypto::Keys;
use crate::repo::id::BlobId;

/// Blobs seen for the first time in this run, on their way to be sealed.
pub enum NewBlob {
    /// One blob, sealed alone.
    One {
        kind: BlobKind,
        id: BlobId,
        data: Bytes,
    },
    /// Neighbouring data blobs (pages of one file), sealed as one group.
    Group(Vec<(BlobId, Bytes)>),
}

/// A sealed blob or group, ready for a pack.
pub struct SealedBlob {
    pub sealed: Vec<u8>,
    pub content: SealedContent,
}

/// What a sealed unit holds, as its pack entries will list it.
pub enum SealedContent {
    One {
        kind: BlobKind,
        id: BlobId,
        raw_len: u32,
    },
    Group(Vec<(BlobId, u32)>),
}

impl SealedContent {
    /// Pack entries this unit takes.
    pub fn entries(&self) -> usize {
        match self {
            SealedContent::One { .. } => 1,
            SealedContent::Group(members) => members.len(),
        }
    }
}

/// Starts `workers` sealing threads. They stop when `input` is closed and drained, or
/// when `output` is closed (a later stage failed).
///
/// # Errors
/// When zstd rejects `level` or a thread cannot be spawned.
pub fn spawn_sealers(
    workers: usize,
    keys: &Keys,
    level: i32,
    input: Receiver<NewBlob>,
    output: Sender<SealedBlob>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    (0..workers.max(1))
        .map(|n| {
            let mut sealer = Sealer::new(keys.clone(), level)?;
            let input = input.clone();
            let output = output.clone();
            std::thread::Builder::new()
                .name(format!("stowage-seal-{n}"))
                .spawn(move || {
                    for blob in input {
                        // The chunks are dropped (their read budget returned) as soon as
                        // the sealed copy exists.
                        let out = match blob {
                            NewBlob::One { kind, id, data } => SealedBlob {
                                sealed: sealer.seal(kind, &id, &data),
                                content: SealedContent::One {
                                    kind,
                                    id,
                                    raw_len: data.len() as u32,
                                },
                            },
                            NewBlob::Group(members) => SealedBlob {
                                sealed: sealer.seal_group(&members),
                                content: SealedContent::Group(
                                    members
                                        .iter()
                                        .map(|(id, data)| (*id, data.len() as u32))
                                        .collect(),
                                ),
                            },
                        };
                        if output.send(out).is_err() {
                            return;
                        }
                    }
                })
        })
        .collect()
}
