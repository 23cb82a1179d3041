//! `verify`: prove the repository restores, or name exactly what would not.
//!
//! Structure (always): every index file opens; every pack an index names exists with the
//! recorded size; every snapshot opens; every tree reachable from a snapshot opens and
//! every blob it names is indexed. With `read_data`: every indexed pack is read whole,
//! its hash checked against its name, its trailer checked against the index, and every
//! blob in it decrypted, decompressed and re-hashed.
//!
//! Problems are collected, not thrown: one damaged pack must not hide another. Each names
//! the object key, the blob and a snapshot that needs it, where those apply.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::repo::blob::{open_blob_in_place, open_group, BlobError, BlobKind, OpenedGroup};
use crate::repo::id::{content_hash, BlobId, PackId, SnapshotId};
use crate::repo::index::IndexPack;
use crate::repo::master_index::MasterIndex;
use crate::repo::pack::{read_pack_trailer, PackEntry};
use crate::repo::tree::{decode_list, NodeKind, Tree};
use crate::repo::{layout, RepoError, Repository};

/// One thing wrong with the repository.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The stored object at fault (`data/ab/ab…`, `index/…`, `snapshots/…`).
    pub object: Option<String>,
    pub blob: Option<BlobId>,
    /// A snapshot that needs the damaged object (the first found).
    pub snapshot: Option<SnapshotId>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        if let Some(blob) = &self.blob {
            write!(f, "blob {blob}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(snapshot) = &self.snapshot {
            write!(f, " (needed by snapshot {})", snapshot.short())?;
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub snapshots: u64,
    pub index_files: u64,
    pub packs: u64,
    pub blobs: u64,
    pub trees: u64,
    /// Pack bytes read and checked (with `read_data`).
    pub bytes_checked: u64,
    /// Packs present but named by no index: left by an interrupted backup; harmless.
    pub unindexed_packs: u64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    fn problem(
        &mut self,
        object: Option<String>,
        blob: Option<BlobId>,
        snapshot: Option<SnapshotId>,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            object,
            blob,
            snapshot,
            message: message.into(),
        });
    }
}

