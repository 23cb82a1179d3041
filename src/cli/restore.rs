//! `stowage restore` and `stowage cat`

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use futures::StreamExt;

use stowage::restore::{blob_stream, find_file, restore_snapshot, DEFAULT_PARALLEL};

use super::render::{self, print_json};
use super::snapshots::Filter;
use super::Resolved;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id (or unique prefix), or `latest`.
    snapshot: String,
    /// Directory to restore into (created if missing).
    #[arg(long)]
    to: PathBuf,
    #[command(flatten)]
    filter: Filter,
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
    let repo = settings.open().await?;
    let (id, snapshot) = repo
        .find_snapshot(&args.snapshot, |s| args.filter.matches(s))
        .await?;
    let index = repo.load_index().await?;
    let started = Instant::now();
    let stats =
        restore_snapshot(&repo, &index, id, snapshot.tree, &args.to, DEFAULT_PARALLEL).await?;
    let elapsed = started.elapsed();
    if settings.json {
        print_json(&serde_json::json!({
            "snapshot": id,
            "target": args.to,
            "stats": stats,
            "duration_secs": elapsed.as_secs_f64(),
        }))?;
    } else if !settings.quiet {
        println!(
            "restored snapshot {} to {}: {} files, {} dirs, {} symlinks, {} in {:.1} s ({})",
            id.short(),
            args.to.display(),
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
    // Writing to stdout may block on a slow reader: keep it off the async workers.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(DEFAULT_PARALLEL);
    // Returns the bytes written, or None when the reader went away (`| head`), which is
    // not our failure.
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<Option<u64>> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let mut written = 0;
        while let Some(chunk) = rx.blocking_recv() {
            match out.write_all(&chunk) {
                Ok(()) => written += chunk.len() as u64,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        match out.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(None),
            other => other.map(|()| Some(written)),
        }
    });
    let mut blobs = blob_stream(&repo, &index, entry.node.content.clone(), DEFAULT_PARALLEL);
    let mut failure = None;
    while let Some(blob) = blobs.next().await {
        match blob {
            Ok(bytes) => {
                if tx.send(bytes).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let written = writer.await??;
    if let Some(e) = failure {
        return Err(e.into());
    }
    if let Some(written) = written {
        anyhow::ensure!(
            written == entry.node.size,
            "{}: wrote {written} bytes, the snapshot says {}",
            entry.path.display(),
            entry.node.size
        );
    }
    Ok(())
}
