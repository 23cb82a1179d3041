//! Vault raft snapshots as a source: a `.snap` stream (from Vault's API, a file made by
//! `vault operator raft snapshot save`, or stdin) unpacked into its members, each stored
//! as a file of the snapshot's root tree.
//!
//! What a snapshot of kind `vault` holds (REPOSITORY.md §11): one file node per member,
//! `SHA256SUMS`, `SHA256SUMS.sealed` (when present), `meta.json`, `state.bin`, with the
//! mode and time of their tar headers. `state.bin` is cut by content ([`STATE_CHUNKER`]),
//! so tonight's snapshot of a slowly changing Vault stores little beside last night's; the
//! small members are stored whole. The snapshot's `source` object records the raft facts of
//! `meta.json` ([`RaftMeta::facts`]) and where the snapshot came from.
//!
//! Invariant: the source returns `Ok` only when [`read_archive`] has verified every member
//! against the snapshot's own `SHA256SUMS`. `state.bin` flows into the pipeline before its
//! hash is known (it precedes `SHA256SUMS` in the archive, and is too large to hold), so a
//! mismatch fails the source after data went to the pipeline; [`crate::backup::run_backup`]
//! then writes no snapshot, and the blobs already stored are unreferenced leftovers.

use std::io::Read;

use bytes::Bytes;

use crate::pipeline::{BackupSession, PipelineError};
use crate::repo::blob::BlobKind;
use crate::repo::config::{ChunkerAlgorithm, ChunkerParams};
use crate::repo::tree::{Node, Tree};
use crate::vault::archive::{read_archive, MemberSink};
use crate::vault::{Member, RaftMeta, VaultSnapshotError};

use super::{Source, SourceOutcome, SourceReport};

/// Content-defined chunking for `state.bin`: min 2 KiB, average 4 KiB, max 16 KiB.
///
/// Why this small: Vault's FSM writes its storage entries in key order, each value
/// encrypted by the barrier (random bytes, rewritten whole when the entry changes), and
/// entries are small (tokens, leases and secrets of a few hundred bytes to a few KiB). A
/// changed, new or deleted entry costs the chunks it spans plus about one more while the
/// cut points resynchronise: about 2.5 chunks, 10 KiB, per entry touched with 2 KiB
/// entries (tests/vault.rs: 2.3% of 3,000 entries touched stores 11.5% of the first
/// night). 16 KiB chunks (pg_dump's) would store about three times as much, the
/// repository's 1 MiB chunks nearly everything. Smaller still would cost more in ids than
/// it saves: every chunk is 32 bytes in the snapshot's content list, which is stored again
/// wherever a chunk under it changed (2 MiB of ids per 256 MiB of state at 4 KiB).
pub const STATE_CHUNKER: ChunkerParams = ChunkerParams {
    algorithm: ChunkerAlgorithm::FastCdc2020,
    min_bytes: 2 * 1024,
    avg_bytes: 4 * 1024,
    max_bytes: 16 * 1024,
};

/// Where a snapshot came from, as the snapshot records it (`origin`, and `address` for
/// the API).
#[derive(Debug, Clone)]
pub enum Origin {
    /// Vault's API at this address.
    Api {
        address: String,
    },
    /// A file made by `vault operator raft snapshot save`.
    File {
        path: String,
    },
    Stdin,
}

impl Origin {
    /// How errors name the input.
    fn describe(&self) -> String {
        match self {
            Origin::Api { address } => format!("the snapshot from Vault at {address}"),
            Origin::File { path } => format!("snapshot file {path}"),
            Origin::Stdin => "the snapshot on standard input".into(),
        }
    }
}

/// A raft snapshot read from any stream.
pub struct VaultSource {
    input: Option<Box<dyn Read + Send>>,
    origin: Origin,
}

impl VaultSource {
    pub fn new(input: Box<dyn Read + Send>, origin: Origin) -> VaultSource {
        VaultSource {
            input: Some(input),
            origin,
        }
    }
}

impl From<VaultSnapshotError> for PipelineError {
    fn from(e: VaultSnapshotError) -> PipelineError {
        PipelineError::Source(Box::new(e))
    }
}

