//! `stowage backup pg-base`: a physical base backup, from the data directory or from a
//! `pg_basebackup` tar stream.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tokio::runtime::Handle;

use stowage::repo::Repository;
use stowage::source::pg_base::stream::{StreamInput, StreamOptions, StreamSource};
use stowage::source::{PgBaseOptions, PgBaseSource, Source};

use super::super::wal::ClusterArg;
use super::super::Resolved;
use super::Common;

#[derive(Debug, Args)]
pub struct PgBaseArgs {
    /// Connection string (`host=/var/run/postgresql user=postgres`, or a URL); libpq's
    /// PG* variables and ~/.pgpass fill what it leaves out. Needs a superuser, or a role
    /// granted pg_backup_start/pg_backup_stop and pg_read_all_settings.
    #[arg(
        long,
        short = 'd',
        value_name = "CONNSTR",
        required_unless_present = "from_stream"
    )]
    dbname: Option<String>,
    /// The server's data directory, as this host sees it.
    #[arg(long, required_unless_present = "from_stream")]
    pgdata: Option<PathBuf>,
    /// Read a `pg_basebackup -Ft -X none -D -` tar stream instead of the data directory:
    /// `-` for standard input, `spawn` to run pg_basebackup against --dbname.
    #[arg(long, value_name = "spawn|-")]
    from_stream: Option<String>,
    /// Directory of pg_basebackup for `--from-stream spawn` (default: PATH, else the
    /// newest /usr/lib/postgresql/*/bin).
    #[arg(long, value_name = "DIR")]
    pg_bin: Option<PathBuf>,
    /// Ask the server for an immediate checkpoint (default: a spread one, gentler on a
    /// busy server, as pg_basebackup and pgBackRest do).
    #[arg(long)]
    fast: bool,
    /// How long to wait for the backup's last WAL segment to reach the repository.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    wal_timeout: Duration,
    /// Snapshot name (default: the cluster name).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    cluster: ClusterArg,
    #[command(flatten)]
    common: Common,
}

/// The source, the snapshot name and the common options.
pub(super) fn source(
    settings: &Resolved,
    runtime: &Handle,
    repo: &Repository,
    args: PgBaseArgs,
) -> anyhow::Result<(Box<dyn Source>, String, Common)> {
    let cluster = args.cluster.resolve(settings)?;
    let name = args.name.unwrap_or_else(|| cluster.clone());
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
                cluster,
                fast_checkpoint: args.fast,
                wal_timeout: args.wal_timeout,
                label,
            };
            let source = PgBaseSource::new(runtime.clone(), repo.clone(), options);
            return Ok((Box::new(source), name, args.common));
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
                pg_bin: args.pg_bin,
            }
        }
        Some(other) => {
            anyhow::bail!("--from-stream takes `-` (standard input) or `spawn`, not {other:?}")
        }
    };
    let options = StreamOptions {
        input,
        cluster,
        wal_timeout: args.wal_timeout,
    };
    let source = StreamSource::new(runtime.clone(), repo.clone(), options);
    Ok((Box::new(source), name, args.common))
}
