//! Physical base backups of a running PostgreSQL cluster.
//!
//! ```text
//! pg_backup_start ─► walk each tablespace, then PGDATA, pg_control last (server's skip
//!                    rules, pages) ─► pg_backup_stop ─► backup_label, tablespace_map, empty
//!                    pg_wal added ─► wait for the WAL ─► snapshot
//! ```
//! Relation files are cut into pages (`block_size`), so tomorrow's full backup stores
//! only the pages that changed; the new pages of a file are compressed together in
//! groups, and long files list their pages through content lists. The snapshot's root
//! tree holds `pgdata/` (the data directory as a restore
//! must lay it out, `backup_label` included) and `tablespaces/<oid>/` (the contents of
//! each tablespace directory). Its `source` object records the LSNs, timeline, system
//! identifier and version, and the label and map byte-exact.
//!
//! `--from-stream` (see [`stream`]) makes the same snapshot from `pg_basebackup -Ft`'s
//! output, for hosts where stowage cannot read the data directory.

mod rules;
pub mod stream;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::runtime::Handle;

use crate::pg::backup::{
    needed_segments, wait_for_wal, BackupError, BackupLabel, Server, ServerFacts, StopResult,
};
use crate::pg::wal::name::Lsn;
use crate::pipeline::{BackupSession, PipelineError};
use crate::repo::id::BlobId;
use crate::repo::tree::{Node, NodeKind};
use crate::repo::Repository;
use crate::source::files::{base_node, Entry, Walk};

use super::{Source, SourceOutcome};
pub use rules::DataDirRules;

/// What a base backup is asked to do.
#[derive(Debug, Clone)]
pub struct PgBaseOptions {
    /// libpq-style connection string (`host=… user=…` or a URL).
    pub conninfo: String,
    /// The data directory, as this host sees it.
    pub pgdata: PathBuf,
    /// The cluster name the server's WAL is archived under (`wal-push --cluster`).
    pub cluster: String,
    /// Ask for an immediate checkpoint instead of waiting for a spread one.
    pub fast_checkpoint: bool,
    /// How long to wait for the last WAL segment to reach the repository.
    pub wal_timeout: Duration,
    pub label: String,
}

pub struct PgBaseSource {
    runtime: Handle,
    repo: Repository,
    options: PgBaseOptions,
}

impl PgBaseSource {
    pub fn new(runtime: Handle, repo: Repository, options: PgBaseOptions) -> Self {
        PgBaseSource {
            runtime,
            repo,
            options,
        }
    }

    /// Refuses a server whose backup could not be restored, or a `--pgdata` that is not
    /// its data directory.
    fn check(&self, facts: &ServerFacts) -> Result<(), BackupError> {
        if !facts.in_recovery && facts.archive_mode == "off" {
            return Err(BackupError::NotArchiving);
        }
        let given = &self.options.pgdata;
        let found = crate::pg::control::system_identifier(given).map_err(|source| {
            BackupError::NoControlFile {
                given: given.clone(),
                source,
            }
        })?;
        if found != facts.system_identifier {
            return Err(BackupError::SystemMismatch {
                given: given.clone(),
                found,
                server: facts.system_identifier,
            });
        }
        // A standby shares its primary's system identifier: only the path tells them apart.
        match &facts.data_directory {
            Some(server) => {
                let canonical = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
                if canonical(given) != canonical(server) {
                    return Err(BackupError::DataDirMismatch {
                        given: given.clone(),
                        server: server.clone(),
                    });
                }
            }
            None => tracing::warn!(
                "the server does not show data_directory to this role; cannot check that \
                 --pgdata {} is its data directory (grant pg_read_all_settings)",
                given.display()
            ),
        }
        let recorded = self
            .runtime
            .block_on(self.repo.read_cluster(&self.options.cluster))?;
        if let Some(record) = recorded {
            if record.system_identifier != facts.system_identifier {
                return Err(BackupError::OtherCluster {
                    cluster: self.options.cluster.clone(),
                    recorded: record.system_identifier,
                    server: facts.system_identifier,
                });
            }
        }
        Ok(())
    }

