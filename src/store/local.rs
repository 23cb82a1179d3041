//! A repository in a local directory: the embedded default, no server needed.
//!
//! Writes go to a temporary name in the target's directory, are fsynced, then moved into
//! place, and the directory is fsynced, so an object is either absent or complete and
//! durable (invariants 1 and 2 of [`super`]). Create-only writes move the temporary file
//! with `link(2)`, which fails atomically if the name exists, so two hosts racing to
//! write the same write-once object cannot overwrite each other.
//!
//! Temporary files start with [`TEMP_PREFIX`]; listings skip them. One left behind by a
//! killed process is harmless and can be deleted at any time.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{IncompleteUpload, ObjectKey, ObjectMeta, ObjectStore, PutMode, StoreError};

/// Names starting with this are in-progress writes, never objects.
pub const TEMP_PREFIX: &str = ".tmp-";

/// An [`ObjectStore`] over a directory tree.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    /// Runs blocking file-system work off the async workers.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> Result<T, StoreError> + Send + 'static,
    {
        let root = self.root.clone();
        match tokio::task::spawn_blocking(move || work(&root)).await {
            Ok(result) => result,
            Err(join) => Err(io_err(
                "run blocking task",
                &self.root,
                std::io::Error::other(join.to_string()),
            )),
        }
    }
}

fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn not_found_or(op: &'static str, key: &ObjectKey, path: &Path, err: std::io::Error) -> StoreError {
    if err.kind() == ErrorKind::NotFound {
        StoreError::NotFound { key: key.clone() }
    } else {
        io_err(op, path, err)
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("fsync directory", dir, e))
}

fn random_suffix() -> String {
    let mut raw = [0u8; 8];
    // A weak suffix would only risk a collision between two temporary names, which the
    // create_new open below turns into an error rather than a silent overwrite.
    let _ = getrandom::getrandom(&mut raw);
    hex::encode(raw)
}

fn put_blocking(
    path: &Path,
    key: &ObjectKey,
    body: &[u8],
    mode: PutMode,
) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .ok_or_else(|| io_err("find parent", path, ErrorKind::InvalidInput.into()))?;
    create_dirs_durably(dir)?;
    if mode == PutMode::Create && path.exists() {
        return Err(existing(path, dir, key));
    }
    let tmp = dir.join(format!("{TEMP_PREFIX}{}-{}", key.name(), random_suffix()));
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(body)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", &tmp, e));
    }
    let moved = match mode {
        PutMode::Overwrite => fs::rename(&tmp, path),
        PutMode::Create => {
            let linked = fs::hard_link(&tmp, path);
            let _ = fs::remove_file(&tmp);
            linked
        }
    };
    match moved {
        Ok(()) => sync_dir(dir),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            if e.kind() == ErrorKind::AlreadyExists {
                Err(existing(path, dir, key))
            } else {
                Err(io_err("move into place", path, e))
            }
        }
    }
}

/// "Already exists", once the existing object is durable: callers take that answer to
/// mean the bytes are safely stored (a WAL push exits 0 on it), and the object may be
/// the work of a writer killed between moving it into place and syncing its directory.
fn existing(path: &Path, dir: &Path, key: &ObjectKey) -> StoreError {
    let synced = fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err("fsync", path, e))
        .and_then(|()| sync_dir(dir));
    match synced {
        Ok(()) => StoreError::AlreadyExists { key: key.clone() },
        Err(e) => e,
    }
}

/// Creates `dir` and its missing parents, syncing each parent a new directory was made
/// in, so that a durable object never sits in a directory a crash could forget.
fn create_dirs_durably(dir: &Path) -> Result<(), StoreError> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.is_dir() {
        missing.push(at);
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    fs::create_dir_all(dir).map_err(|e| io_err("create directory", dir, e))?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Calls `visit` with the path (relative to `root`, when it is UTF-8), the file name and
/// the metadata of every file below `start`; a directory that vanished meanwhile is skipped.
fn walk_files(
    root: &Path,
    start: PathBuf,
    mut visit: impl FnMut(&str, &str, &fs::Metadata),
) -> Result<(), StoreError> {
    let mut stack = vec![start];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("list directory", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err("list directory", &dir, e))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(|e| io_err("stat", &path, e))?;
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let (Some(name), Some(rel)) = (
                path.file_name().and_then(std::ffi::OsStr::to_str),
                path.strip_prefix(root).ok().and_then(Path::to_str),
            ) else {
                continue;
            };
            visit(rel, name, &meta);
        }
    }
    Ok(())
}

