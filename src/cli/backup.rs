//! `stowage backup stdin|files|pg-dump|pg-base|sqlite|vault`

mod pg_base;
mod pg_dump;
mod sqlite;
mod vault;

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand, ValueEnum};
use tokio::runtime::Handle;

use stowage::backup::{run_backup, BackupResult, SnapshotMeta};
use stowage::repo::Repository;
use stowage::source::{FilesSource, PgDumpSource, Source, StdinSource};

use super::render::{self, print_json, ProgressDisplay};
use super::{codes, Incomplete, Resolved};

#[derive(Debug, Clone, Args)]
pub struct Common {
    /// A tag to find the snapshot by (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Record this host name instead of the machine's.
    #[arg(long)]
    host: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back up standard input as one file called NAME.
    Stdin {
        #[arg(long)]
        name: String,
        /// What the stream is: anything (`stdin`), or a `pg_dump -Fc` archive (`pg-dump`:
        /// checked, cut like `backup pg-dump`, stored as NAME.dump).
        #[arg(long, value_enum, default_value_t = StdinKind::Stdin)]
        kind: StdinKind,
        #[command(flatten)]
        common: Common,
    },
    /// Back up files and directory trees.
    Files {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Snapshot name (default: the first path).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Back up PostgreSQL databases with pg_dump -Fc (--all: every one, plus globals).
    PgDump(pg_dump::PgDumpArgs),
    /// Physical base backup of a running PostgreSQL cluster: the non-exclusive backup API,
    /// the data directory and tablespaces read directly, relation files stored page by page.
    /// Complete only once the WAL up to its stop LSN is in the repository.
    PgBase(pg_base::PgBaseArgs),
    /// Vault raft snapshot: from Vault's API (VAULT_ADDR, VAULT_TOKEN), or a file made by
    /// `vault operator raft snapshot save` (--file F, or - for stdin). Checked against its
    /// own SHA256SUMS; its members stored apart so nightly snapshots deduplicate.
    Vault(vault::VaultBackupArgs),
    /// A live SQLite database (rollback journal or WAL mode), read page by page inside
    /// one read transaction while writers go on; each page is a blob, so the next backup
    /// stores only the pages that changed. --every repeats it while the database changes.
    Sqlite(sqlite::SqliteArgs),
}

/// The snapshot kinds `backup stdin` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StdinKind {
    Stdin,
    PgDump,
}

pub fn run(settings: &Resolved, runtime: &Handle, cmd: BackupCommand) -> anyhow::Result<()> {
    let repo = runtime.block_on(settings.open())?;
    let (mut source, name, common): (Box<dyn Source>, String, Common) = match cmd {
        BackupCommand::Stdin { name, kind, common } => {
            anyhow::ensure!(
                !name.is_empty() && !name.contains('/'),
                "--name must be a plain file name, not {name:?}"
            );
            // Read fd 0 directly into the pipeline's buffers (no BufReader copy).
            let stdin = std::fs::File::from(
                std::os::fd::AsFd::as_fd(&std::io::stdin()).try_clone_to_owned()?,
            );
            let source: Box<dyn Source> = match kind {
                StdinKind::Stdin => Box::new(StdinSource::new(stdin, name.clone())),
                StdinKind::PgDump => {
                    Box::new(PgDumpSource::from_reader(stdin, &name, "standard input"))
                }
            };
            (source, name, common)
        }
        BackupCommand::Files {
            paths,
            name,
            common,
        } => {
            let name = name.unwrap_or_else(|| paths[0].display().to_string());
            (Box::new(FilesSource::new(paths)), name, common)
        }
        BackupCommand::PgDump(args) => pg_dump::source(runtime, args)?,
        BackupCommand::PgBase(args) => pg_base::source(settings, runtime, &repo, args)?,
        BackupCommand::Vault(args) => vault::source(runtime, args)?,
        BackupCommand::Sqlite(args) => return sqlite::run(settings, runtime, &repo, args),
    };
    run_one(settings, runtime, &repo, source.as_mut(), name, common)
}

/// One backup of `source` as snapshot `name`, reported as the settings ask.
fn run_one(
    settings: &Resolved,
    runtime: &Handle,
    repo: &Repository,
    source: &mut dyn Source,
    name: String,
    common: Common,
) -> anyhow::Result<()> {
    let meta = SnapshotMeta {
        name,
        tags: common.tags,
        host: common.host.or_else(|| settings.host.clone()),
        source: serde_json::Map::new(),
    };
    let started = Instant::now();
    let mut display = None;
    let result = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                run_backup(
                    repo,
                    runtime,
                    source,
                    meta,
                    settings.pipeline_settings(repo),
                    |progress| {
                        display = Some(ProgressDisplay::start(progress, settings.interactive))
                    },
                )
            })
            .join()
    });
    drop(display);
    let result = match result {
        Ok(result) => result?,
        Err(_) => anyhow::bail!("backup thread panicked"),
    };
    report(settings, &result, started.elapsed())?;
    if !result.warnings.is_empty() {
        return Err(Incomplete {
            message: format!(
                "snapshot {} saved, but {} entr{} could not be read (listed above)",
                result.id.short(),
                result.warnings.len(),
                if result.warnings.len() == 1 {
                    "y"
                } else {
                    "ies"
                }
            ),
            code: codes::INCOMPLETE,
        }
        .into());
    }
    Ok(())
}

fn report(
    settings: &Resolved,
    result: &BackupResult,
    elapsed: std::time::Duration,
) -> anyhow::Result<()> {
    let s = &result.snapshot.stats;
    if settings.json {
        return print_json(&serde_json::json!({
            "snapshot": result.id,
            "kind": result.snapshot.kind,
            "name": result.snapshot.name,
            "files": s.files,
            "dirs": s.dirs,
            "bytes_read": s.bytes_read,
            "bytes_new": s.bytes_new,
            "bytes_stored": s.bytes_stored,
            "blobs": s.blobs,
            "blobs_new": s.blobs_new,
            "dedup_ratio": s.dedup_ratio(),
            "duration_secs": elapsed.as_secs_f64(),
            "warnings": result.warnings,
        }));
    }
    if !settings.quiet {
        println!(
            "snapshot {} saved: {} read, {} new, {} stored ({:.1}× smaller) in {:.1} s ({})",
            result.id.short(),
            render::bytes(s.bytes_read),
            render::bytes(s.bytes_new),
            render::bytes(s.bytes_stored),
            s.dedup_ratio(),
            elapsed.as_secs_f64(),
            render::rate(s.bytes_read, elapsed)
        );
    }
    Ok(())
}
