//! `stowage backup pg-dump`: one database, or every database plus the globals.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;
use tokio::runtime::Handle;

use stowage::pg::conninfo::ConnInfo;
use stowage::pg::tools::PgTools;
use stowage::source::pg_dump::{list_databases, PgDumpSource};
use stowage::source::Source;

use super::Common;

/// The database `--all` connects to when the connection string names none (as pg_dumpall).
const MAINTENANCE_DB: &str = "postgres";

#[derive(Debug, Args)]
pub struct PgDumpArgs {
    /// The database, as pg_dump -d takes it: a name, `host=… dbname=… user=…`, or
    /// `postgresql://…`. With --all, the server (default: libpq's defaults).
    #[arg(
        long,
        short = 'd',
        value_name = "CONNSTR",
        required_unless_present = "all"
    )]
    dbname: Option<String>,
    /// Every database that accepts connections (templates excepted), plus globals.sql
    /// from `pg_dumpall --globals-only`, in one snapshot.
    #[arg(long)]
    all: bool,
    /// Directory of pg_dump and pg_dumpall (default: PATH, else the newest
    /// /usr/lib/postgresql/*/bin).
    #[arg(long, value_name = "DIR")]
    pg_bin: Option<PathBuf>,
    /// An extra argument for pg_dump (repeatable), e.g. --pg-dump-arg=--exclude-table=audit.
    #[arg(long = "pg-dump-arg", value_name = "ARG", allow_hyphen_values = true)]
    pg_dump_args: Vec<OsString>,
    /// Snapshot name (default: the database's name; with --all, `all`).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// The source, the snapshot name and the common options.
pub(super) fn source(
    runtime: &Handle,
    args: PgDumpArgs,
) -> anyhow::Result<(Box<dyn Source>, String, Common)> {
    let tools = PgTools::locate(args.pg_bin.as_deref())?;
    let conn: ConnInfo = args.dbname.as_deref().unwrap_or_default().parse()?;
    if !args.all {
        let name = args.name.unwrap_or_else(|| conn.dbname());
        let source = PgDumpSource::database(&tools, &conn, &args.pg_dump_args);
        return Ok((Box::new(source), name, args.common));
    }
    let conn = match conn.get("dbname") {
        Some(_) => conn,
        None => conn.with_dbname(MAINTENANCE_DB),
    };
    let databases = runtime.block_on(list_databases(&conn))?;
    let source = PgDumpSource::all(&tools, &conn, &databases, &args.pg_dump_args);
    let name = args.name.unwrap_or_else(|| "all".into());
    Ok((Box::new(source), name, args.common))
}
