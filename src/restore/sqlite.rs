//! A `sqlite` snapshot back to a database file that passes `PRAGMA integrity_check`.
//!
//! ```text
//! probe target (open elsewhere? refuse) ─► stream pages to .NAME.stowage-PID beside it
//!   ─► fsync ─► integrity_check ─► drop stale -journal/-wal/-shm ─► rename ─► fsync dir
//! ```
//! The target is never half-written: until the rename it is untouched, and the rename
//! replaces it whole. A stale `-journal` or `-wal` beside the target belongs to the old
//! database; SQLite would roll it into the restored one (a hot journal is rolled back,
//! a WAL replayed), so both are removed before the new file takes the name. That is only
//! safe when no process has the old database open, hence the probe
//! ([`crate::sqlite::lock::open_by_other`]); `force` skips it.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::repo::id::{BlobId, SnapshotId};
use crate::repo::master_index::MasterIndex;
use crate::repo::Repository;
use crate::sqlite::lock::{open_by_other, sidecar};

pub use crate::sqlite::integrity_check;

use super::write::write_err;
use super::{find_file, stream_file, RestoreError};

/// What [`restore_to_file`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SqliteRestore {
    /// The database file written.
    pub path: PathBuf,
    pub bytes: u64,
}

/// Removes a temporary file (and what SQLite put beside it) unless it was kept.
struct Temp {
    path: PathBuf,
    keep: bool,
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.keep {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let _ = fs::remove_file(sidecar(&self.path, suffix));
            }
        }
    }
}

/// Writes the database of a `sqlite` snapshot to `target` (a file, or a directory to put
/// it in under its stored name), checked with `PRAGMA integrity_check` before it replaces
/// anything. Unless `force`, refuses a target that another process has open.
///
/// # Errors
/// [`RestoreError::Refused`] for an open target, [`RestoreError::Sqlite`] when the
/// written copy fails the integrity check (the target is left as it was), or the fetch
/// and write errors of any restore.
pub async fn restore_to_file(
    repo: &Repository,
    index: &MasterIndex,
    snapshot: SnapshotId,
    tree: BlobId,
    target: &Path,
    force: bool,
    parallel: usize,
) -> Result<SqliteRestore, RestoreError> {
    let entry = find_file(repo, index, snapshot, tree, None).await?;
    let target = if target.is_dir() {
        target.join(&entry.node.name)
    } else {
        target.to_path_buf()
    };
    if !force {
        if let Some(who) = open_by_other(&target) {
            return Err(RestoreError::Refused {
                path: target,
                reason: format!(
                    "{who}; stop the application first, or pass --force to replace it anyway"
                ),
            });
        }
    }
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = target
        .file_name()
        .ok_or_else(|| RestoreError::Refused {
            path: target.clone(),
            reason: "not a file name".into(),
        })?
        .to_string_lossy()
        .to_string();
    let temp = Temp {
        path: dir.join(format!(".{file_name}.stowage-{}", std::process::id())),
        keep: false,
    };
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp.path)
        .map_err(write_err("create", &temp.path))?;
    let out = file.try_clone().map_err(write_err("open", &temp.path))?;
    let bytes = stream_file(repo, index, &entry, out, parallel)
        .await?
        .unwrap_or(0);
    file.sync_all().map_err(write_err("fsync", &temp.path))?;
    drop(file);
    let checked = temp.path.clone();
    tokio::task::spawn_blocking(move || integrity_check(&checked))
        .await
        .map_err(|_| RestoreError::WriterGone)??;
    finish(temp, &target, entry.node.mode, &dir)?;
    Ok(SqliteRestore {
        path: target,
        bytes,
    })
}

/// Gives the checked copy the target's name: stale journal files out, mode set, rename,
/// and the directory synced so the rename survives a crash.
fn finish(mut temp: Temp, target: &Path, mode: u32, dir: &Path) -> Result<(), RestoreError> {
    for suffix in ["-journal", "-wal", "-shm"] {
        let stale = sidecar(target, suffix);
        match fs::remove_file(&stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(write_err("remove", &stale)(e))
            }
            _ => {}
        }
    }
    let mode = if mode & 0o777 == 0 {
        0o600
    } else {
        mode & 0o7777
    };
    fs::set_permissions(&temp.path, fs::Permissions::from_mode(mode))
        .map_err(write_err("chmod", &temp.path))?;
    fs::rename(&temp.path, target).map_err(write_err("rename", target))?;
    temp.keep = true;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_err("fsync", dir))?;
    Ok(())
}