    /// Copies the tablespaces, then the data directory, while the backup is in progress
    /// (the server's order: `global/pg_control` comes last of all, since on a standby its
    /// minimum recovery point must cover every page copied). Returns the data directory's
    /// top-level entries (its tree is stored after `pg_backup_stop`, with `backup_label` in
    /// it) and the stored tablespace trees.
    fn copy(
        &self,
        walk: &mut Walk<'_>,
        major: u32,
    ) -> Result<(Vec<Entry>, Vec<Tablespace>), PipelineError> {
        let pgdata = &self.options.pgdata;
        let mut tablespaces = Vec::new();
        for (oid, location) in tablespace_links(pgdata)? {
            let tree = copy_tablespace(walk, &location, major)?;
            tablespaces.push(Tablespace {
                oid,
                location,
                tree,
            });
        }
        let entries = walk.dir_entries(pgdata)?;
        Ok((entries, tablespaces))
    }
}

/// One tablespace: only this server version's `PG_<major>_<catversion>` directory, as the
/// server sends it (the location may hold other versions' directories, left by pg_upgrade).
fn copy_tablespace(
    walk: &mut Walk<'_>,
    location: &Path,
    major: u32,
) -> Result<BlobId, PipelineError> {
    let prefix = format!("PG_{major}_");
    let listing = fs::read_dir(location).map_err(|source| PipelineError::Read {
        what: location.display().to_string(),
        source,
    })?;
    let mut entries = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|source| PipelineError::Read {
            what: location.display().to_string(),
            source,
        })?;
        let name = entry.file_name();
        if name.as_bytes().starts_with(prefix.as_bytes()) {
            if let Some(visited) = walk.visit(&entry.path(), name.as_bytes())? {
                entries.push(visited);
            }
        }
    }
    walk.store_tree(entries)
}

/// A tablespace copied: its OID, the directory it was read from, and its stored tree.
pub(crate) struct Tablespace {
    pub oid: String,
    pub location: PathBuf,
    pub tree: BlobId,
}

/// The tablespaces of a data directory: `pg_tblspc/<oid>` symlinks and where they lead.
fn tablespace_links(pgdata: &Path) -> Result<Vec<(String, PathBuf)>, PipelineError> {
    let dir = pgdata.join("pg_tblspc");
    let read = |source| PipelineError::Read {
        what: dir.display().to_string(),
        source,
    };
    let mut out = Vec::new();
    let listing = match fs::read_dir(&dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(read(e)),
    };
    for entry in listing {
        let entry = entry.map_err(read)?;
        let name = entry.file_name();
        let oid = name.to_string_lossy().to_string();
        if !oid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // In-place tablespaces (allow_in_place_tablespaces) are plain directories, copied
        // with the data directory; only links lead elsewhere.
        if let Ok(target) = fs::read_link(entry.path()) {
            out.push((oid, pgdata.join("pg_tblspc").join(target)));
        }
    }
    out.sort();
    Ok(out)
}

/// A directory node named `name` holding `subtree`, with the mode, owner and time of
/// `like` (a directory it stands for or sits in).
pub(crate) fn dir_node(name: &str, subtree: BlobId, like: &fs::Metadata) -> Node {
    let mut node = base_node(name.as_bytes(), like, NodeKind::Dir);
    node.mode = 0o700;
    node.subtree = Some(subtree);
    node
}

/// A file node for bytes the server gave (`backup_label`), owned like `like`.
pub(crate) fn file_node(name: &str, like: &fs::Metadata) -> Node {
    let mut node = base_node(name.as_bytes(), like, NodeKind::File);
    node.mode = 0o600;
    node
}

