//! The packer: gathers sealed blobs into packs of the repository's target size.
//!
//! One thread owns the pack being filled. A finished pack is sealed (trailer), hashed for
//! its name, and handed to the uploader; the packer never waits for the upload itself,
//! only for room in the bounded queue to it.

use bytes::Bytes;
use crossbeam_channel::Receiver;
use tokio::sync::mpsc;

use crate::repo::crypto::Keys;
use crate::repo::id::{content_hash, PackId};
use crate::repo::pack::{PackBuilder, PackEntry};

use super::seal::{SealedBlob, SealedContent};

/// A finished pack on its way to the store.
pub struct FinishedPack {
    pub id: PackId,
    pub bytes: Bytes,
    pub entries: Vec<PackEntry>,
}

/// Runs the packer until `input` closes; returns early if the uploader has gone away.
pub fn run_packer(
    keys: Keys,
    target_bytes: usize,
    input: Receiver<SealedBlob>,
    output: mpsc::Sender<FinishedPack>,
) {
    let mut builder = PackBuilder::new(target_bytes + target_bytes / 8);
    let finish = |builder: PackBuilder| {
        let (bytes, entries) = builder.finish(&keys);
        FinishedPack {
            id: PackId(content_hash(&bytes)),
            bytes: Bytes::from(bytes),
            entries,
        }
    };
    for blob in input {
        let entries = blob.content.entries();
        let full = !builder.is_empty()
            && (builder.len() + blob.sealed.len() > target_bytes
                || !builder.fits(blob.sealed.len(), entries));
        if full {
            let done = std::mem::replace(
                &mut builder,
                PackBuilder::new(target_bytes + target_bytes / 8),
            );
            if output.blocking_send(finish(done)).is_err() {
                return;
            }
        }
        match &blob.content {
            SealedContent::One { kind, id, raw_len } => {
                builder.add(*kind, *id, *raw_len, &blob.sealed)
            }
            SealedContent::Group(members) => builder.add_group(members, &blob.sealed),
        }
    }
    if !builder.is_empty() {
        let _ = output.blocking_send(finish(builder));
    }
}
