//! Whether another process has an SQLite database open, so that a restore does not
//! replace a file under a running application.
//!
//! Three probes, any of which is enough:
//! 1. A POSIX lock on the database's lock bytes (SQLite's PENDING, RESERVED and SHARED
//!    bytes at 1 GiB): a connection inside a transaction in rollback mode.
//! 2. A POSIX lock on the `-shm` file's lock bytes: every open WAL-mode connection
//!    holds a read lock on its "DMS" byte for as long as it is open.
//! 3. On Linux, a file descriptor of another process on the database or its `-wal`
//!    file (`/proc/PID/fd`): an idle connection in rollback mode holds no lock at all.
//!
//! Locks are only tested (`F_GETLK`), never taken: a probe cannot disturb the holder.
//! POSIX locks held by this very process are invisible to `F_GETLK`, and the `/proc`
//! probe skips this process too: only *other* processes count.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// SQLite's PENDING byte; RESERVED and the 510 SHARED bytes follow it.
const PENDING_BYTE: i64 = 0x4000_0000;
const LOCK_BYTES: i64 = 512;
/// The `-shm` file's lock bytes: 8 WAL locks from 120, then the DMS byte at 128.
const SHM_LOCKS: (i64, i64) = (120, 9);

/// Who has the database open, in words; `None` when no other process seems to.
pub fn open_by_other(db: &Path) -> Option<String> {
    if let Some(pid) = lock_holder(db, PENDING_BYTE, LOCK_BYTES) {
        return Some(format!("process {pid} holds a lock on it"));
    }
    if let Some(pid) = lock_holder(&sidecar(db, "-shm"), SHM_LOCKS.0, SHM_LOCKS.1) {
        return Some(format!("process {pid} has it open in WAL mode"));
    }
    descriptor_holder(db).map(|pid| format!("process {pid} has it open"))
}

/// `db` with `suffix` appended to its file name (`-wal`, `-shm`, `-journal`).
pub fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// The process holding a POSIX lock that conflicts with a write lock on `len` bytes at
/// `start` of `path`, if any (and if the file can be opened).
fn lock_holder(path: &Path, start: i64, len: i64) -> Option<i32> {
    let file = File::open(path).ok()?;
    // SAFETY: flock is plain data; all-zero is a valid value that is then filled in.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = start;
    lock.l_len = len;
    // SAFETY: F_GETLK only reads and writes `lock`, which lives across the call; the
    // descriptor is open for as long as `file` is.
    let done = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) };
    (done == 0 && lock.l_type != libc::F_UNLCK as libc::c_short).then_some(lock.l_pid)
}

/// Another process with a descriptor on `db` or its `-wal` file, found through
/// `/proc/*/fd` (processes this user may not inspect are skipped).
fn descriptor_holder(db: &Path) -> Option<u32> {
    let ids: Vec<(u64, u64)> = [db.to_path_buf(), sidecar(db, "-wal")]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    if ids.is_empty() {
        return None;
    }
    let me = std::process::id();
    for process in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = process.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(m) = std::fs::metadata(fd.path()) {
                if ids.contains(&(m.dev(), m.ino())) {
                    return Some(pid);
                }
            }
        }
    }
    None
}
