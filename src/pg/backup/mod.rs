//! Physical base backups: what stowage must know of the server's backup API, the
//! `backup_label` it returns, and the WAL a backup needs before it may be called complete
//! (`reference/postgresql.md` §6).
//!
//! The files themselves are read by `source::pg_base`; this module talks to the server
//! and to the WAL archive, and never writes into a live cluster.

mod label;
mod manifest;
mod server;
mod wait;

pub use label::BackupLabel;
pub use manifest::Manifest;
pub use server::{config, describe, Server, ServerFacts, StopResult};
pub use wait::{needed_segments, wait_for_wal, WalWait};

use std::path::PathBuf;

use crate::repo::RepoError;

/// Why a base backup could not be made. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("bad connection string: {reason}")]
    Conninfo { reason: String },
    #[error("cannot connect to PostgreSQL as {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("{what}: {reason}")]
    Query { what: String, reason: String },
    #[error("PostgreSQL {} is too old: stowage backs up 12 and later", version_num / 10000)]
    Version { version_num: u32 },
    #[error(
        "archive_mode is off on this server: a base backup is only restorable with the WAL \
         written during it. Set archive_mode = on and archive_command = 'stowage wal-push %p' \
         (a restart is needed), then run the backup again"
    )]
    NotArchiving,
    #[error(
        "--pgdata {given} is not this server's data directory ({server}); point --pgdata at \
         the data directory of the server --dbname connects to"
    )]
    DataDirMismatch { given: PathBuf, server: PathBuf },
    #[error(
        "--pgdata {given} belongs to database system {found}, but the server --dbname \
         connects to is system {server}"
    )]
    SystemMismatch {
        given: PathBuf,
        found: u64,
        server: u64,
    },
    #[error("--pgdata {given}: cannot read global/pg_control")]
    NoControlFile {
        given: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cluster name {cluster:?} in the repository belongs to database system {recorded}, \
         but this server is system {server}: set `cluster` (or --cluster) to this server's \
         name, the one its archive_command uses"
    )]
    OtherCluster {
        cluster: String,
        recorded: u64,
        server: u64,
    },
    #[error("the server ended the session during the backup: {reason}")]
    ServerGone { reason: String },
    #[error(
        "WAL segment {segment} (needed to make this backup consistent) did not reach the \
         repository within {waited_secs} s{archiver}"
    )]
    WalTimeout {
        segment: String,
        waited_secs: u64,
        archiver: String,
    },
    #[error(
        "WAL segment {segment} is missing from the repository while later ones are there: \
         the archive has a gap and this backup could not be restored; check the archive_command's \
         history (pg_stat_archiver) and take a new backup"
    )]
    WalGap { segment: String },
    #[error("backup_label: {0}")]
    Label(String),
    #[error("{0}")]
    Stream(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
}