fn list_blocking(root: &Path, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
    // Walk the directory the prefix names (or the one containing it) and filter.
    let base = match prefix.rfind('/') {
        Some(i) => root.join(&prefix[..i]),
        None => root.to_path_buf(),
    };
    let mut out = Vec::new();
    walk_files(root, base, |rel, name, meta| {
        if name.starts_with(TEMP_PREFIX) || !rel.starts_with(prefix) {
            return;
        }
        if let Ok(key) = ObjectKey::new(rel) {
            out.push(ObjectMeta {
                key,
                size: meta.len(),
            });
        }
    })?;
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Temporary files left by killed writers, found by walking the whole tree.
fn list_temp_blocking(root: &Path) -> Result<Vec<IncompleteUpload>, StoreError> {
    let mut out = Vec::new();
    walk_files(root, root.to_path_buf(), |rel, name, meta| {
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
            return;
        };
        // `<name>-<16 hex>`: the object name is what precedes the random suffix.
        let object = rest.rsplit_once('-').map_or(rest, |(object, _)| object);
        let key = match rel.rsplit_once('/') {
            Some((parent, _)) => format!("{parent}/{object}"),
            None => object.to_string(),
        };
        out.push(IncompleteUpload {
            key,
            id: rel.to_string(),
            started: meta.modified().ok(),
        });
    })?;
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put(&self, key: &ObjectKey, body: Bytes, mode: PutMode) -> Result<(), StoreError> {
        let path = self.path(key);
        let key = key.clone();
        self.blocking(move |_| put_blocking(&path, &key, &body, mode))
            .await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StoreError> {
        let path = self.path(key);
        let key = key.clone();
        self.blocking(move |_| {
            fs::read(&path)
                .map(Bytes::from)
                .map_err(|e| not_found_or("read", &key, &path, e))
        })
        .await
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        let path = self.path(key);
        let key = key.clone();
        self.blocking(move |_| {
            let mut file = File::open(&path).map_err(|e| not_found_or("open", &key, &path, e))?;
            let size = file.metadata().map_err(|e| io_err("stat", &path, e))?.len();
            if range.start > range.end || range.end > size {
                return Err(StoreError::RangeOutOfBounds {
                    key,
                    start: range.start,
                    end: range.end,
                    size,
                });
            }
            let len = usize::try_from(range.end - range.start)
                .map_err(|_| io_err("read", &path, ErrorKind::InvalidInput.into()))?;
            let mut buf = vec![0u8; len];
            file.seek(SeekFrom::Start(range.start))
                .and_then(|_| file.read_exact(&mut buf))
                .map_err(|e| io_err("read", &path, e))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        let path = self.path(key);
        let key = key.clone();
        self.blocking(move |_| {
            let meta = fs::metadata(&path).map_err(|e| not_found_or("stat", &key, &path, e))?;
            Ok(ObjectMeta {
                key,
                size: meta.len(),
            })
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let prefix = prefix.to_string();
        self.blocking(move |root| list_blocking(root, &prefix))
            .await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let path = self.path(key);
        self.blocking(move |_| match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("delete", &path, e)),
        })
        .await
    }

    async fn list_incomplete(&self) -> Result<Vec<IncompleteUpload>, StoreError> {
        self.blocking(list_temp_blocking).await
    }

    async fn abort_incomplete(&self, upload: &IncompleteUpload) -> Result<(), StoreError> {
        // Only ever a temporary file inside the root, whatever the caller passes.
        let key = ObjectKey::new(upload.id.clone()).map_err(|e| StoreError::BadLocation {
            location: self.location(),
            reason: e.to_string(),
        })?;
        if !key.name().starts_with(TEMP_PREFIX) {
            return Err(StoreError::BadLocation {
                location: self.location(),
                reason: format!("{key} is not a temporary file"),
            });
        }
        self.delete(&key).await
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }
}
