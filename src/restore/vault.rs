//! A `vault` snapshot back to a raft snapshot file, or into Vault's restore endpoint.
//!
//! ```text
//! repository ─► meta.json, SHA256SUMS(.sealed): read whole (≤ 8 KiB each)
//!            └► state.bin: blobs fetched in order (as `cat`) ─► SnapWriter (blocking thread) ─► file | POST body
//! ```
//! The writer checks `meta.json` and `state.bin` against the stored `SHA256SUMS` as it
//! writes them (see [`crate::vault::rebuild`]): a damaged snapshot never becomes a complete
//! file (the temporary file is removed) nor a complete request body (the request is
//! aborted, so Vault sees a broken upload, never a restorable one).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::TryStreamExt;

use crate::repo::id::{BlobId, SnapshotId};
use crate::repo::master_index::MasterIndex;
use crate::repo::tree::NodeKind;
use crate::repo::Repository;
use crate::vault::api::{streamed_body, PostOutcome, VaultApiError, VaultClient, MAX_REDIRECTS};
use crate::vault::api::{SNAPSHOT_FORCE_PATH, SNAPSHOT_PATH};
use crate::vault::rebuild::SnapWriter;
use crate::vault::{Member, MemberName, Sha256Sums, VaultSnapshotError, SMALL_MEMBER_MAX};

use super::write::write_err;
use super::{blob_stream, forward, plan_tree, PlannedEntry, RestoreError};

/// What a rebuild wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rebuilt {
    /// Bytes of `state.bin`.
    pub state_bytes: u64,
}

/// The members of a stored snapshot, in archive order, with their stored nodes.
async fn members(
    repo: &Repository,
    index: &MasterIndex,
    snapshot: SnapshotId,
    tree: BlobId,
) -> Result<BTreeMap<MemberName, PlannedEntry>, RestoreError> {
    let mut found = BTreeMap::new();
    for entry in plan_tree(repo, index, snapshot, tree).await? {
        let name = entry
            .path
            .to_str()
            .and_then(|p| MemberName::from_file_name(p.as_bytes()))
            .filter(|_| entry.node.kind == NodeKind::File)
            .ok_or_else(|| VaultSnapshotError::UnexpectedMember {
                name: entry.path.display().to_string(),
            })?;
        found.insert(name, entry);
    }
    for required in MemberName::ALL.into_iter().filter(|m| m.required()) {
        if !found.contains_key(&required) {
            return Err(VaultSnapshotError::Missing { member: required }.into());
        }
    }
    Ok(found)
}

fn member_of(name: MemberName, entry: &PlannedEntry) -> Member {
    Member {
        name,
        mode: entry.node.mode,
        mtime: u64::try_from(entry.node.mtime_ns.div_euclid(1_000_000_000)).unwrap_or(0),
        size: entry.node.size,
    }
}

/// A small member's bytes, checked against its recorded size.
async fn read_small(
    repo: &Repository,
    index: &MasterIndex,
    name: MemberName,
    entry: &PlannedEntry,
    parallel: usize,
) -> Result<Bytes, RestoreError> {
    if entry.node.size > SMALL_MEMBER_MAX as u64 {
        return Err(VaultSnapshotError::BadMember {
            member: name,
            reason: format!(
                "{} bytes recorded, more than a snapshot holds",
                entry.node.size
            ),
        }
        .into());
    }
    let parts: Vec<Bytes> = blob_stream(repo, index, entry.node.content.clone(), parallel)
        .try_collect()
        .await?;
    let data: Vec<u8> = parts.concat();
    if data.len() as u64 != entry.node.size {
        return Err(RestoreError::SizeMismatch {
            path: entry.path.clone(),
            expected: entry.node.size,
            found: data.len() as u64,
        });
    }
    Ok(Bytes::from(data))
}

/// Rebuilds the `.snap` of a `vault` snapshot into `out` (see the module doc), returning
/// `out` once the archive is complete and verified.
///
/// # Errors
/// A [`VaultSnapshotError`] naming the member that fails its check, a fetch error, or
/// the write error of `out`.
pub async fn rebuild_snapshot<W: Write + Send + 'static>(
    repo: &Repository,
    index: &MasterIndex,
    snapshot: SnapshotId,
    tree: BlobId,
    out: W,
    parallel: usize,
) -> Result<(W, Rebuilt), RestoreError> {
    let found = members(repo, index, snapshot, tree).await?;
    let mut small = BTreeMap::new();
    for (name, entry) in &found {
        if *name != MemberName::State {
            small.insert(
                *name,
                read_small(repo, index, *name, entry, parallel).await?,
            );
        }
    }
    let sums_raw = small.get(&MemberName::Sums).cloned().unwrap_or_default();
    let sums = Sha256Sums::parse(&sums_raw)?;
    let order: Vec<(Member, Option<Bytes>)> = found
        .iter()
        .map(|(name, entry)| (member_of(*name, entry), small.get(name).cloned()))
        .collect();
    let state = found
        .get(&MemberName::State)
        .map(|e| e.node.content.clone())
        .unwrap_or_default();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(parallel.max(1));
    let writer = tokio::task::spawn_blocking(move || -> Result<(W, Rebuilt), RestoreError> {
        let mut snap = SnapWriter::new(out, sums);
        let mut rebuilt = Rebuilt::default();
        for (member, data) in order {
            snap.begin(&member)?;
            match data {
                Some(data) => snap.write(&data)?,
                None => {
                    while let Some(chunk) = rx.blocking_recv() {
                        rebuilt.state_bytes += chunk.len() as u64;
                        snap.write(&chunk)?;
                    }
                }
            }
        }
        Ok((snap.finish()?, rebuilt))
    });
    let mut blobs = blob_stream(repo, index, state, parallel);
    let fetched = forward(&mut blobs, &tx).await;
    drop(tx);
    let written = writer.await.map_err(|_| RestoreError::WriterGone)?;
    fetched?;
    written
}