/// Runs the checks. Only an unreadable repository (no listing at all) is an `Err`;
/// everything else is a [`Problem`] in the report.
///
/// # Errors
/// Store failures while listing.
pub async fn verify(
    repo: &Repository,
    read_data: bool,
    parallel: usize,
) -> Result<VerifyReport, RepoError> {
    let mut report = VerifyReport::default();

    // 1. Index files.
    let mut master = MasterIndex::default();
    let mut pack_entries: HashMap<PackId, IndexPack> = HashMap::new();
    let ids = repo.list_index_ids().await?;
    let loaded: Vec<_> = stream::iter(ids)
        .map(|id| async move { (id, repo.read_index(id).await) })
        .buffer_unordered(16)
        .collect()
        .await;
    for (id, result) in loaded {
        match result {
            Ok(packs) => {
                report.index_files += 1;
                for pack in &packs {
                    pack_entries.entry(pack.id).or_insert_with(|| pack.clone());
                }
                master.add(id, packs);
            }
            Err(e) => report.problem(
                Some(layout::index(&id).to_string()),
                None,
                None,
                format!("cannot read index: {e}"),
            ),
        }
    }

    // 2. Packs named by the index against what the store holds.
    let stored: HashMap<String, u64> = repo
        .store()
        .list(layout::DATA)
        .await?
        .into_iter()
        .map(|m| (m.key.to_string(), m.size))
        .collect();
    let mut indexed_keys = HashSet::new();
    for (pack, len) in master.packs() {
        let key = layout::pack(pack).to_string();
        match stored.get(&key) {
            None => report.problem(
                Some(key.clone()),
                None,
                None,
                "pack is named by the index but missing from the store",
            ),
            Some(size) if size != len => report.problem(
                Some(key.clone()),
                None,
                None,
                format!("pack is {size} bytes, the index says {len}"),
            ),
            Some(_) => {}
        }
        indexed_keys.insert(key);
    }
    report.packs = master.packs().len() as u64;
    report.blobs = master.blob_count() as u64;
    report.unindexed_packs = stored.keys().filter(|k| !indexed_keys.contains(*k)).count() as u64;

    // 3. Snapshots and every tree they reach.
    let mut needed_by: HashMap<BlobId, SnapshotId> = HashMap::new();
    let mut trees_seen = HashSet::new();
    for id in repo.list_snapshot_ids().await? {
        let snapshot = match repo.read_snapshot(id).await {
            Ok(s) => s,
            Err(e) => {
                report.problem(
                    Some(layout::snapshot(&id).to_string()),
                    None,
                    Some(id),
                    format!("cannot read snapshot: {e}"),
                );
                continue;
            }
        };
        report.snapshots += 1;
        let mut stack = vec![snapshot.tree];
        while let Some(tree_id) = stack.pop() {
            needed_by.entry(tree_id).or_insert(id);
            if !trees_seen.insert(tree_id) {
                continue;
            }
            report.trees += 1;
            let Some(loc) = master.get(&tree_id) else {
                report.problem(None, Some(tree_id), Some(id), "tree is not in any index");
                continue;
            };
            let pack_key = layout::pack(&loc.pack).to_string();
            let tree = match repo
                .read_blob(&master, &tree_id)
                .await
                .map(|raw| Tree::decode(&raw))
            {
                Ok(Ok(tree)) => tree,
                Ok(Err(e)) => {
                    report.problem(
                        Some(pack_key),
                        Some(tree_id),
                        Some(id),
                        format!("tree does not decode: {e}"),
                    );
                    continue;
                }
                Err(e) => {
                    report.problem(
                        Some(pack_key),
                        Some(tree_id),
                        Some(id),
                        format!("cannot read tree: {e}"),
                    );
                    continue;
                }
            };
            for node in tree.nodes {
                match node.kind {
                    NodeKind::Dir => match node.subtree {
                        Some(sub) => stack.push(sub),
                        None => report.problem(
                            None,
                            Some(tree_id),
                            Some(id),
                            format!("directory {:?} has no subtree", node.name),
                        ),
                    },
                    NodeKind::File => {
                        let mut content = node.content;
                        for list in &node.content_lists {
                            needed_by.entry(*list).or_insert(id);
                            match repo
                                .read_blob(&master, list)
                                .await
                                .map_err(|e| e.to_string())
                                .and_then(|raw| decode_list(&raw))
                            {
                                Ok(ids) => content.extend(ids),
                                Err(e) => report.problem(
                                    None,
                                    Some(*list),
                                    Some(id),
                                    format!("content list of {:?}: {e}", node.name),
                                ),
                            }
                        }
                        for blob in content {
                            needed_by.entry(blob).or_insert(id);
                            if !master.contains(&blob) {
                                report.problem(
                                    None,
                                    Some(blob),
                                    Some(id),
                                    format!("data of {:?} is not in any index", node.name),
                                );
                            }
                        }
                    }
                    NodeKind::Symlink => {}
                }
            }
        }
    }

    // 4. Every byte, if asked.
    if read_data {
        let needed_by = Arc::new(needed_by);
        let packs: Vec<IndexPack> = pack_entries
            .into_values()
            .filter(|p| stored.contains_key(&layout::pack(&p.id).to_string()))
            .collect();
        let results: Vec<(u64, Vec<Problem>)> = stream::iter(packs)
            .map(|pack| {
                let needed_by = needed_by.clone();
                async move { check_pack(repo, pack, &needed_by).await }
            })
            .buffer_unordered(parallel.max(1))
            .collect()
            .await;
        for (bytes, problems) in results {
            report.bytes_checked += bytes;
            report.problems.extend(problems);
        }
    }
    report
        .problems
        .sort_by(|a, b| a.object.cmp(&b.object).then(a.blob.cmp(&b.blob)));
    Ok(report)
}

