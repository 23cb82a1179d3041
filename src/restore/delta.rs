//! Delta restores: rewind a directory in place, writing only what differs.
//!
//! Each file that exists where the snapshot has a file is read once and cut where the
//! snapshot's blobs end (their lengths are in the index); a piece whose keyed hash is
//! the blob's id is already right and is skipped, so only the differing pieces are
//! fetched and written. Entries the snapshot does not have, or has as another kind, are
//! removed first (never following a symlink out of the directory), so what remains is
//! exactly the snapshot.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::repo::crypto::Keys;
use crate::repo::master_index::MasterIndex;
use crate::repo::tree::NodeKind;

use super::write::write_err;
use super::{PlannedEntry, RestoreError};

/// For each file entry of `entries` (by position), which of its blobs are already on
/// disk under `root`: `None` when there is no regular file to patch.
pub type Matches = Vec<Option<Vec<bool>>>;

/// What one scanning thread found: (entry position, matches).
type Found = Result<Vec<(usize, Vec<bool>)>, RestoreError>;

/// Removes what under `root` the snapshot does not have, or has as another kind.
/// With `shared_root`, names directly in `root` that the snapshot does not have are left
/// alone (a tablespace location holds one `PG_<version>_<catversion>` directory per
/// cluster and version: only this backup's is ours). Returns how many entries were removed.
///
/// # Errors
/// The first entry that cannot be listed or removed.
pub fn remove_extra(
    root: &Path,
    entries: &[PlannedEntry],
    shared_root: bool,
) -> Result<u64, RestoreError> {
    let wanted: std::collections::HashMap<&Path, NodeKind> = entries
        .iter()
        .map(|e| (e.path.as_path(), e.node.kind))
        .collect();
    let mut removed = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        let abs = root.join(&dir);
        let listing = fs::read_dir(&abs).map_err(write_err("list", &abs))?;
        for item in listing {
            let item = item.map_err(write_err("list", &abs))?;
            let rel = dir.join(item.file_name());
            let path = root.join(&rel);
            let meta = fs::symlink_metadata(&path).map_err(write_err("stat", &path))?;
            let keep = match wanted.get(rel.as_path()) {
                Some(NodeKind::Dir) => meta.is_dir(),
                Some(NodeKind::File) => meta.is_file(),
                Some(NodeKind::Symlink) => meta.file_type().is_symlink(),
                None => false,
            };
            if !keep
                && shared_root
                && dir.as_os_str().is_empty()
                && !wanted.contains_key(rel.as_path())
            {
                continue;
            }
            if keep {
                if meta.is_dir() {
                    stack.push(rel);
                }
                continue;
            }
            if meta.is_dir() {
                fs::remove_dir_all(&path).map_err(write_err("remove", &path))?;
            } else {
                fs::remove_file(&path).map_err(write_err("remove", &path))?;
            }
            removed += 1;
        }
    }
    Ok(removed)
}

/// Hashes the files under `root` against `entries` on `threads` threads.
///
/// # Errors
/// A file that exists but cannot be read.
pub fn scan(
    keys: &Keys,
    index: &MasterIndex,
    root: &Path,
    entries: &[PlannedEntry],
    threads: usize,
) -> Result<Matches, RestoreError> {
    let files: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].node.kind == NodeKind::File)
        .collect();
    let mut out: Matches = vec![None; entries.len()];
    let (tx, rx) = crossbeam_channel::unbounded::<usize>();
    for i in files {
        let _ = tx.send(i);
    }
    drop(tx);
    let results: Vec<Found> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                let rx = rx.clone();
                s.spawn(move || {
                    let mut found = Vec::new();
                    for i in rx.iter() {
                        if let Some(matches) = compare(keys, index, root, &entries[i])? {
                            found.push((i, matches));
                        }
                    }
                    Ok(found)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or(Err(RestoreError::WriterGone)))
            .collect()
    });
    for result in results {
        for (i, matches) in result? {
            out[i] = Some(matches);
        }
    }
    Ok(out)
}

/// Which blobs of `entry` the file at its path already holds; `None` if there is no
/// regular file there.
fn compare(
    keys: &Keys,
    index: &MasterIndex,
    root: &Path,
    entry: &PlannedEntry,
) -> Result<Option<Vec<bool>>, RestoreError> {
    let path = root.join(&entry.path);
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path);
    let mut file: File = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(write_err("open", &path)(e)),
    };
    let meta = file.metadata().map_err(write_err("stat", &path))?;
    // A file with other hard links (pg_upgrade --link, cp -al) is not patched in place:
    // the writer replaces it with a new file, so the other names keep their data.
    if !meta.is_file() || std::os::unix::fs::MetadataExt::nlink(&meta) > 1 {
        return Ok(None);
    }
    let mut matches = Vec::with_capacity(entry.node.content.len());
    let mut buf = Vec::new();
    let mut at_end = false;
    for id in &entry.node.content {
        let Some(loc) = index.get(id) else {
            // Its length is unknown, so nothing after it can be lined up: rewrite the rest.
            at_end = true;
            matches.push(false);
            continue;
        };
        let len = loc.raw_len as usize;
        if at_end {
            matches.push(false);
            continue;
        }
        buf.resize(len, 0);
        let read = read_full(&mut file, &mut buf).map_err(write_err("read", &path))?;
        if read < len {
            at_end = true;
            matches.push(false);
            continue;
        }
        matches.push(keys.blob_id(&buf) == *id);
    }
    Ok(Some(matches))
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
