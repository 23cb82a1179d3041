//! `stowage gc`: clean up writes that were started and never finished.
//!
//! A backup killed in the middle of a multipart upload leaves its parts in the bucket,
//! invisible to listings and billed until aborted; a killed local backup leaves a
//! temporary file. Neither is referenced by anything, so removing them is always safe once
//! no backup that could still finish them is running: hence `--older-than`, whose default
//! is far longer than any one object takes to upload.

use std::time::{Duration, SystemTime};

use clap::Args;

use super::render::print_json;
use super::Resolved;

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only writes started at least this long ago (e.g. 30m, 6h, 2d; 0s for all).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    older_than: Duration,
    /// List what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(settings: &Resolved, args: GcArgs) -> anyhow::Result<()> {
    // Opening proves the location is a repository this passphrase owns before anything
    // under it is removed.
    let repo = settings.open().await?;
    let store = repo.store();
    let now = SystemTime::now();
    let stale: Vec<_> = store
        .list_incomplete()
        .await?
        .into_iter()
        .filter(|upload| {
            // Unknown age counts as old: the store would not say, and nothing refers to it.
            upload
                .started
                .and_then(|t| now.duration_since(t).ok())
                .is_none_or(|age| age >= args.older_than)
        })
        .collect();
    let mut aborted = Vec::new();
    for upload in &stale {
        if !args.dry_run {
            store.abort_incomplete(upload).await?;
        }
        aborted.push(serde_json::json!({
            "key": upload.key,
            "id": upload.id,
            "started": upload.started.map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339()),
        }));
        if !settings.json && !settings.quiet {
            println!(
                "{} {} ({})",
                if args.dry_run {
                    "would abort"
                } else {
                    "aborted"
                },
                upload.key,
                upload.id
            );
        }
    }
    if settings.json {
        print_json(&serde_json::json!({
            "location": store.location(),
            "dry_run": args.dry_run,
            "incomplete_writes": aborted,
        }))?;
    } else if !settings.quiet {
        println!(
            "{} unfinished write(s) older than {} in {}{}",
            stale.len(),
            humantime::format_duration(args.older_than),
            store.location(),
            if args.dry_run { " (dry run)" } else { "" }
        );
    }
    Ok(())
}
