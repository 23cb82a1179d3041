//! Walking a snapshot's trees into a flat, ordered list of entries, checking every name.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::repo::blob::BlobKind;
use crate::repo::id::{BlobId, SnapshotId};
use crate::repo::master_index::MasterIndex;
use crate::repo::tree::{decode_list, Node, NodeKind, Tree};
use crate::repo::{RepoError, Repository};

use super::RestoreError;

/// One entry to restore, at `path` relative to the target. Directories come before what
/// they contain.
#[derive(Debug, Clone)]
pub struct PlannedEntry {
    pub path: PathBuf,
    pub node: Node,
}

/// The content ids a file's list blobs name, in order.
async fn read_lists(
    repo: &Repository,
    index: &MasterIndex,
    lists: &[BlobId],
) -> Result<Vec<BlobId>, String> {
    let mut ids = Vec::new();
    for list in lists {
        let raw = repo
            .read_blob(index, list)
            .await
            .map_err(|e| format!("content list {list}: {e}"))?;
        ids.extend(decode_list(&raw).map_err(|e| format!("content list {list}: {e}"))?);
    }
    Ok(ids)
}

/// A name that is safe as a single path component.
fn safe_name(name: &OsString) -> bool {
    let raw = name.as_bytes();
    !raw.is_empty() && raw != b"." && raw != b".." && !raw.contains(&b'/') && !raw.contains(&0)
}

/// Reads every tree under `root` and returns the entries in restore order.
///
/// # Errors
/// [`RestoreError::UnsafeName`] / [`RestoreError::DuplicateName`] for a hostile tree, or
/// the repository error reading a tree.
pub async fn plan_tree(
    repo: &Repository,
    index: &MasterIndex,
    snapshot: SnapshotId,
    root: BlobId,
) -> Result<Vec<PlannedEntry>, RestoreError> {
    let mut out = Vec::new();
    // Depth-first with an explicit stack, so a deep tree cannot overflow ours.
    let mut stack: Vec<(PathBuf, BlobId, usize)> = vec![(PathBuf::new(), root, 0)];
    while let Some((dir, tree_id, depth)) = stack.pop() {
        if depth > 4096 {
            return Err(RestoreError::BadTree {
                snapshot,
                tree: tree_id,
                reason: "directory nesting deeper than 4096".into(),
            });
        }
        let loc = index
            .get(&tree_id)
            .ok_or(RepoError::BlobNotIndexed { blob: tree_id })?;
        if loc.kind != BlobKind::Tree {
            return Err(RestoreError::BadTree {
                snapshot,
                tree: tree_id,
                reason: "blob is not a tree".into(),
            });
        }
        let raw = repo.read_blob(index, &tree_id).await?;
        let tree = Tree::decode(&raw).map_err(|e| RestoreError::BadTree {
            snapshot,
            tree: tree_id,
            reason: e.to_string(),
        })?;
        let mut seen = HashSet::new();
        let mut subdirs = Vec::new();
        for node in tree.nodes {
            let name =
                node.os_name()
                    .filter(safe_name)
                    .ok_or_else(|| RestoreError::UnsafeName {
                        snapshot,
                        tree: tree_id,
                        name: node.name.clone(),
                    })?;
            if !seen.insert(name.clone()) {
                return Err(RestoreError::DuplicateName {
                    snapshot,
                    tree: tree_id,
                    name: node.name.clone(),
                });
            }
            let path = dir.join(&name);
            let mut node = node;
            if !node.content_lists.is_empty() {
                node.content =
                    read_lists(repo, index, &node.content_lists)
                        .await
                        .map_err(|reason| RestoreError::BadTree {
                            snapshot,
                            tree: tree_id,
                            reason: format!("{:?}: {reason}", node.name),
                        })?;
            }
            if node.kind == NodeKind::Dir {
                let sub = node.subtree.ok_or_else(|| RestoreError::BadTree {
                    snapshot,
                    tree: tree_id,
                    reason: format!("directory {:?} has no subtree", node.name),
                })?;
                subdirs.push((path.clone(), sub, depth + 1));
            }
            out.push(PlannedEntry { path, node });
        }
        // Reverse so the stack pops subdirectories in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}