/// Writes the `.snap` of a `vault` snapshot to `path`: a temporary file beside it, synced,
/// then renamed. An existing `path` is refused.
///
/// # Errors
/// [`RestoreError::Refused`] when `path` exists, or as [`rebuild_snapshot`]; the
/// temporary file is removed on any failure.
pub async fn restore_to_file(
    repo: &Repository,
    index: &MasterIndex,
    snapshot: SnapshotId,
    tree: BlobId,
    path: &Path,
    parallel: usize,
) -> Result<Rebuilt, RestoreError> {
    if fs::symlink_metadata(path).is_ok() {
        return Err(RestoreError::Refused {
            path: path.to_path_buf(),
            reason: "exists; a Vault snapshot is restored to a new file".into(),
        });
    }
    let file_name = path.file_name().ok_or_else(|| RestoreError::Refused {
        path: path.to_path_buf(),
        reason: "is not a file name".into(),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.stowage-{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(write_err("create", &tmp))?;
    let result = async {
        let (out, rebuilt) = rebuild_snapshot(
            repo,
            index,
            snapshot,
            tree,
            BufWriter::with_capacity(1 << 20, file),
            parallel,
        )
        .await?;
        let file: File = out
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(write_err("write", &tmp))?;
        file.sync_all().map_err(write_err("fsync", &tmp))?;
        // A link, not a rename: it fails rather than replace a file created meanwhile.
        match fs::hard_link(&tmp, path) {
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => fs::rename(&tmp, path),
            other => other,
        }
        .map_err(write_err("link", path))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(write_err("fsync", &dir))?;
        Ok(rebuilt)
    }
    .await;
    let _ = fs::remove_file(&tmp);
    result
}

/// Posts the `.snap` of a `vault` snapshot to Vault's restore endpoint (`force`: the one
/// that accepts a snapshot from another cluster), following a standby's redirect by
/// sending it again.
///
/// # Errors
/// The request's failure, Vault's refusal (its messages), or as [`rebuild_snapshot`]; a
/// snapshot that fails its checks is never sent whole.
pub async fn restore_to_vault(
    repo: &Repository,
    index: &MasterIndex,
    snapshot: SnapshotId,
    tree: BlobId,
    client: &VaultClient,
    force: bool,
    parallel: usize,
) -> Result<Rebuilt, RestoreError> {
    let mut url = client.url(if force {
        SNAPSHOT_FORCE_PATH
    } else {
        SNAPSHOT_PATH
    });
    for _ in 0..=MAX_REDIRECTS {
        let (writer, body) = streamed_body(8);
        let (posted, rebuilt) = tokio::join!(client.post_snapshot(&url, body), async {
            let (writer, rebuilt) =
                rebuild_snapshot(repo, index, snapshot, tree, writer, parallel).await?;
            // finish() blocks while the body queue is full.
            tokio::task::spawn_blocking(move || writer.finish())
                .await
                .map_err(|_| RestoreError::WriterGone)?
                .map_err(VaultSnapshotError::Write)?;
            Ok::<_, RestoreError>(rebuilt)
        });
        match posted {
            Ok(PostOutcome::Done) => return rebuilt,
            Ok(PostOutcome::Redirect(next)) => url = next,
            Err(e) => {
                // A snapshot that failed its check aborted the request: its error is the
                // cause. A body abandoned by the request (Vault answered early, the
                // connection failed) is not: the request's error is.
                return Err(match rebuilt {
                    Err(RestoreError::Vault(VaultSnapshotError::Write(io)))
                        if io.kind() == std::io::ErrorKind::BrokenPipe =>
                    {
                        RestoreError::VaultApi(e)
                    }
                    Err(cause) => cause,
                    Ok(_) => RestoreError::VaultApi(e),
                });
            }
        }
    }
    Err(RestoreError::VaultApi(VaultApiError::TooManyRedirects {
        method: hyper::Method::POST,
        url: url.to_string(),
    }))
}
