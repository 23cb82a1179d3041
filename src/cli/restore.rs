//! `stowage restore`, `stowage restore pg|pg-dump|vault` and `stowage cat`

pub mod pg;
mod pg_dump;
mod sqlite;
mod vault;

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};

use stowage::restore::vault::restore_to_file;
use stowage::restore::{find_file, restore_snapshot, stream_file, DEFAULT_PARALLEL};

use super::render::{self, print_json};
use super::snapshots::Filter;
use super::Resolved;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RestoreArgs {
    #[command(subcommand)]
    into: Option<RestoreInto>,
    /// Snapshot id (or unique prefix), or `latest`.
    #[arg(required = true)]
    snapshot: Option<String>,
    /// Directory to restore into (created if missing); for a `sqlite` snapshot, the
    /// database file to write (or a directory to write it in); for a `vault` snapshot,
    /// the snapshot file to write (it must not exist).
    #[arg(long, required = true)]
    to: Option<PathBuf>,
    /// For a `sqlite` snapshot: replace the database even if another process has it open.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    filter: Filter,
}

/// Restores that go somewhere other than a directory.
#[derive(Debug, Subcommand)]
pub enum RestoreInto {
    /// Point-in-time restore of a PostgreSQL cluster: the newest base backup that ends
    /// before the target, and recovery settings that replay the archived WAL up to it.
    Pg(Box<pg::PgRestoreArgs>),
    /// Stream a pg-dump snapshot into pg_restore -d (or its globals.sql into psql).
    PgDump(Box<pg_dump::PgDumpRestoreArgs>),
    /// Post a vault snapshot to Vault's restore endpoint (--force: snapshot-force).
    Vault(Box<vault::VaultRestoreArgs>),
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// Snapshot id (or unique prefix), or `latest`.
    snapshot: String,
    /// Path of the file inside the snapshot; optional when it holds one file.
    path: Option<String>,
    #[command(flatten)]
    filter: Filter,
}

pub async fn run_restore(settings: &Resolved, args: RestoreArgs) -> anyhow::Result<()> {
    let (spec, to) = match (args.into, args.snapshot, args.to) {
        (Some(RestoreInto::PgDump(args)), _, _) => return pg_dump::run(settings, *args).await,
        (Some(RestoreInto::Pg(args)), _, _) => return pg::run(settings, *args).await,
        (Some(RestoreInto::Vault(args)), _, _) => return vault::run(settings, *args).await,
        (None, Some(spec), Some(to)) => (spec, to),
        _ => {
            anyhow::bail!("restore needs a SNAPSHOT and --to DIR (--to FILE for a sqlite snapshot)")
        }
    };
    let repo = settings.open().await?;
    let (id, snapshot) = repo
        .find_snapshot(&spec, |s| args.filter.matches(s))
        .await?;
    let index = repo.load_index().await?;
    let started = Instant::now();
    if snapshot.kind == vault::KIND {
        let rebuilt =
            restore_to_file(&repo, &index, id, snapshot.tree, &to, DEFAULT_PARALLEL).await?;
        let elapsed = started.elapsed();
        if settings.json {
            print_json(&serde_json::json!({
                "snapshot": id,
                "target": to,
                "state_bytes": rebuilt.state_bytes,
                "duration_secs": elapsed.as_secs_f64(),
            }))?;
        } else if !settings.quiet {
            println!(
                "restored Vault snapshot {} to {} ({} of state, verified against its SHA256SUMS) in {:.1} s",
                id.short(),
                to.display(),
                render::bytes(rebuilt.state_bytes),
                elapsed.as_secs_f64(),
            );
        }
        return Ok(());
    }
    if snapshot.kind == stowage::source::sqlite::KIND {
        return sqlite::run(settings, &repo, &index, id, &snapshot, &to, args.force).await;
    }
    let stats = restore_snapshot(&repo, &index, id, snapshot.tree, &to, DEFAULT_PARALLEL).await?;
    let elapsed = started.elapsed();
    if settings.json {
        print_json(&serde_json::json!({
            "snapshot": id,
            "target": to,
            "stats": stats,
            "duration_secs": elapsed.as_secs_f64(),
        }))?;
    } else if !settings.quiet {
        println!(
            "restored snapshot {} to {}: {} files, {} dirs, {} symlinks, {} in {:.1} s ({})",
            id.short(),
            to.display(),
            stats.files,
            stats.dirs,
            stats.symlinks,
            render::bytes(stats.bytes),
            elapsed.as_secs_f64(),
            render::rate(stats.bytes, elapsed)
        );
    }
    Ok(())
}

pub async fn run_cat(settings: &Resolved, args: CatArgs) -> anyhow::Result<()> {
    let repo = settings.open().await?;
    let (id, snapshot) = repo
        .find_snapshot(&args.snapshot, |s| args.filter.matches(s))
        .await?;
    let index = repo.load_index().await?;
    let entry = find_file(&repo, &index, id, snapshot.tree, args.path.as_deref()).await?;
    // The raw descriptor: std's stdout is line-buffered, which splits binary writes.
    let stdout =
        std::fs::File::from(std::os::fd::AsFd::as_fd(&std::io::stdout()).try_clone_to_owned()?);
    stream_file(&repo, &index, &entry, stdout, DEFAULT_PARALLEL).await?;
    Ok(())
}
