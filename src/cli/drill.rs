//! `stowage drill`: rehearse a restore end to end and report RTO and RPO.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use stowage::drill::dump::DumpDrill;
use stowage::drill::pg::PgDrill;
use stowage::drill::sqlite::SqliteDrill;
use stowage::drill::{self, Report};
use stowage::pg::recovery::{Target, TargetAction};

use super::render::print_json;
use super::restore::pg::{restore_command, TargetArgs};
use super::wal::ClusterArg;
use super::{codes, Incomplete, Resolved};

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The snapshot to rehearse: a pg-base, pg-dump or sqlite snapshot (default:
    /// point-in-time recovery of the cluster from its newest suitable base backup).
    #[arg(long, value_name = "SNAPSHOT")]
    snapshot: Option<String>,
    #[command(flatten)]
    target: TargetArgs,
    /// SQL run against the restored data (psql -f, stops at the first error); the drill
    /// fails if it fails.
    #[arg(long, value_name = "FILE")]
    check_sql: Option<PathBuf>,
    /// Database the check SQL runs in (default: postgres; for a dump, the restored one).
    #[arg(long, value_name = "DB")]
    check_db: Option<String>,
    /// Role to connect as (default: the restored data directory's owner).
    #[arg(long, value_name = "ROLE")]
    db_user: Option<String>,
    /// Where to restore (must be missing or empty; default: a new directory in $TMPDIR).
    #[arg(long, value_name = "DIR")]
    scratch: Option<PathBuf>,
    /// Keep the scratch directory afterwards (the server is stopped either way).
    #[arg(long)]
    keep: bool,
    /// Directory of PostgreSQL's server programs (default: /usr/lib/postgresql/<the
    /// backup's major version>/bin).
    #[arg(long, value_name = "DIR")]
    pg_bin: Option<PathBuf>,
    /// Longest wait for the server to start and for recovery to reach the target.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// The report as Markdown (for the DR record) instead of text.
    #[arg(long)]
    markdown: bool,
    #[command(flatten)]
    cluster: ClusterArg,
}

pub async fn run(settings: &Resolved, args: DrillArgs) -> anyhow::Result<()> {
    let scratch = match &args.scratch {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("stowage-drill-{}", std::process::id())),
    };
    if std::fs::read_dir(&scratch).is_ok_and(|mut d| d.next().is_some()) {
        anyhow::bail!(
            "--scratch {}: not empty; a drill needs an empty directory",
            scratch.display()
        );
    }
    let scratch = std::path::absolute(&scratch).context("the scratch directory")?;
    let repo = settings.open().await?;
    let chosen = match &args.snapshot {
        Some(spec) => Some(repo.find_snapshot(spec, |_| true).await?),
        None => None,
    };
    let report: Report = match chosen {
        Some((id, snapshot)) if snapshot.kind == "pg-dump" => {
            let drill = DumpDrill {
                snapshot: (id, snapshot),
                scratch,
                keep: args.keep,
                check_sql: args.check_sql,
                check_db: args.check_db,
                pg_bin: args.pg_bin,
                timeout: args.timeout,
            };
            drill::dump::run(&repo, &drill).await
        }
        Some((id, snapshot)) if snapshot.kind == stowage::source::sqlite::KIND => {
            let drill = SqliteDrill {
                snapshot: (id, snapshot),
                scratch,
                keep: args.keep,
                check_sql: args.check_sql,
            };
            drill::sqlite::run(&repo, &drill).await
        }
        Some((id, snapshot)) if snapshot.kind != "pg-base" => {
            anyhow::bail!(
                "snapshot {} is of kind {:?}; drills rehearse pg-base, pg-dump and sqlite snapshots",
                id.short(),
                snapshot.kind
            )
        }
        chosen => {
            let cluster = match chosen
                .as_ref()
                .and_then(|(_, s)| s.source.get("cluster")?.as_str())
            {
                Some(name) => name.to_string(),
                None => args.cluster.resolve(settings)?,
            };
            let (command, _) = restore_command(settings, &cluster)?;
            let server_env = [
                "STOWAGE_PASSWORD",
                "STOWAGE_PASSWORD_FILE",
                "STOWAGE_CACHE_DIR",
            ]
            .iter()
            .filter_map(|k| Some((k.to_string(), std::env::var(k).ok()?)))
            .collect();
            let drill = PgDrill {
                cluster,
                target: args
                    .target
                    .resolve(TargetAction::Promote, Some(Target::Latest))?,
                backup: chosen.map(|(id, _)| id),
                scratch,
                keep: args.keep,
                check_sql: args.check_sql,
                check_db: args.check_db.unwrap_or_else(|| "postgres".into()),
                user: args.db_user,
                pg_bin: args.pg_bin,
                restore_command: command,
                server_env,
                timeout: args.timeout,
            };
            drill::pg::run(&repo, &drill).await
        }
    };
    if settings.json {
        print_json(&report)?;
    } else if args.markdown {
        print!("{}", report.to_markdown());
    } else if !settings.quiet || !report.ok {
        print!("{}", report.to_text());
    }
    match report.failure() {
        Some(step) if !report.ok => Err(Incomplete {
            message: format!("restore drill failed at step {:?}", step.name),
            code: codes::FAILURE,
        }
        .into()),
        _ if !report.ok => Err(Incomplete {
            message: "restore drill failed".into(),
            code: codes::FAILURE,
        }
        .into()),
        _ => Ok(()),
    }
}
