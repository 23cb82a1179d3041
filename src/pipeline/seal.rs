//! Compress and encrypt: the CPU stage, on a fixed pool of OS threads.
//!
//! Each worker owns one zstd context (reused for every blob) and reads [`NewBlob`]s from a
//! bounded crossbeam channel; it drops the chunk (returning its read budget) as soon as
//! the sealed copy exists, then hands the sealed blob to the packer.

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use crate::repo::blob::{BlobKind, Sealer};
use crate::repo::crypto::Keys;
use crate::repo::id::BlobId;

/// A blob seen for the first time in this run, on its way to be sealed.
pub struct NewBlob {
    pub kind: BlobKind,
    pub id: BlobId,
    pub data: Bytes,
}

/// A sealed blob, ready for a pack.
pub struct SealedBlob {
    pub kind: BlobKind,
    pub id: BlobId,
    pub raw_len: u32,
    pub sealed: Vec<u8>,
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
                        let sealed = sealer.seal(blob.kind, &blob.id, &blob.data);
                        let raw_len = blob.data.len() as u32;
                        drop(blob.data);
                        let out = SealedBlob {
                            kind: blob.kind,
                            id: blob.id,
                            raw_len,
                            sealed,
                        };
                        if output.send(out).is_err() {
                            return;
                        }
                    }
                })
        })
        .collect()
}
