//! `--from-stream`: a base backup from `pg_basebackup -Ft -X none -D -` output, for hosts
//! where stowage cannot read the data directory (a container, another machine).
//!
//! The tar stream is read member by member and each file goes through the same page
//! cutting as a direct backup, so nightly streams still dedup page by page. The server
//! put `backup_label` (and `tablespace_map`) into the stream; `backup_manifest`, which
//! pg_basebackup appends when writing to stdout (13+), gives the stop LSN and timeline
//! and lists every file with its size, which is checked against what arrived, so a cut
//! stream is never taken for a whole one. Only the main tablespace fits on one stream:
//! pg_basebackup refuses `-D -` for a cluster with other tablespaces.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use tokio::runtime::Handle;

use crate::pg::backup::{needed_segments, BackupError, BackupLabel, Manifest};
use crate::pg::conninfo::{ConnInfo, ConnInfoError};
use crate::pg::tools::PgTools;
use crate::pipeline::{BackupSession, PipelineError};
use crate::repo::id::BlobId;
use crate::repo::tree::{text_and_hex, Node, NodeKind};
use crate::repo::Repository;
use crate::source::child::ChildStream;
use crate::source::files::{Entry, Walk, WalkRules};
use crate::source::{Source, SourceOutcome};

use super::{wait_for_backup_wal, BaseFacts};

/// Where the tar stream comes from.
#[derive(Debug, Clone)]
pub enum StreamInput {
    /// Standard input (`pg_basebackup … -D - | stowage backup pg-base --from-stream -`).
    Stdin,
    /// Run `pg_basebackup` against `conninfo` and read its standard output.
    Spawn {
        conninfo: String,
        fast_checkpoint: bool,
        label: String,
        /// Where the client programs are (`--pg-bin`); found as for pg_dump otherwise.
        pg_bin: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Clone)]
pub struct StreamOptions {
    pub input: StreamInput,
    pub cluster: String,
    pub wal_timeout: Duration,
}

pub struct StreamSource {
    runtime: Handle,
    repo: Repository,
    options: StreamOptions,
}

impl StreamSource {
    pub fn new(runtime: Handle, repo: Repository, options: StreamOptions) -> Self {
        StreamSource {
            runtime,
            repo,
            options,
        }
    }
}

/// Page size of relation files in a stream. The stream does not say; 8 KiB is
/// PostgreSQL's default and what every packaged build uses. Another size only costs
/// dedup, never correctness: pages are cut for dedup, not interpreted.
const STREAM_BLOCK_SIZE: usize = 8192;
/// Small members read whole to learn from: `backup_label`, `PG_VERSION`, `pg_control`,
/// `backup_manifest` (which lists every file: a few hundred bytes each).
const MAX_READ_WHOLE: u64 = 256 << 20;
/// Deepest member path accepted.
const MAX_DEPTH: usize = 64;

/// A directory being assembled from members that may come in any order.
#[derive(Default)]
struct Dir {
    node: Option<Node>,
    children: BTreeMap<Vec<u8>, Child_>,
}

enum Child_ {
    Dir(Dir),
    Leaf(Entry),
}

/// Pages for everything: the stream is a data directory.
struct StreamRules;
impl WalkRules for StreamRules {
    fn page_size(&self) -> Option<usize> {
        Some(STREAM_BLOCK_SIZE)
    }
}

/// What the stream taught along the way.
#[derive(Default)]
struct Learned {
    /// Owner (uid, gid) of the first member: given to directories the stream implies.
    owner: (u32, u32),
    backup_label: Option<String>,
    tablespace_map: Option<String>,
    manifest: Option<Vec<u8>>,
    pg_version: Option<String>,
    system_identifier: Option<u64>,
    /// Every regular file's path and size as received, to check against the manifest.
    sizes: BTreeMap<String, u64>,
}

fn stream_error(message: String) -> PipelineError {
    BackupError::Stream(message).into()
}

fn node_of(name: &[u8], header: &tar::Header, kind: NodeKind) -> Node {
    let id = |v: std::io::Result<u64>| v.ok().and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    Node {
        mode: header.mode().unwrap_or(0o600) & 0o7777,
        mtime_ns: header
            .mtime()
            .ok()
            .and_then(|s| i64::try_from(s).ok())
            .unwrap_or(0)
            .saturating_mul(1_000_000_000),
        uid: id(header.uid()),
        gid: id(header.gid()),
        ..Node::new(name, kind)
    }
}

