//! The restore writer: one blocking thread that creates entries and writes file data in
//! the order the fetch stage delivers it.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use filetime::FileTime;
use tokio::sync::mpsc;

use crate::repo::tree::{Node, NodeKind};

use super::{PlannedEntry, RestoreError};

/// What a restore wrote.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RestoreStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of restored files (kept ones included).
    pub bytes: u64,
    /// Delta restores: bytes found already right on disk and left as they were, and the
    /// files nothing had to be written to.
    #[serde(skip_serializing_if = "is_zero")]
    pub kept_bytes: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub kept_files: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Bytes gathered before one write to a restored file.
const WRITE_BUFFER: usize = 1 << 20;

impl Op {
    /// Data bytes the op carries.
    pub(super) fn len(&self) -> usize {
        match self {
            Op::Data(bytes) => bytes.len(),
            _ => 0,
        }
    }
}

pub(super) enum Op {
    Start(PlannedEntry),
    /// A file that exists and is partly right: written in place, not truncated first.
    Patch(PlannedEntry),
    Data(Bytes),
    /// Bytes of the current file that are already right: moved over, not written.
    Skip(u64),
    EndFile,
}

struct OpenFile {
    path: PathBuf,
    node: Node,
    /// Buffered: blobs arrive a page (8 KiB) at a time for a base backup, and one
    /// write system call per page cost a third of a restore's time.
    file: BufWriter<File>,
    /// Position in the file: bytes written plus bytes skipped.
    written: u64,
    skipped: u64,
    /// Opened in place (delta), so it may hold bytes past the new end.
    in_place: bool,
}

pub(super) struct Writer {
    handle: std::thread::JoinHandle<Result<RestoreStats, RestoreError>>,
}

/// Maps an I/O error on `path` to [`RestoreError::Write`].
pub(super) fn write_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> RestoreError + 'a {
    move |source| RestoreError::Write {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn mtime(node: &Node) -> FileTime {
    FileTime::from_unix_time(
        node.mtime_ns.div_euclid(1_000_000_000),
        node.mtime_ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// Ownership is restored only when running as root, as tar and restic do; a failure to
/// chown (an unknown id on this host, say) leaves the restorer's own ownership.
fn chown(path: &Path, node: &Node) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let _ = std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid));
    }
}

struct State {
    root: PathBuf,
    stats: RestoreStats,
    current: Option<OpenFile>,
    dirs: Vec<(PathBuf, Node)>,
}

impl State {
    /// Opens an existing regular file for writing in place (delta restores).
    fn patch(&mut self, entry: PlannedEntry) -> Result<(), RestoreError> {
        let path = self.root.join(&entry.path);
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(write_err("open file", &path))?;
        self.current = Some(OpenFile {
            path,
            node: entry.node,
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            written: 0,
            skipped: 0,
            in_place: true,
        });
        Ok(())
    }

    fn skip(&mut self, bytes: u64) -> Result<(), RestoreError> {
        use std::io::{Seek, SeekFrom};
        let Some(open) = self.current.as_mut() else {
            return Err(RestoreError::WriterGone);
        };
        let by = i64::try_from(bytes).map_err(|_| RestoreError::WriterGone)?;
        open.file
            .seek(SeekFrom::Current(by))
            .map_err(write_err("seek", &open.path))?;
        open.written += bytes;
        open.skipped += bytes;
        Ok(())
    }

