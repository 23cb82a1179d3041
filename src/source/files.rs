//! Directory trees: regular files, directories and symlinks with modes, owners and mtimes.
//!
//! Each path given becomes one entry of the root tree, named by its last component.
//! Entries are visited in byte order of their names, so an unchanged directory yields the
//! same tree blob and dedups. Special files (devices, FIFOs, sockets) are skipped with a
//! warning; an entry that cannot be read is recorded as a warning and the run goes on
//! (the command then exits non-zero), as restic and tar do.

use std::fs::{self, File};
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

impl FilesSource {
    pub fn new(paths: Vec<PathBuf>) -> Self {
        FilesSource { paths }
    }
}

/// A node whose file content may still be in the hasher's queue.
struct Entry {
    node: Node,
    pending: Option<PendingContent>,
}

struct Walk<'a> {
    session: &'a mut BackupSession,
    splitter: FastCdc,
    report: SourceReport,
}

fn base_node(name: &[u8], meta: &fs::Metadata, kind: NodeKind) -> Node {
    let (name, name_hex) = text_and_hex(name.to_vec());
    Node {
        name,
        name_hex,
        kind,
        mode: meta.mode() & 0o7777,
        mtime_ns: meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec()),
        uid: meta.uid(),
        gid: meta.gid(),
        size: 0,
        content: Vec::new(),
        subtree: None,
        target: None,
        target_hex: None,
    }
}

impl Walk<'_> {
    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.report.warnings.push(message);
    }

    /// The entry for `path` (named `name`), or `None` when it is skipped.
    fn visit(&mut self, path: &Path, name: &[u8]) -> Result<Option<Entry>, PipelineError> {
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) => {
                self.report.stats.skipped += 1;
                self.warn(format!("{}: cannot stat: {e}", path.display()));
                return Ok(None);
            }
        };
        let file_type = meta.file_type();
        if file_type.is_file() {
            let file = match File::open(path) {
                Ok(file) => file,
                Err(e) => {
                    self.report.stats.skipped += 1;
                    self.warn(format!("{}: cannot open: {e}", path.display()));
                    return Ok(None);
                }
            };
            let node = base_node(name, &meta, NodeKind::File);
            let what = path.display().to_string();
            let pending =
                self.session
                    .add_stream(file, &mut self.splitter, Some(meta.len()), &what)?;
            self.report.stats.files += 1;
            Ok(Some(Entry {
                node,
                pending: Some(pending),
            }))
        } else if file_type.is_dir() {
            let mut node = base_node(name, &meta, NodeKind::Dir);
            node.subtree = Some(self.dir(path)?);
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
        let mut names = Vec::new();
        match fs::read_dir(path) {
            Ok(entries) => {
                for entry in entries {
                    match entry {
                        Ok(entry) => names.push(entry.file_name()),
                        Err(e) => self.warn(format!("{}: cannot list: {e}", path.display())),
                    }
                }
            }
            Err(e) => {
                self.report.stats.skipped += 1;
                self.warn(format!("{}: cannot list: {e}", path.display()));
            }
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            if let Some(entry) = self.visit(&path.join(&name), name.as_bytes())? {
                entries.push(entry);
            }
        }
        self.store_tree(entries)
    }

    /// Resolves the entries' file contents (waiting for the hasher only here, once per
    /// directory) and stores the tree.
    fn store_tree(
        &mut self,
        entries: Vec<Entry>,
    ) -> Result<crate::repo::id::BlobId, PipelineError> {
        let mut tree = Tree::default();
        for Entry { mut node, pending } in entries {
            if let Some(pending) = pending {
                let content = self.session.wait(pending)?;
                node.size = content.size;
                node.content = content.blobs;
            }
            tree.nodes.push(node);
        }
        self.session
            .add_blob(BlobKind::Tree, Bytes::from(tree.encode()))
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
        let splitter = session.content_splitter();
        let mut walk = Walk {
            session,
            splitter,
            report: SourceReport::default(),
        };
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
        root.sort_by_key(|e| e.node.os_name().map(|o| o.as_bytes().to_vec()));
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