/// A node the stream implies but does not carry (a parent directory, the `pgdata` root,
/// the kept manifest): owned like the stream's members, private, timestamped now.
fn synthetic(name: &[u8], kind: NodeKind, owner: (u32, u32)) -> Node {
    Node {
        uid: owner.0,
        gid: owner.1,
        ..Node::new(name, kind)
    }
}

impl Dir {
    /// The directory at `parts` (created on the way), for a member below it.
    fn at(&mut self, parts: &[&[u8]]) -> Result<&mut Dir, PipelineError> {
        let mut dir = self;
        for part in parts {
            let child = dir
                .children
                .entry(part.to_vec())
                .or_insert_with(|| Child_::Dir(Dir::default()));
            dir = match child {
                Child_::Dir(d) => d,
                Child_::Leaf(_) => {
                    return Err(stream_error(format!(
                        "member below {:?}, which is not a directory",
                        String::from_utf8_lossy(part)
                    )))
                }
            };
        }
        Ok(dir)
    }

    /// Stores this directory's tree (children first) and returns its id.
    fn store(self, walk: &mut Walk<'_>, owner: (u32, u32)) -> Result<BlobId, PipelineError> {
        let mut entries = Vec::with_capacity(self.children.len());
        for (name, child) in self.children {
            entries.push(match child {
                Child_::Leaf(entry) => entry,
                Child_::Dir(dir) => {
                    let mut node = dir
                        .node
                        .clone()
                        .unwrap_or_else(|| synthetic(&name, NodeKind::Dir, owner));
                    node.subtree = Some(dir.store(walk, owner)?);
                    walk.report.stats.dirs += 1;
                    Entry {
                        node,
                        pending: None,
                    }
                }
            });
        }
        walk.store_tree(entries)
    }
}

/// Splits a member path into components, refusing anything that could escape.
fn components(path: &[u8]) -> Result<Vec<&[u8]>, PipelineError> {
    let parts: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .collect();
    if parts.iter().any(|p| *p == b"..") || parts.len() > MAX_DEPTH {
        return Err(stream_error(format!(
            "unsafe member path {:?}",
            String::from_utf8_lossy(path)
        )));
    }
    Ok(parts)
}

/// Reads the whole tar stream into `walk`'s session; returns the data directory tree.
fn read_tar<R: Read>(
    reader: R,
    walk: &mut Walk<'_>,
    learned: &mut Learned,
) -> Result<Dir, PipelineError> {
    let read_err = |what: String| {
        move |source: std::io::Error| PipelineError::Read {
            what: what.clone(),
            source,
        }
    };
    let mut archive = tar::Archive::new(reader);
    let mut root = Dir::default();
    let entries = archive
        .entries()
        .map_err(read_err("the tar stream".into()))?;
    for member in entries {
        let mut member = member.map_err(read_err("the tar stream".into()))?;
        let path = member.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&path).to_string();
        let parts = components(&path)?;
        let Some((name, parents)) = parts.split_last() else {
            continue; // "./" itself
        };
        let header = member.header().clone();
        if learned.sizes.is_empty() && learned.owner == (0, 0) {
            let owner = node_of(b"", &header, NodeKind::Dir);
            learned.owner = (owner.uid, owner.gid);
        }
        let kind = header.entry_type();
        let dir = root.at(parents)?;
        if kind.is_dir() {
            let node = node_of(name, &header, NodeKind::Dir);
            match dir
                .children
                .entry(name.to_vec())
                .or_insert_with(|| Child_::Dir(Dir::default()))
            {
                Child_::Dir(d) => d.node = Some(node),
                Child_::Leaf(_) => {
                    return Err(stream_error(format!("{shown}: a file and a directory")))
                }
            }
            continue;
        }
        let entry = if kind.is_symlink() {
            let target = member
                .link_name_bytes()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            let mut node = node_of(name, &header, NodeKind::Symlink);
            let (target, target_hex) = text_and_hex(target);
            node.target = Some(target);
            node.target_hex = target_hex;
            walk.report.stats.symlinks += 1;
            Entry {
                node,
                pending: None,
            }
        } else if kind.is_file() {
            let size = member.size();
            let node = node_of(name, &header, NodeKind::File);
            let top = parents.is_empty();
            let wanted = match (parents, *name) {
                (_, b"backup_label" | b"tablespace_map" | b"backup_manifest" | b"PG_VERSION")
                    if top =>
                {
                    true
                }
                ([b"global"], b"pg_control") => true,
                _ => false,
            };
            learned.sizes.insert(shown.clone(), size);
            let pending = if wanted && size <= MAX_READ_WHOLE {
                // Grown as bytes arrive: the header's size is a claim, not a promise.
                let mut whole = Vec::new();
                (&mut member)
                    .take(size)
                    .read_to_end(&mut whole)
                    .map_err(read_err(shown.clone()))?;
                learn(learned, parents, name, &whole);
                if top && *name == b"backup_manifest" {
                    // Not part of the data directory: kept beside it (see the module doc).
                    learned.sizes.remove(&shown);
                    continue;
                }
                walk.session.add_stream(
                    &whole[..],
                    &mut walk.session.content_splitter(),
                    Some(size),
                    &shown,
                )?
            } else {
                walk.session
                    .add_pages(&mut member, STREAM_BLOCK_SIZE, Some(size), &shown)?
            };
            walk.report.stats.files += 1;
            Entry {
                node,
                pending: Some(pending),
            }
        } else {
            return Err(stream_error(format!(
                "{shown}: tar member of type {:?}; a base backup stream holds only files, \
                 directories and symlinks",
                kind
            )));
        };
        if dir
            .children
            .insert(name.to_vec(), Child_::Leaf(entry))
            .is_some()
        {
            return Err(stream_error(format!(
                "{shown}: appears twice in the stream"
            )));
        }
    }
    Ok(root)
}

