//! Directory trees: regular files, directories and symlinks with modes, owners and mtimes.
//!
//! Each path given becomes one entry of the root tree, named by its last component.
//! Entries are visited in byte order of their names, so an unchanged directory yields the
//! same tree blob and dedups. Special files (devices, FIFOs, sockets) are skipped with a
//! warning; an entry that cannot be read is recorded as a warning and the run goes on
//! (the command then exits non-zero), as restic and tar do.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::pipeline::split::FastCdc;
use crate::pipeline::{BackupSession, PendingContent, PipelineError};
use crate::repo::blob::BlobKind;
use crate::repo::tree::{text_and_hex, Node, NodeKind, Tree};

use super::{Source, SourceOutcome, SourceReport};

pub struct FilesSource {
    paths: Vec<PathBuf>,
}

/// What a walk does with an entry it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    Yes,
    No,
    /// A directory kept empty (PostgreSQL's `pg_wal`, `pg_stat_tmp`, …).
    EmptyDir,
}

/// How a walk treats a tree. The plain file walk keeps everything, cuts content where
/// the content says, and warns about what it cannot read; a PostgreSQL data directory
/// skips what the server's own base backup skips (`pg::base::rules`).
pub(crate) trait WalkRules {
    /// Whether and how to keep `path` (called `name`), a directory when `is_dir`.
    fn keep(&self, _path: &Path, _name: &[u8], _is_dir: bool) -> Keep {
        Keep::Yes
    }

    /// Filters and orders one directory's names (sorted by byte) for visiting; the
    /// stored tree is sorted again, so only the reading order changes.
    fn visit_order(&self, _dir: &Path, _names: &mut Vec<OsString>) {}

    /// Page size to cut regular files into; `None` cuts by content.
    fn page_size(&self) -> Option<usize> {
        None
    }

    /// Whether entries vanish as a matter of course (a running database drops files):
    /// then a vanished entry is skipped silently, and a file is read as exactly the
    /// size it had when listed, cut short or padded with zeros.
    fn live_files(&self) -> bool {
        false
    }
}

struct AllFiles;
impl WalkRules for AllFiles {}

impl FilesSource {
    pub fn new(paths: Vec<PathBuf>) -> Self {
        FilesSource { paths }
    }
}

/// A node whose file content may still be in the hasher's queue.
pub(crate) struct Entry {
    pub node: Node,
    pub pending: Option<PendingContent>,
}

/// One walk over file trees into a backup session.
pub(crate) struct Walk<'a> {
    pub session: &'a mut BackupSession,
    splitter: FastCdc,
    rules: &'a dyn WalkRules,
    pub report: SourceReport,
}

pub(crate) fn base_node(name: &[u8], meta: &fs::Metadata, kind: NodeKind) -> Node {
    Node {
        mode: meta.mode() & 0o7777,
        mtime_ns: meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec()),
        uid: meta.uid(),
        gid: meta.gid(),
        ..Node::new(name, kind)
    }
}

