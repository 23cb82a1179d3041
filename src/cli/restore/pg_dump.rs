//! `stowage restore pg-dump`: a stored dump into pg_restore (or globals.sql into psql).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use stowage::pg::conninfo::ConnInfo;
use stowage::pg::tools::PgTools;
use stowage::restore::pg_dump::{
    find_dump, pg_restore_command, psql_command, restore_into_program, DumpChoice,
};
use stowage::restore::{RestoreError, DEFAULT_PARALLEL};

use super::super::render::{self, print_json};
use super::super::snapshots::Filter;
use super::super::Resolved;

const KIND: &str = "pg-dump";

#[derive(Debug, Args)]
pub struct PgDumpRestoreArgs {
    /// Snapshot id (or unique prefix), or `latest` (the newest pg-dump snapshot).
    snapshot: String,
    /// The database to restore into, as pg_restore -d takes it (it must exist).
    #[arg(long, short = 'd', value_name = "CONNSTR")]
    dbname: String,
    /// Restore only this table (repeatable; pg_restore -t).
    #[arg(long = "table", short = 't', value_name = "TABLE")]
    tables: Vec<String>,
    /// From an --all snapshot: the database whose dump to restore.
    #[arg(long, value_name = "NAME")]
    db: Option<String>,
    /// From an --all snapshot: run globals.sql (roles, tablespaces) with psql instead.
    #[arg(long, conflicts_with_all = ["db", "tables"])]
    globals: bool,
    /// Directory of pg_restore and psql (default: PATH, else the newest
    /// /usr/lib/postgresql/*/bin).
    #[arg(long, value_name = "DIR")]
    pg_bin: Option<PathBuf>,
    /// An extra argument for pg_restore (repeatable), e.g. --pg-restore-arg=--no-owner.
    #[arg(
        long = "pg-restore-arg",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    pg_restore_args: Vec<OsString>,
    #[command(flatten)]
    filter: Filter,
}

pub async fn run(settings: &Resolved, args: PgDumpRestoreArgs) -> anyhow::Result<()> {
    let tools = PgTools::locate(args.pg_bin.as_deref())?;
    let conn: ConnInfo = args.dbname.parse()?;
    let repo = settings.open().await?;
    let (id, snapshot) = repo
        .find_snapshot(&args.snapshot, |s| s.kind == KIND && args.filter.matches(s))
        .await?;
    anyhow::ensure!(
        snapshot.kind == KIND,
        "snapshot {} is of kind {}, not {KIND}; stream it with `stowage cat {} | pg_restore …`",
        id.short(),
        snapshot.kind,
        id.short()
    );
    let index = repo.load_index().await?;
    let choice = match (&args.db, args.globals) {
        (_, true) => DumpChoice::Globals,
        (Some(db), false) => DumpChoice::Database(db),
        (None, false) => DumpChoice::Only,
    };
    let entry = match find_dump(&repo, &index, id, snapshot.tree, choice).await {
        Err(e @ RestoreError::ChooseDump { .. }) => {
            return Err(e).context("name the one to restore with --db NAME (or --globals)")
        }
        other => other?,
    };
    let target = conn.dbname();
    let (command, label) = if args.globals {
        (
            psql_command(&tools, &conn),
            format!("psql on database {target}"),
        )
    } else {
        (
            pg_restore_command(&tools, &conn, &args.tables, &args.pg_restore_args),
            format!("pg_restore into database {target}"),
        )
    };
    let started = Instant::now();
    let done =
        restore_into_program(&repo, &index, &entry, command, &label, DEFAULT_PARALLEL).await?;
    let elapsed = started.elapsed();
    if !done.stderr.is_empty() && !settings.quiet {
        eprintln!("stowage: {label} reported:\n{}", done.stderr);
    }
    let file = entry.path.display().to_string();
    if settings.json {
        print_json(&serde_json::json!({
            "snapshot": id,
            "file": file,
            "database": target,
            "tables": args.tables,
            "bytes": done.bytes,
            "duration_secs": elapsed.as_secs_f64(),
            "messages": done.stderr,
        }))?;
    } else if !settings.quiet {
        println!(
            "restored {file} of snapshot {} into database {target}: {} in {:.1} s",
            id.short(),
            render::bytes(done.bytes.unwrap_or(entry.node.size)),
            elapsed.as_secs_f64(),
        );
    }
    Ok(())
}
