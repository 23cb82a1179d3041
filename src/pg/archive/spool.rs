//! Local state that lets one `wal-push` or `wal-fetch` do the work of the next ones.
//!
//! ```text
//! <spool>/push/<file name>    "stored <blake3 of the file> <length>": durable in the repository
//! <spool>/fetch/<file name>   a verified copy fetched ahead of recovery, fsynced
//! <spool>/fetch.lock          held by the one prefetcher that may run
//! <spool>/cluster-<repo id>    the system identifier that repository records for the cluster
//! ```
//! The spool is a cache in the strict sense: deleting it loses nothing. A push marker is
//! written only after its object is durable, and is trusted only for a file whose bytes
//! still hash to what it names, so a crash at any point leaves at worst a file pushed
//! twice (the second push finds the same content and succeeds). The default place is
//! `pg_wal/.stowage/<repository>-<cluster>/`: on the same file system as `pg_wal`, so a
//! prefetched segment is renamed into place rather than copied, and the server never
//! reads or removes it (it only manages files with WAL names).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::pg::wal::WalFileName;

/// One repository's and one cluster's spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

/// A short, stable directory name for a repository location and cluster.
pub fn spool_name(location: &str, cluster: &str) -> String {
    let hash = blake3::hash(location.as_bytes());
    format!("{}-{cluster}", &hash.to_hex()[..16])
}

fn content_tag(raw: &[u8]) -> String {
    format!("stored {} {}\n", blake3::hash(raw).to_hex(), raw.len())
}

/// Writes `bytes` to `path` through a temporary name; `sync` makes it durable first.
pub fn write_atomic(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl Spool {
    /// The spool at `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        Spool { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn sub(&self, kind: &str) -> std::io::Result<PathBuf> {
        let dir = self.dir.join(kind);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Whether a push of exactly these bytes under `name` is already durable. A marker
    /// found and honoured is removed: PostgreSQL marks the file done once told.
    pub fn take_pushed(&self, name: &WalFileName, raw: &[u8]) -> bool {
        let path = self.dir.join("push").join(name.to_string());
        match std::fs::read_to_string(&path) {
            Ok(text) if text == content_tag(raw) => {
                let _ = std::fs::remove_file(&path);
                true
            }
            _ => false,
        }
    }

    /// Whether a marker exists for `name` (not checked against content).
    pub fn has_marker(&self, name: &str) -> bool {
        self.dir.join("push").join(name).exists()
    }

    /// Records that `raw` is durable under `name`. Call only after the store said so.
    ///
    /// # Errors
    /// I/O errors; the caller may ignore them (the next call re-pushes).
    pub fn mark_pushed(&self, name: &WalFileName, raw: &[u8]) -> std::io::Result<()> {
        let dir = self.sub("push")?;
        write_atomic(
            &dir.join(name.to_string()),
            content_tag(raw).as_bytes(),
            false,
        )
    }

    /// Removes push markers for files no longer waiting (`keep` says which still are).
    pub fn prune_markers(&self, keep: impl Fn(&str) -> bool) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("push")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// The cached system identifier the repository `repo` (its id, not its location,
    /// which could come to hold a new repository) records for the cluster.
    pub fn cluster_id(&self, repo: &str) -> Option<u64> {
        std::fs::read_to_string(self.dir.join(format!("cluster-{repo}")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Caches the repository's record of the cluster's system identifier.
    pub fn set_cluster_id(&self, repo: &str, id: u64) {
        if std::fs::create_dir_all(&self.dir).is_ok() {
            let path = self.dir.join(format!("cluster-{repo}"));
            let _ = write_atomic(&path, format!("{id}\n").as_bytes(), false);
        }
    }

    /// Where a prefetched copy of `name` lives.
    pub fn fetched_path(&self, name: &str) -> PathBuf {
        self.dir.join("fetch").join(name)
    }

    /// Stores a verified copy of `name` fetched ahead, durably (it will be handed to
    /// PostgreSQL by rename, without another check).
    ///
    /// # Errors
    /// I/O errors.
    pub fn put_fetched(&self, name: &str, raw: &[u8]) -> std::io::Result<()> {
        let dir = self.sub("fetch")?;
        write_atomic(&dir.join(name), raw, true)
    }

    /// Names of the prefetched files present.
    pub fn fetched(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("fetch")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect()
    }

    /// Removes temporary files of prefetched copies (call with the prefetch lock held).
    pub fn remove_temporaries(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("fetch")) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with('.') {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Takes the one prefetch lock without waiting; `None` when another process holds it.
    /// The lock is released when the returned file is dropped (or the process dies).
    pub fn try_prefetch_lock(&self) -> Option<std::fs::File> {
        std::fs::create_dir_all(&self.dir).ok()?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("fetch.lock"))
            .ok()?;
        lock_exclusive_nowait(&file).then_some(file)
    }
}

#[cfg(unix)]
fn lock_exclusive_nowait(file: &std::fs::File) -> bool {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor we own; no memory is shared with the kernel.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(not(unix))]
fn lock_exclusive_nowait(_file: &std::fs::File) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> WalFileName {
        WalFileName::parse("000000010000000000000003").unwrap()
    }

    #[test]
    fn marker_is_honoured_only_for_the_same_bytes_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("s"));
        assert!(!spool.take_pushed(&name(), b"abc"));
        spool.mark_pushed(&name(), b"abc").unwrap();
        assert!(!spool.take_pushed(&name(), b"abd"));
        assert!(spool.take_pushed(&name(), b"abc"));
        assert!(!spool.take_pushed(&name(), b"abc"));
    }

    #[test]
    fn prefetch_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().to_path_buf());
        let held = spool.try_prefetch_lock();
        assert!(held.is_some());
        assert!(spool.try_prefetch_lock().is_none());
        drop(held);
        assert!(spool.try_prefetch_lock().is_some());
    }
}