impl<'a> Walk<'a> {
    pub fn new(session: &'a mut BackupSession, rules: &'a dyn WalkRules) -> Self {
        let splitter = session.content_splitter();
        Walk {
            session,
            splitter,
            rules,
            report: SourceReport::default(),
        }
    }

    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.report.warnings.push(message);
    }

    /// Records a failure to read `path`, unless vanishing is normal for this tree.
    ///
    /// In a live tree (a database's data directory) any other failure is fatal: a backup
    /// missing a relation file would restore to a corrupt database, so PostgreSQL's own
    /// base backup fails too.
    fn unreadable(
        &mut self,
        path: &Path,
        what: &str,
        e: std::io::Error,
    ) -> Result<(), PipelineError> {
        if self.rules.live_files() {
            if e.kind() == std::io::ErrorKind::NotFound {
                return Ok(());
            }
            return Err(PipelineError::Read {
                what: format!("{} ({what})", path.display()),
                source: e,
            });
        }
        self.report.stats.skipped += 1;
        self.warn(format!("{}: cannot {what}: {e}", path.display()));
        Ok(())
    }

    /// The entry for `path` (named `name`), or `None` when it is skipped.
    pub fn visit(&mut self, path: &Path, name: &[u8]) -> Result<Option<Entry>, PipelineError> {
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) => {
                self.unreadable(path, "stat", e)?;
                return Ok(None);
            }
        };
        let file_type = meta.file_type();
        let keep = self.rules.keep(path, name, file_type.is_dir());
        if keep == Keep::No {
            return Ok(None);
        }
        if keep == Keep::EmptyDir && !file_type.is_dir() {
            // A kept-empty directory that is a symlink elsewhere is stored as the real,
            // empty directory a restore needs (PostgreSQL's base backup does the same).
            let mut node = base_node(name, &meta, NodeKind::Dir);
            node.mode = 0o700;
            node.subtree = Some(self.store_tree(Vec::new())?);
            self.report.stats.dirs += 1;
            return Ok(Some(Entry {
                node,
                pending: None,
            }));
        }
        if file_type.is_file() {
            let file = match File::open(path) {
                Ok(file) => file,
                Err(e) => {
                    self.unreadable(path, "open", e)?;
                    return Ok(None);
                }
            };
            let node = base_node(name, &meta, NodeKind::File);
            let what = path.display().to_string();
            let size = Some(meta.len());
            let pending = match (self.rules.live_files(), self.rules.page_size()) {
                (true, Some(page)) => {
                    let exact = ExactSize::new(file, meta.len());
                    self.session.add_pages(exact, page, size, &what)?
                }
                (true, None) => {
                    let exact = ExactSize::new(file, meta.len());
                    self.session
                        .add_stream(exact, &mut self.splitter, size, &what)?
                }
                (false, Some(page)) => self.session.add_pages(file, page, size, &what)?,
                (false, None) => self
                    .session
                    .add_stream(file, &mut self.splitter, size, &what)?,
            };
            self.report.stats.files += 1;
            Ok(Some(Entry {
                node,
                pending: Some(pending),
            }))
        } else if file_type.is_dir() {
            let mut node = base_node(name, &meta, NodeKind::Dir);
            node.subtree = Some(if keep == Keep::EmptyDir {
                self.store_tree(Vec::new())?
            } else {
                self.dir(path)?
            });
            self.report.stats.dirs += 1;
            Ok(Some(Entry {
                node,
                pending: None,
            }))
        } else if file_type.is_symlink() {
            let target = match fs::read_link(path) {
                Ok(target) => target,
                Err(e) => {
                    self.report.stats.skipped += 1;
                    self.warn(format!("{}: cannot read link: {e}", path.display()));
                    return Ok(None);
                }
            };
            let mut node = base_node(name, &meta, NodeKind::Symlink);
            let (target, target_hex) = text_and_hex(target.as_os_str().as_bytes().to_vec());
            node.target = Some(target);
            node.target_hex = target_hex;
            self.report.stats.symlinks += 1;
            Ok(Some(Entry {
                node,
                pending: None,
            }))
        } else {
            self.report.stats.skipped += 1;
            tracing::warn!("{}: special file skipped", path.display());
            Ok(None)
        }
    }

    fn dir(&mut self, path: &Path) -> Result<crate::repo::id::BlobId, PipelineError> {
        let entries = self.dir_entries(path)?;
        self.store_tree(entries)
    }

    /// The entries of directory `path`, its subdirectories stored, its tree not yet.
    pub fn dir_entries(&mut self, path: &Path) -> Result<Vec<Entry>, PipelineError> {
        let mut names = Vec::new();
        match fs::read_dir(path) {
            Ok(entries) => {
                for entry in entries {
                    match entry {
                        Ok(entry) => names.push(entry.file_name()),
                        Err(e) => self.unreadable(path, "list", e)?,
                    }
                }
            }
            Err(e) => self.unreadable(path, "list", e)?,
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        self.rules.visit_order(path, &mut names);
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            if let Some(entry) = self.visit(&path.join(&name), name.as_bytes())? {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// An entry for a file whose content is `data` (a `backup_label` made by the server).
    pub fn bytes_entry(&mut self, node: Node, data: &[u8]) -> Result<Entry, PipelineError> {
        let what = node.name.clone();
        let pending =
            self.session
                .add_stream(data, &mut self.splitter, Some(data.len() as u64), &what)?;
        self.report.stats.files += 1;
        Ok(Entry {
            node,
            pending: Some(pending),
        })
    }

    /// Resolves the entries' file contents (waiting for the hasher only here, once per
    /// directory) and stores the tree.
    pub fn store_tree(
        &mut self,
        mut entries: Vec<Entry>,
    ) -> Result<crate::repo::id::BlobId, PipelineError> {
        entries.sort_by_cached_key(|e| e.node.os_name().map(|o| o.as_bytes().to_vec()));
        let mut tree = Tree::default();
        for Entry { mut node, pending } in entries {
            if let Some(pending) = pending {
                let content = self.session.wait(pending)?;
                node.size = content.size;
                node.content = content.blobs;
                node.content_lists = content.lists;
            }
            tree.nodes.push(node);
        }
        self.session
            .add_blob(BlobKind::Tree, Bytes::from(tree.encode()))
    }
}

/// A file read as exactly `len` bytes, the size it had when listed: cut short if it grew,
/// padded with zeros if it shrank. What PostgreSQL's own base backup does; WAL replay
/// repairs either.
struct ExactSize<R> {
    inner: std::io::Take<R>,
    pad: u64,
}

impl<R: Read> ExactSize<R> {
    fn new(inner: R, len: u64) -> Self {
        ExactSize {
            inner: inner.take(len),
            pad: 0,
        }
    }
}

impl<R: Read> Read for ExactSize<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.inner.limit() > 0 {
            let n = self.inner.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            // Shorter than listed: the rest is zeros.
            self.pad = self.inner.limit();
            self.inner.set_limit(0);
        }
        let n = buf
            .len()
            .min(usize::try_from(self.pad).unwrap_or(usize::MAX));
        buf[..n].fill(0);
        self.pad -= n as u64;
        Ok(n)
    }
}

