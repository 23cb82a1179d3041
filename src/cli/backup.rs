//! `stowage backup stdin|files|pg-base`

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use tokio::runtime::Handle;

use stowage::backup::{run_backup, BackupResult, SnapshotMeta};
use stowage::source::pg_base::stream::{StreamInput, StreamOptions, StreamSource};
use stowage::source::{FilesSource, PgBaseOptions, PgBaseSource, Source, StdinSource};

use super::render::{self, print_json, ProgressDisplay};
use super::{codes, Incomplete, Resolved};

#[derive(Debug, Args)]
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
    /// Physical base backup of a running PostgreSQL cluster: the non-exclusive backup API,
    /// the data directory and tablespaces read directly, relation files stored page by page.
    /// Complete only once the WAL up to its stop LSN is in the repository.
    PgBase {
        /// Connection string (`host=/var/run/postgresql user=postgres`, or a URL); libpq's
        /// PGHOST, PGPORT, PGUSER, PGPASSWORD fill what it leaves out. Needs a superuser or
        /// a role granted pg_backup_start/pg_backup_stop and pg_read_all_settings.
        #[arg(long, required_unless_present = "from_stream")]
        dbname: Option<String>,
        /// The server's data directory, as this host sees it.
        #[arg(long, required_unless_present = "from_stream")]
        pgdata: Option<PathBuf>,
        /// Read a `pg_basebackup -Ft -X none -D -` tar stream instead of the data directory:
        /// `-` for standard input, `spawn` to run pg_basebackup against --dbname.
        #[arg(long, value_name = "spawn|-")]
        from_stream: Option<String>,
        /// Ask the server for an immediate checkpoint (default: a spread one, gentler on a
        /// busy server, as pg_basebackup and pgBackRest do).
        #[arg(long)]
        fast: bool,
        /// How long to wait for the backup's last WAL segment to reach the repository.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        wal_timeout: std::time::Duration,
        /// Snapshot name (default: the cluster name).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        cluster: super::wal::ClusterArg,
        #[command(flatten)]
        common: Common,
    },
}

pub fn run(settings: &Resolved, runtime: &Handle, cmd: BackupCommand) -> anyhow::Result<()> {
    let repo = runtime.block_on(settings.open())?;
    let (mut source, name, common): (Box<dyn Source>, String, Common) = match cmd {
        BackupCommand::Stdin { name, common } => {
            anyhow::ensure!(
                !name.is_empty() && !name.contains('/'),
                "--name must be a plain file name, not {name:?}"
            );
            // Read fd 0 directly into the pipeline's buffers (no BufReader copy).
            let stdin = std::fs::File::from(
                std::os::fd::AsFd::as_fd(&std::io::stdin()).try_clone_to_owned()?,
            );
            (
                Box::new(StdinSource::new(stdin, name.clone())),
                name,
                common,
            )
        }
        BackupCommand::Files {
            paths,
            name,
            common,
        } => {
            let name = name.unwrap_or_else(|| paths[0].display().to_string());
            (Box::new(FilesSource::new(paths)), name, common)
        }
        BackupCommand::PgBase {
            dbname,
            pgdata,
            from_stream,
            fast,
            wal_timeout,
            name,
            cluster,
            common,
        } => {
            let cluster = cluster.resolve(settings)?;
            let name = name.unwrap_or_else(|| cluster.clone());
            let source = pg_base_source(
                runtime,
                &repo,
                PgBaseArgs {
                    dbname,
                    pgdata,
                    from_stream,
                    fast,
                    wal_timeout,
                    cluster,
                },
            )?;
            (source, name, common)
        }
    };
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
                    &repo,
                    runtime,
                    source.as_mut(),
                    meta,
                    settings.pipeline_settings(&repo),
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

struct PgBaseArgs {
    dbname: Option<String>,
    pgdata: Option<PathBuf>,
    from_stream: Option<String>,
    fast: bool,
    wal_timeout: std::time::Duration,
    cluster: String,
}

fn pg_base_source(
    runtime: &Handle,
    repo: &stowage::repo::Repository,
    args: PgBaseArgs,
) -> anyhow::Result<Box<dyn Source>> {
    let label = format!(
        "stowage {}",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
    );
    let input = match args.from_stream.as_deref() {
        None => {
            let (Some(dbname), Some(pgdata)) = (args.dbname, args.pgdata) else {
                anyhow::bail!("backup pg-base needs --dbname and --pgdata (or --from-stream)");
            };
            let options = PgBaseOptions {
                conninfo: dbname,
                pgdata,
                cluster: args.cluster,
                fast_checkpoint: args.fast,
                wal_timeout: args.wal_timeout,
                label,
            };
            return Ok(Box::new(PgBaseSource::new(
                runtime.clone(),
                repo.clone(),
                options,
            )));
        }
        Some("-") => StreamInput::Stdin,
        Some("spawn") => {
            let Some(dbname) = args.dbname else {
                anyhow::bail!("--from-stream spawn needs --dbname for pg_basebackup");
            };
            StreamInput::Spawn {
                conninfo: dbname,
                fast_checkpoint: args.fast,
                label,
            }
        }
        Some(other) => {
            anyhow::bail!("--from-stream takes `-` (standard input) or `spawn`, not {other:?}")
        }
    };
    Ok(Box::new(StreamSource::new(
        runtime.clone(),
        repo.clone(),
        StreamOptions {
            input,
            cluster: args.cluster,
            wal_timeout: args.wal_timeout,
        },
    )))
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