/// The empty `pg_wal/` (with `archive_status/`, and from PostgreSQL 17 on `summaries/`) a
/// restored data directory needs.
pub(crate) fn empty_pg_wal(
    walk: &mut Walk<'_>,
    like: &fs::Metadata,
    major: u32,
) -> Result<Entry, PipelineError> {
    let empty = walk.store_tree(Vec::new())?;
    let mut subdirs = vec!["archive_status"];
    if major >= 17 {
        subdirs.push("summaries");
    }
    let entries = subdirs
        .iter()
        .map(|name| Entry {
            node: dir_node(name, empty, like),
            pending: None,
        })
        .collect();
    let pg_wal = walk.store_tree(entries)?;
    walk.report.stats.dirs += 1 + subdirs.len() as u64;
    Ok(Entry {
        node: dir_node("pg_wal", pg_wal, like),
        pending: None,
    })
}

/// The root tree every base backup has: `pgdata/` and, when there are tablespaces,
/// `tablespaces/<oid>/`.
pub(crate) fn store_root(
    walk: &mut Walk<'_>,
    pgdata: BlobId,
    tablespaces: &[Tablespace],
    like: &fs::Metadata,
) -> Result<BlobId, PipelineError> {
    let mut root = vec![Entry {
        node: dir_node("pgdata", pgdata, like),
        pending: None,
    }];
    if !tablespaces.is_empty() {
        let mut nodes = Vec::new();
        for space in tablespaces {
            let meta = fs::metadata(&space.location).unwrap_or_else(|_| like.clone());
            nodes.push(Entry {
                node: dir_node(&space.oid, space.tree, &meta),
                pending: None,
            });
        }
        let tree = walk.store_tree(nodes)?;
        root.push(Entry {
            node: dir_node("tablespaces", tree, like),
            pending: None,
        });
    }
    walk.store_tree(root)
}

/// The facts a base backup snapshot records in its `source` object.
pub(crate) struct BaseFacts<'a> {
    pub cluster: &'a str,
    pub method: &'a str,
    pub system_identifier: u64,
    pub version_num: u32,
    pub block_size: u32,
    pub wal_segment_size: u32,
    pub label: &'a BackupLabel,
    pub stop_lsn: Lsn,
    pub timeline: u32,
    pub backup_label: &'a str,
    pub tablespace_map: &'a str,
    pub tablespaces: &'a [Tablespace],
    pub wal: &'a [crate::pg::wal::name::SegmentName],
}

impl BaseFacts<'_> {
    pub fn to_map(&self) -> Map<String, Value> {
        let tablespaces: Vec<Value> = self
            .tablespaces
            .iter()
            .map(|t| json!({"oid": t.oid, "location": t.location.display().to_string()}))
            .collect();
        let json = json!({
            "cluster": self.cluster,
            "method": self.method,
            // A u64: as text, since JSON readers lose precision beyond 2^53.
            "system_identifier": self.system_identifier.to_string(),
            "pg_version_num": self.version_num,
            "block_size": self.block_size,
            "wal_segment_size": self.wal_segment_size,
            "timeline": self.timeline,
            "start_lsn": self.label.start_lsn,
            "checkpoint_lsn": self.label.checkpoint_lsn,
            "stop_lsn": self.stop_lsn,
            "start_wal": self.wal.first().map(ToString::to_string),
            "stop_wal": self.wal.last().map(ToString::to_string),
            "backup_from": self.label.backup_from,
            "backup_label": self.backup_label,
            "tablespace_map": self.tablespace_map,
            "tablespaces": tablespaces,
        });
        match json {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }
}