fn learn(learned: &mut Learned, parents: &[&[u8]], name: &[u8], data: &[u8]) {
    let text = || String::from_utf8_lossy(data).to_string();
    match (parents, name) {
        ([], b"backup_label") => learned.backup_label = Some(text()),
        ([], b"tablespace_map") => learned.tablespace_map = Some(text()),
        ([], b"backup_manifest") => learned.manifest = Some(data.to_vec()),
        ([], b"PG_VERSION") => learned.pg_version = Some(text().trim().to_string()),
        ([b"global"], b"pg_control") => {
            learned.system_identifier = crate::pg::control::system_identifier_of(data)
        }
        _ => {}
    }
}

/// Checks the stream against its manifest and returns it.
fn check_manifest(learned: &Learned) -> Result<Manifest, PipelineError> {
    let raw = learned.manifest.as_deref().ok_or_else(|| {
        stream_error(
            "the stream ended without backup_manifest: it was cut short, or made with \
             --no-manifest or by PostgreSQL 12; stowage needs the manifest to know the stop LSN"
                .into(),
        )
    })?;
    let manifest =
        Manifest::parse(raw).map_err(|e| stream_error(format!("backup_manifest: {e}")))?;
    manifest.check(&learned.sizes).map_err(stream_error)?;
    Ok(manifest)
}

/// `pg_basebackup` writing the backup as one tar stream to its stdout.
fn spawn_basebackup(
    conninfo: &str,
    fast: bool,
    label: &str,
    pg_bin: Option<&std::path::Path>,
) -> Result<ChildStream, PipelineError> {
    let tools = PgTools::locate(pg_bin).map_err(|e| stream_error(e.to_string()))?;
    let info: ConnInfo = conninfo
        .parse()
        .map_err(|e: ConnInfoError| stream_error(e.to_string()))?;
    let mut cmd = tools.client("pg_basebackup", &info);
    cmd.args(["-Ft", "-X", "none", "-D", "-"])
        .arg(format!(
            "--checkpoint={}",
            if fast { "fast" } else { "spread" }
        ))
        .args(["-l", label]);
    ChildStream::spawn(cmd, "pg_basebackup").map_err(|e| stream_error(e.to_string()))
}

