//! `stowage verify`

use std::time::Instant;

use clap::Args;

use stowage::verify::verify;

use super::render::{self, print_json};
use super::Resolved;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Read every pack and re-hash every blob (slow: reads the whole repository).
    #[arg(long)]
    read_data: bool,
}

pub async fn run(settings: &Resolved, args: VerifyArgs) -> anyhow::Result<()> {
    let repo = settings.open().await?;
    let started = Instant::now();
    let workers = settings
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let report = verify(&repo, args.read_data, workers + 1).await?;
    let elapsed = started.elapsed();
    if settings.json {
        print_json(&serde_json::json!({
            "report": report,
            "read_data": args.read_data,
            "duration_secs": elapsed.as_secs_f64(),
        }))?;
    } else {
        for problem in &report.problems {
            eprintln!("error: {problem}");
        }
        if !settings.quiet {
            println!(
                "checked {} snapshot(s), {} index file(s), {} pack(s), {} blob(s), {} tree(s){}",
                report.snapshots,
                report.index_files,
                report.packs,
                report.blobs,
                report.trees,
                if args.read_data {
                    format!(
                        "; read {} in {:.1} s ({})",
                        render::bytes(report.bytes_checked),
                        elapsed.as_secs_f64(),
                        render::rate(report.bytes_checked, elapsed)
                    )
                } else {
                    String::new()
                }
            );
            if report.unindexed_packs > 0 {
                println!(
                    "note: {} pack(s) are not in any index (left by an interrupted backup; harmless)",
                    report.unindexed_packs
                );
            }
        }
    }
    anyhow::ensure!(
        report.problems.is_empty(),
        "verify found {} problem(s) in {}",
        report.problems.len(),
        repo.location()
    );
    if !settings.quiet && !settings.json {
        println!("no problems found");
    }
    Ok(())
}