/// Reads one pack whole and checks everything in it.
async fn check_pack(
    repo: &Repository,
    pack: IndexPack,
    needed_by: &HashMap<BlobId, SnapshotId>,
) -> (u64, Vec<Problem>) {
    let key = layout::pack(&pack.id);
    let object = Some(key.to_string());
    let bytes = match repo.store().get(&key).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return (
                0,
                vec![Problem {
                    object,
                    blob: None,
                    snapshot: None,
                    message: format!("cannot read pack: {e}"),
                }],
            )
        }
    };
    let len = bytes.len() as u64;
    let keys = repo.keys().clone();
    let snapshots: Vec<(BlobId, Option<SnapshotId>)> = pack
        .entries
        .iter()
        .map(|e| (e.id, needed_by.get(&e.id).copied()))
        .collect();
    let checked = tokio::task::spawn_blocking(move || {
        // Blobs are decrypted in place: the pack is read once and nothing is copied.
        let mut bytes = bytes::BytesMut::from(bytes);
        let mut problems = Vec::new();
        let snapshot_of = |id: &BlobId| {
            snapshots
                .iter()
                .find(|(b, _)| b == id)
                .and_then(|(_, s)| *s)
        };
        let mut push = |blob: Option<BlobId>, message: String| {
            problems.push(Problem {
                object: object.clone(),
                blob,
                snapshot: blob.as_ref().and_then(snapshot_of),
                message,
            })
        };
        if content_hash(&bytes) != pack.id.0 {
            push(
                None,
                "pack content does not match its name (hash mismatch)".into(),
            );
        }
        match read_pack_trailer(&keys, &bytes) {
            Ok(trailer) => {
                let in_trailer: HashSet<&PackEntry> = trailer.iter().collect();
                for e in &pack.entries {
                    if !in_trailer.contains(e) {
                        push(
                            Some(e.id),
                            "index entry does not match the pack trailer".into(),
                        );
                    }
                }
            }
            Err(e) => push(None, format!("pack trailer: {e}")),
        }
        // Members of one group share its bytes and are listed one after another (§8): open
        // each group once, from a copy (decrypting in place would spoil the bytes for a
        // group listed again further on), and keep only the current one in memory.
        let mut group: Option<((u32, u32), Result<OpenedGroup, String>)> = None;
        let chain = |err: BlobError| ErrorChain(&err).to_string();
        for e in &pack.entries {
            let start = e.offset as usize;
            let Some(sealed) = bytes.get_mut(start..start + e.sealed_len as usize) else {
                push(Some(e.id), "blob lies outside the pack".into());
                continue;
            };
            let opened = if e.kind == BlobKind::Grouped {
                let at = (e.offset, e.sealed_len);
                if group.as_ref().map(|(key, _)| *key) != Some(at) {
                    let mut copy = sealed.to_vec();
                    group = Some((at, open_group(&keys, &e.id, &mut copy).map_err(chain)));
                }
                let Some((_, opened)) = &group else {
                    continue;
                };
                match opened {
                    Ok(group) => group
                        .member(&keys, &e.id, e.raw_len as usize)
                        .map(drop)
                        .map_err(chain),
                    Err(message) => Err(message.clone()),
                }
            } else {
                open_blob_in_place(&keys, e.kind, &e.id, sealed, e.raw_len as usize)
                    .map(drop)
                    .map_err(chain)
            };
            if let Err(message) = opened {
                push(Some(e.id), message);
            }
        }
        problems
    })
    .await;
    match checked {
        Ok(problems) => (len, problems),
        Err(e) => (
            len,
            vec![Problem {
                object: Some(key.to_string()),
                blob: None,
                snapshot: None,
                message: format!("check aborted: {e}"),
            }],
        ),
    }
}

/// Formats an error with its sources, `a: b: c`.
struct ErrorChain<'a>(&'a dyn std::error::Error);

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}