/// Waits for the WAL of a finished backup, naming the archiver's last failure if it
/// does not come.
pub(crate) fn wait_for_backup_wal(
    runtime: &Handle,
    repo: &Repository,
    cluster: &str,
    needed: &[crate::pg::wal::name::SegmentName],
    timeout: Duration,
    server: Option<&Server>,
) -> Result<(), BackupError> {
    let waited = runtime.block_on(wait_for_wal(repo, cluster, needed, timeout, || async {
        let hint = format!(
            "; is the server's archive_command 'stowage wal-push %p' with this repository \
             and cluster name {cluster:?}?"
        );
        match server {
            Some(server) => match server.archiver_failure().await {
                Some((file, time)) => {
                    format!("; the server's archive_command last failed on {file} at {time}{hint}")
                }
                None => hint,
            },
            None => hint,
        }
    }))?;
    tracing::info!(
        "the backup's {} WAL segment(s) are in the repository (waited {:.1} s)",
        waited.segments,
        waited.waited.as_secs_f64()
    );
    Ok(())
}

impl Source for PgBaseSource {
    fn kind(&self) -> &'static str {
        "pg-base"
    }

    fn run(&mut self, session: &mut BackupSession) -> Result<SourceOutcome, PipelineError> {
        let runtime = self.runtime.clone();
        let server = runtime.block_on(Server::connect(&self.options.conninfo))?;
        let facts = runtime.block_on(server.facts())?;
        self.check(&facts)?;
        let pgdata = self.options.pgdata.clone();
        let pgdata_meta = fs::metadata(&pgdata).map_err(|source| PipelineError::Read {
            what: pgdata.display().to_string(),
            source,
        })?;
        let rules = DataDirRules {
            root: pgdata.clone(),
            block_size: facts.block_size as usize,
        };
        runtime.block_on(server.start(&self.options.label, self.options.fast_checkpoint))?;
        let mut walk = Walk::new(session, &rules);
        let copied = self.copy(&mut walk, facts.version_num / 10000);
        // Stop whether or not the copy worked: a failed backup must not stay in progress
        // (the server would also end it when the session closes).
        let stopped = runtime.block_on(server.stop());
        let (mut entries, tablespaces) = copied?;
        let StopResult {
            lsn: stop_lsn,
            labelfile,
            spcmapfile,
        } = stopped?;
        let label = BackupLabel::parse(&labelfile)?;
        entries.push(walk.bytes_entry(
            file_node("backup_label", &pgdata_meta),
            labelfile.as_bytes(),
        )?);
        if !spcmapfile.is_empty() {
            let node = file_node("tablespace_map", &pgdata_meta);
            entries.push(walk.bytes_entry(node, spcmapfile.as_bytes())?);
        }
        entries.push(empty_pg_wal(
            &mut walk,
            &pgdata_meta,
            facts.version_num / 10000,
        )?);
        let pgdata_tree = walk.store_tree(entries)?;
        let tree = store_root(&mut walk, pgdata_tree, &tablespaces, &pgdata_meta)?;
        let timeline = runtime
            .block_on(server.stop_timeline(stop_lsn, facts.in_recovery))?
            .unwrap_or(label.start_timeline);
        let needed = needed_segments(timeline, label.start_lsn, stop_lsn, facts.wal_segment_size)?;
        wait_for_backup_wal(
            &runtime,
            &self.repo,
            &self.options.cluster,
            &needed,
            self.options.wal_timeout,
            Some(&server),
        )?;
        let mut report = std::mem::take(&mut walk.report);
        report.paths.push(pgdata.display().to_string());
        report.facts = BaseFacts {
            cluster: &self.options.cluster,
            method: "backup-api",
            system_identifier: facts.system_identifier,
            version_num: facts.version_num,
            block_size: facts.block_size,
            wal_segment_size: facts.wal_segment_size,
            label: &label,
            stop_lsn,
            timeline,
            backup_label: &labelfile,
            tablespace_map: &spcmapfile,
            tablespaces: &tablespaces,
            wal: &needed,
        }
        .to_map();
        Ok(SourceOutcome { tree, report })
    }
}

impl From<BackupError> for PipelineError {
    fn from(e: BackupError) -> Self {
        PipelineError::Source(Box::new(e))
    }
}