/// The absolute form of `path` with `.` and `..` resolved by name (symlinks are kept as
/// given), so `backup files ..` records `/srv` and names the entry `srv`, not `..`.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl Source for FilesSource {
    fn kind(&self) -> &'static str {
        "files"
    }

    fn run(&mut self, session: &mut BackupSession) -> Result<SourceOutcome, PipelineError> {
        let mut walk = Walk::new(session, &AllFiles);
        let mut root: Vec<Entry> = Vec::new();
        for path in &self.paths {
            let absolute = normalize(path);
            walk.report.paths.push(absolute.display().to_string());
            let name = match absolute.file_name() {
                Some(name) => name.as_bytes().to_vec(),
                None => b"root".to_vec(),
            };
            if root
                .iter()
                .any(|e| e.node.os_name().is_some_and(|o| o.as_bytes() == name))
            {
                return Err(PipelineError::Read {
                    what: path.display().to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "two paths with the same last component; back them up separately",
                    ),
                });
            }
            match fs::symlink_metadata(&absolute) {
                Err(source) => {
                    return Err(PipelineError::Read {
                        what: path.display().to_string(),
                        source,
                    })
                }
                Ok(_) => {
                    if let Some(entry) = walk.visit(&absolute, &name)? {
                        root.push(entry);
                    }
                }
            }
        }
        let tree = walk.store_tree(root)?;
        Ok(SourceOutcome {
            tree,
            report: walk.report,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_dots_by_name() {
        assert_eq!(normalize(Path::new("/srv/app/..")), PathBuf::from("/srv"));
        assert_eq!(
            normalize(Path::new("/srv/./app/.")),
            PathBuf::from("/srv/app")
        );
        assert_eq!(normalize(Path::new("/..")), PathBuf::from("/"));
        assert!(normalize(Path::new("rel")).is_absolute());
    }
}