/// A snapshot that failed, named by where it came from.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct VaultSourceError {
    what: String,
    #[source]
    source: VaultSnapshotError,
}

/// Stores the members as they come, keeping their tree nodes.
struct StoringSink<'a> {
    session: &'a mut BackupSession,
    what: String,
    nodes: Vec<Node>,
}

impl StoringSink<'_> {
    fn node(member: &Member) -> Node {
        Node {
            mode: member.mode & 0o7777,
            mtime_ns: i64::try_from(member.mtime)
                .ok()
                .and_then(|s| s.checked_mul(1_000_000_000))
                .unwrap_or(0),
            ..Node::new(
                member.name.file_name().as_bytes(),
                crate::repo::tree::NodeKind::File,
            )
        }
    }
}

impl MemberSink for StoringSink<'_> {
    type Error = PipelineError;

    fn small(&mut self, member: &Member, data: &[u8]) -> Result<(), PipelineError> {
        let mut node = Self::node(member);
        node.size = data.len() as u64;
        if !data.is_empty() {
            let blob = Bytes::copy_from_slice(data);
            node.content = vec![self.session.add_blob(BlobKind::Data, blob)?];
        }
        self.nodes.push(node);
        Ok(())
    }

    fn state(&mut self, member: &Member, data: &mut dyn Read) -> Result<(), PipelineError> {
        let mut splitter = self.session.content_splitter_with(&STATE_CHUNKER);
        let what = format!("state.bin of {}", self.what);
        let pending = self
            .session
            .add_stream(data, &mut splitter, Some(member.size), &what)?;
        let content = self.session.wait(pending)?;
        let node = super::stream_node(member.name.file_name().as_bytes(), content);
        self.nodes.push(Node {
            mode: member.mode & 0o7777,
            mtime_ns: Self::node(member).mtime_ns,
            ..node
        });
        Ok(())
    }
}

impl Source for VaultSource {
    fn kind(&self) -> &'static str {
        "vault"
    }

    fn run(&mut self, session: &mut BackupSession) -> Result<SourceOutcome, PipelineError> {
        let input = self.input.take().ok_or(PipelineError::Stopped)?;
        let what = self.origin.describe();
        let mut sink = StoringSink {
            session: &mut *session,
            what: what.clone(),
            nodes: Vec::new(),
        };
        let summary = match read_archive(input, &mut sink) {
            Ok(summary) => summary,
            Err(PipelineError::Source(e)) => match e.downcast::<VaultSnapshotError>() {
                Ok(source) => {
                    return Err(PipelineError::Source(Box::new(VaultSourceError {
                        what,
                        source: *source,
                    })))
                }
                Err(other) => return Err(PipelineError::Source(other)),
            },
            Err(other) => return Err(other),
        };
        let mut nodes = sink.nodes;
        nodes.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        let files = nodes.len() as u64;
        let tree_id = session.add_blob(BlobKind::Tree, Bytes::from(Tree { nodes }.encode()))?;
        let mut report = SourceReport::default();
        report.stats.files = files;
        report.facts = source_facts(&self.origin, &summary.meta, summary.sealed());
        Ok(SourceOutcome {
            tree: tree_id,
            report,
        })
    }
}

/// The snapshot's `source` object (REPOSITORY.md §11, kind `vault`).
fn source_facts(
    origin: &Origin,
    meta: &RaftMeta,
    sealed: bool,
) -> serde_json::Map<String, serde_json::Value> {
    let mut facts = serde_json::Map::new();
    match origin {
        Origin::Api { address } => {
            facts.insert("origin".into(), "api".into());
            facts.insert("address".into(), address.clone().into());
        }
        Origin::File { path } => {
            facts.insert("origin".into(), "file".into());
            facts.insert("file".into(), path.clone().into());
        }
        Origin::Stdin => {
            facts.insert("origin".into(), "stdin".into());
        }
    }
    facts.extend(meta.facts());
    facts.insert("sealed_sums".into(), sealed.into());
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_chunker_is_valid() {
        STATE_CHUNKER.validate().unwrap();
    }
}