    fn start(&mut self, entry: PlannedEntry) -> Result<(), RestoreError> {
        let path = self.root.join(&entry.path);
        let node = entry.node;
        // Anything already at this name must not redirect the write.
        let existing = fs::symlink_metadata(&path).ok();
        match node.kind {
            NodeKind::Dir => {
                match existing {
                    Some(meta) if meta.is_dir() => {}
                    Some(_) => {
                        return Err(RestoreError::Refused {
                            path,
                            reason: "exists and is not a directory".into(),
                        })
                    }
                    None => fs::create_dir(&path).map_err(write_err("create directory", &path))?,
                }
                self.stats.dirs += 1;
                self.dirs.push((path, node));
            }
            NodeKind::Symlink => {
                if let Some(meta) = existing {
                    if meta.is_dir() {
                        return Err(RestoreError::Refused {
                            path,
                            reason: "exists and is a directory".into(),
                        });
                    }
                    fs::remove_file(&path).map_err(write_err("replace", &path))?;
                }
                let target = node.os_target().ok_or_else(|| RestoreError::Refused {
                    path: path.clone(),
                    reason: "symlink without a valid target".into(),
                })?;
                std::os::unix::fs::symlink(&target, &path)
                    .map_err(write_err("create symlink", &path))?;
                chown(&path, &node);
                let _ = filetime::set_symlink_file_times(&path, mtime(&node), mtime(&node));
                self.stats.symlinks += 1;
            }
            NodeKind::File => {
                if let Some(meta) = existing {
                    if !meta.is_file() {
                        return Err(RestoreError::Refused {
                            path,
                            reason: "exists and is not a regular file".into(),
                        });
                    }
                    // Truncating a file with other hard links would change them too.
                    if std::os::unix::fs::MetadataExt::nlink(&meta) > 1 {
                        fs::remove_file(&path).map_err(write_err("replace", &path))?;
                    }
                }
                let file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(write_err("create file", &path))?;
                self.current = Some(OpenFile {
                    path,
                    node,
                    file: BufWriter::with_capacity(WRITE_BUFFER, file),
                    written: 0,
                    skipped: 0,
                    in_place: false,
                });
            }
        }
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), RestoreError> {
        let Some(open) = self.current.as_mut() else {
            return Err(RestoreError::WriterGone);
        };
        open.file
            .write_all(bytes)
            .map_err(write_err("write", &open.path))?;
        open.written += bytes.len() as u64;
        Ok(())
    }

    fn end_file(&mut self) -> Result<(), RestoreError> {
        let Some(open) = self.current.take() else {
            return Err(RestoreError::WriterGone);
        };
        if open.written != open.node.size {
            return Err(RestoreError::SizeMismatch {
                path: open.path,
                expected: open.node.size,
                found: open.written,
            });
        }
        let path = &open.path;
        let file = open
            .file
            .into_inner()
            .map_err(|e| write_err("write", path)(e.into_error()))?;
        if open.in_place {
            file.set_len(open.written)
                .map_err(write_err("truncate", path))?;
            self.stats.kept_bytes += open.skipped;
            if open.skipped == open.written {
                self.stats.kept_files += 1;
            }
        }
        file.set_permissions(fs::Permissions::from_mode(open.node.mode))
            .map_err(write_err("set mode", path))?;
        drop(file);
        chown(path, &open.node);
        filetime::set_file_mtime(path, mtime(&open.node)).map_err(write_err("set mtime", path))?;
        self.stats.files += 1;
        self.stats.bytes += open.written;
        Ok(())
    }

    fn finish(mut self) -> Result<RestoreStats, RestoreError> {
        // Deepest first, so setting a parent's mtime is not undone by its children.
        self.dirs
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (path, node) in &self.dirs {
            fs::set_permissions(path, fs::Permissions::from_mode(node.mode))
                .map_err(write_err("set mode", path))?;
            chown(path, node);
            filetime::set_file_mtime(path, mtime(node)).map_err(write_err("set mtime", path))?;
        }
        Ok(self.stats)
    }
}

impl Writer {
    /// The thread and the channel feeding it batches of ops ([`super::forward_batched`]).
    pub(super) fn spawn(root: PathBuf) -> (Writer, mpsc::Sender<Vec<Op>>) {
        let (tx, mut rx) = mpsc::channel::<Vec<Op>>(16);
        let handle = std::thread::spawn(move || {
            let mut state = State {
                root,
                stats: RestoreStats::default(),
                current: None,
                dirs: Vec::new(),
            };
            while let Some(batch) = rx.blocking_recv() {
                for op in batch {
                    match op {
                        Op::Start(entry) => state.start(entry)?,
                        Op::Patch(entry) => state.patch(entry)?,
                        Op::Data(bytes) => state.data(&bytes)?,
                        Op::Skip(bytes) => state.skip(bytes)?,
                        Op::EndFile => state.end_file()?,
                    }
                }
            }
            state.finish()
        });
        (Writer { handle }, tx)
    }

    pub(super) async fn finish(self) -> Result<RestoreStats, RestoreError> {
        match tokio::task::spawn_blocking(move || self.handle.join()).await {
            Ok(Ok(result)) => result,
            _ => Err(RestoreError::WriterGone),
        }
    }
}