impl Source for StreamSource {
    fn kind(&self) -> &'static str {
        "pg-base"
    }

    fn run(&mut self, session: &mut BackupSession) -> Result<SourceOutcome, PipelineError> {
        let mut walk = Walk::new(session, &StreamRules);
        let mut learned = Learned::default();
        let root = match &self.options.input {
            StreamInput::Stdin => read_tar(std::io::stdin().lock(), &mut walk, &mut learned),
            StreamInput::Spawn {
                conninfo,
                fast_checkpoint,
                label,
                pg_bin,
            } => {
                let mut child =
                    spawn_basebackup(conninfo, *fast_checkpoint, label, pg_bin.as_deref())?;
                let mut stdout = std::io::BufReader::with_capacity(1 << 20, &mut child);
                // A failed child ends its output early, so the tar reader's error already
                // carries pg_basebackup's own (ChildStream reports it at the end of the
                // stream); on any error the child is killed when dropped.
                let root = read_tar(&mut stdout, &mut walk, &mut learned)?;
                // The archive is complete: read to the end, so that the child's exit
                // status is checked too.
                std::io::copy(&mut stdout, &mut std::io::sink()).map_err(|source| {
                    PipelineError::Read {
                        what: "pg_basebackup's output".into(),
                        source,
                    }
                })?;
                Ok(root)
            }
        };
        let root = root?;
        let manifest = check_manifest(&learned)?;
        let (stop_lsn, timeline) = (manifest.end_lsn, manifest.timeline);
        let labelfile = learned
            .backup_label
            .clone()
            .ok_or_else(|| stream_error("no backup_label in the stream".into()))?;
        let label = BackupLabel::parse(&labelfile)?;
        let system_identifier = learned
            .system_identifier
            .ok_or_else(|| stream_error("no global/pg_control in the stream".into()))?;
        let recorded = self
            .runtime
            .block_on(self.repo.read_cluster(&self.options.cluster))?;
        if let Some(record) = &recorded {
            if record.system_identifier != system_identifier {
                return Err(BackupError::OtherCluster {
                    cluster: self.options.cluster.clone(),
                    recorded: record.system_identifier,
                    server: system_identifier,
                }
                .into());
            }
        }
        let owner = learned.owner;
        let pgdata = root.store(&mut walk, owner)?;
        let raw_manifest = learned.manifest.take().unwrap_or_default();
        let manifest_node = synthetic(b"backup_manifest", NodeKind::File, owner);
        let manifest_entry = walk.bytes_entry(manifest_node, &raw_manifest)?;
        let mut pgdata_node = synthetic(b"pgdata", NodeKind::Dir, owner);
        pgdata_node.subtree = Some(pgdata);
        let root_entries = vec![
            Entry {
                node: pgdata_node,
                pending: None,
            },
            manifest_entry,
        ];
        let tree = walk.store_tree(root_entries)?;
        // The segment size: as the cluster's first push recorded it, else from the label.
        let seg_size = recorded
            .as_ref()
            .map(|r| r.seg_size)
            .unwrap_or_else(|| wal_segment_size(&label));
        // One range per timeline the backup's WAL crossed (a standby that followed a
        // promotion during the backup has two).
        let mut needed = Vec::new();
        for range in &manifest.ranges {
            needed.extend(needed_segments(
                range.timeline,
                range.start_lsn,
                range.end_lsn,
                seg_size,
            )?);
        }
        wait_for_backup_wal(
            &self.runtime,
            &self.repo,
            &self.options.cluster,
            &needed,
            self.options.wal_timeout,
            None,
        )?;
        let version_num = learned
            .pg_version
            .as_deref()
            .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
            .map_or(0, |major| major * 10000);
        let mut report = std::mem::take(&mut walk.report);
        report.facts = BaseFacts {
            cluster: &self.options.cluster,
            method: "pg_basebackup-stream",
            system_identifier,
            version_num,
            block_size: STREAM_BLOCK_SIZE as u32,
            wal_segment_size: seg_size,
            label: &label,
            stop_lsn,
            timeline,
            backup_label: &labelfile,
            tablespace_map: learned.tablespace_map.as_deref().unwrap_or_default(),
            tablespaces: &[],
            wal: &needed,
        }
        .to_map();
        Ok(SourceOutcome { tree, report })
    }
}

/// The WAL segment size when the repository has not recorded it yet: from the segment
/// named on the label's START WAL LOCATION line (its number and the start LSN fix it,
/// unless the start lies in a log id's first segment); 16 MiB when the line does not say.
fn wal_segment_size(label: &BackupLabel) -> u32 {
    use crate::pg::wal::name::{is_valid_seg_size, SegmentName};
    let Ok(crate::pg::wal::name::WalFileName::Segment(named)) =
        crate::pg::wal::name::WalFileName::parse(&label.start_segment)
    else {
        return 16 << 20;
    };
    // 16 MiB first: when the start lies in a log id's first segment, every size yields
    // the same name, and the default is by far the likeliest.
    std::iter::once(16 << 20)
        .chain((20..=30).map(|bits| 1u32 << bits))
        .filter(|&size| is_valid_seg_size(size))
        .find(|&size| SegmentName::from_lsn(named.tli, label.start_lsn, size).ok() == Some(named))
        .unwrap_or(16 << 20)
}
