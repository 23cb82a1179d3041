//! `wal-push`, `wal-fetch`, `wal-window`, `wal-show`: PostgreSQL's continuous archive.
//!
//! `archive_command = 'stowage wal-push %p'` and `restore_command = 'stowage wal-fetch %f
//! %p'` take everything else from the settings file or the environment. Both run as the
//! cluster's owner, once per file, so they stay quiet on success (their stderr is the
//! server's log) and open the repository through the key cache.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;
use clap::Args;

use stowage::pg::archive::fetch::{self, Source};
use stowage::pg::archive::push::{self, Outcome, PushOptions};
use stowage::pg::archive::spool::{spool_name, Spool};
use stowage::pg::archive::window::{self, Window};
use stowage::pg::archive::ArchiveError;
use stowage::repo::wal::check_cluster_name;

use super::render::{bytes, print_json};
use super::{Incomplete, Resolved};

/// Exit code of `wal-fetch` when it cannot tell whether the file is archived (store
/// unreachable, object damaged). Above 125, so PostgreSQL aborts recovery instead of
/// taking it for the end of WAL (`reference/postgresql.md` §7).
pub const EXIT_CANNOT_TELL: u8 = 255;

/// Files one `wal-push` handles at most: each is held in memory while it is pushed.
const MAX_PARALLEL: usize = 32;
/// Segments fetched ahead at most: they sit on `pg_wal`'s file system, and a full
/// `pg_wal` stops the server.
const MAX_PREFETCH: usize = 64;

/// The exit code of a failed `wal-fetch`: its own when it chose one (1 for "not
/// archived"), otherwise "cannot tell".
pub fn fetch_exit_code(err: &anyhow::Error) -> ExitCode {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Incomplete>())
        .map_or(ExitCode::from(EXIT_CANNOT_TELL), |i| ExitCode::from(i.code))
}

#[derive(Debug, Args)]
pub struct ClusterArg {
    /// Which cluster's archive (default: `cluster` in the settings file, else `main`).
    #[arg(long, env = "STOWAGE_CLUSTER")]
    cluster: Option<String>,
}

impl ClusterArg {
    pub fn resolve(&self, settings: &Resolved) -> anyhow::Result<String> {
        let name = self
            .cluster
            .clone()
            .unwrap_or_else(|| settings.wal.cluster.clone());
        check_cluster_name(&name).map_err(anyhow::Error::msg)?;
        Ok(name)
    }
}

#[derive(Debug, Args)]
pub struct WalPushArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    /// Push up to N files per call: this one and the next `.ready` ones (default: the
    /// `wal_parallel` setting, else 1).
    #[arg(long, value_name = "N")]
    parallel: Option<usize>,
    /// The file to archive: archive_command's %p (`pg_wal/<name>`).
    path: PathBuf,
}

#[derive(Debug, Args)]
pub struct WalFetchArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    /// Fetch the next N segments ahead in the background (default: the `wal_prefetch`
    /// setting, else 0).
    #[arg(long, value_name = "N")]
    prefetch: Option<usize>,
    /// The file wanted: restore_command's %f.
    name: String,
    /// Where to write it: restore_command's %p.
    dest: PathBuf,
}

#[derive(Debug, Args)]
pub struct WalPrefetchArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    #[arg(long)]
    count: usize,
    #[arg(long)]
    spool: PathBuf,
    /// The segment recovery asked for last; the ones after it are fetched.
    name: String,
}

#[derive(Debug, Args)]
pub struct WalListArgs {
    #[command(flatten)]
    cluster: ClusterArg,
}

/// The spool for a repository and cluster under `base`, or under the `spool_dir` setting.
fn spool(settings: &Resolved, cluster: &str, base: &Path) -> Option<Spool> {
    let location = settings.repo.as_deref()?;
    let base = settings
        .wal
        .spool_dir
        .clone()
        .unwrap_or_else(|| base.join(".stowage"));
    Some(Spool::new(base.join(spool_name(location, cluster))))
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

pub async fn run_push(settings: &Resolved, args: WalPushArgs) -> anyhow::Result<()> {
    let cluster = args.cluster.resolve(settings)?;
    let parallel = args
        .parallel
        .unwrap_or(settings.wal.parallel)
        .clamp(1, MAX_PARALLEL);
    let options = PushOptions {
        spool: spool(settings, &cluster, parent(&args.path)),
        cluster,
        parallel,
        level: settings.wal.compression_level,
    };
    let report = push::push(&options, &args.path, || settings.open_cached()).await?;
    let ahead_ok = report.ahead.iter().filter(|(_, r)| r.is_ok()).count();
    for (name, result) in &report.ahead {
        if let Err(e) = result {
            tracing::info!("{name}: not pushed ahead: {e}");
        }
    }
    if settings.json {
        print_json(&serde_json::json!({
            "name": report.name,
            "cluster": options.cluster,
            "outcome": outcome_text(report.outcome),
            "pushed_ahead": ahead_ok,
        }))?;
    } else {
        tracing::info!(
            "{}: {} ({} pushed ahead)",
            report.name,
            outcome_text(report.outcome),
            ahead_ok
        );
    }
    Ok(())
}

fn outcome_text(outcome: Outcome) -> String {
    match outcome {
        Outcome::Stored {
            raw_len,
            stored_len,
        } => format!("stored {} as {}", bytes(raw_len), bytes(stored_len)),
        Outcome::AlreadyStored => "already stored, same content".into(),
        Outcome::PushedAhead => "already pushed ahead".into(),
    }
}

pub async fn run_fetch(settings: &Resolved, args: WalFetchArgs) -> anyhow::Result<()> {
    let cluster = args.cluster.resolve(settings)?;
    let spool = spool(settings, &cluster, parent(&args.dest));
    let fetched = fetch::fetch(&cluster, spool.as_ref(), &args.name, &args.dest, || {
        settings.open_cached()
    })
    .await;
    let source = match fetched {
        Ok(source) => source,
        Err(e @ ArchiveError::NotArchived { .. }) => {
            // Routine (history probes, the end of archived WAL): not worth a line in the
            // server's log unless asked for.
            tracing::info!("{e}");
            return Err(Incomplete {
                message: String::new(),
                code: super::codes::FAILURE,
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    let prefetch = args
        .prefetch
        .unwrap_or(settings.wal.prefetch)
        .min(MAX_PREFETCH);
    if let (Some(spool), true) = (&spool, prefetch > 0) {
        let seg_size = std::fs::metadata(&args.dest).map_or(0, |m| m.len());
        let seg_size = u32::try_from(seg_size).unwrap_or(0);
        if seg_size.is_power_of_two()
            && !fetch::missing_ahead(spool, &args.name, prefetch, seg_size).is_empty()
        {
            if let Err(e) = spawn_prefetcher(settings, &cluster, spool, &args.name, prefetch) {
                tracing::warn!("prefetch not started: {e:#}");
            }
        }
    }
    let from = match source {
        Source::Spool => "the prefetch spool",
        Source::Repository => "the repository",
    };
    if settings.json {
        print_json(&serde_json::json!({
            "name": args.name,
            "cluster": cluster,
            "from": from,
        }))?;
    } else {
        tracing::info!("{}: restored from {from}", args.name);
    }
    Ok(())
}

/// Starts `stowage wal-prefetch` detached: it outlives this call (PostgreSQL waits only
/// for this process) and takes the spool's lock, so at most one runs.
fn spawn_prefetcher(
    settings: &Resolved,
    cluster: &str,
    spool: &Spool,
    name: &str,
    count: usize,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the stowage binary")?;
    let mut command = Command::new(exe);
    if let Some(repo) = &settings.repo {
        command.arg("--repo").arg(repo);
    }
    if let Some(config) = &settings.config_path {
        command.arg("--config").arg(config);
    }
    command
        .arg("wal-prefetch")
        .arg("--cluster")
        .arg(cluster)
        .arg("--count")
        .arg(count.to_string())
        .arg("--spool")
        .arg(spool.dir())
        .arg(name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(prefetch_log(spool));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Its own process group: a signal aimed at the server's group (Ctrl-C on a
        // foreground postmaster) is not meant for a download in flight.
        command.process_group(0);
    }
    command.spawn().context("starting the prefetcher")?;
    Ok(())
}

/// Where a detached prefetcher's errors go: a log in its spool (the server's log is not
/// open to it once the wal-fetch that started it has exited).
fn prefetch_log(spool: &Spool) -> Stdio {
    let _ = std::fs::create_dir_all(spool.dir());
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(spool.dir().join("prefetch.log"))
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

pub async fn run_prefetch(settings: &Resolved, args: WalPrefetchArgs) -> anyhow::Result<()> {
    let cluster = args.cluster.resolve(settings)?;
    let spool = Spool::new(args.spool);
    let repo = settings.open_cached().await?;
    fetch::prefetch(&repo, &cluster, &spool, &args.name, args.count).await?;
    Ok(())
}

/// Reads the window of the cluster `args` names and prints its header; `None` when it
/// was printed as JSON and there is nothing more to say.
async fn load_window(settings: &Resolved, args: WalListArgs) -> anyhow::Result<Option<Window>> {
    let cluster = args.cluster.resolve(settings)?;
    let repo = settings.open_cached().await?;
    let window = window::window(&repo, &cluster).await?;
    if settings.json {
        print_json(&window)?;
        return Ok(None);
    }
    let id = window
        .system_identifier
        .map_or_else(|| "not recorded yet".to_string(), |id| id.to_string());
    println!(
        "cluster {} (system identifier {id}, {} segments)",
        window.cluster,
        bytes(u64::from(window.seg_size))
    );
    Ok(Some(window))
}

pub async fn run_window(settings: &Resolved, args: WalListArgs) -> anyhow::Result<()> {
    let Some(window) = load_window(settings, args).await? else {
        return Ok(());
    };
    for tl in &window.timelines {
        println!("timeline {}{}", tl.timeline, branch_text(tl));
        if tl.runs.is_empty() {
            println!("  no segments");
        }
        for run in &tl.runs {
            println!(
                "  LSN {} .. {}  commits {} .. {}  ({} segment(s) {} .. {})",
                run.start_lsn,
                run.end_lsn,
                time_text(run.earliest_commit),
                time_text(run.latest_commit),
                run.segments,
                run.first_segment,
                run.last_segment
            );
        }
        for gap in &tl.gaps {
            println!(
                "  GAP: {} segment(s) missing after {} (next is {}): no restore can cross it",
                gap.missing, gap.after, gap.before
            );
        }
    }
    Ok(())
}

pub async fn run_show(settings: &Resolved, args: WalListArgs) -> anyhow::Result<()> {
    let Some(window) = load_window(settings, args).await? else {
        return Ok(());
    };
    for tl in &window.timelines {
        let raw = tl.segments * u64::from(window.seg_size);
        let ratio = if tl.stored_bytes > 0 {
            raw as f64 / tl.stored_bytes as f64
        } else {
            0.0
        };
        println!("timeline {}{}", tl.timeline, branch_text(tl));
        let ranges: Vec<String> = tl
            .runs
            .iter()
            .map(|r| format!("{} .. {}", r.first_segment, r.last_segment))
            .collect();
        println!(
            "  {} segment(s) in {} range(s): {}",
            tl.segments,
            tl.runs.len(),
            ranges.join(", ")
        );
        println!(
            "  {} of WAL stored as {} (zstd, {ratio:.1}×)",
            bytes(raw),
            bytes(tl.stored_bytes)
        );
        for (what, files) in [("partial", &tl.partial), ("backup", &tl.backup_files)] {
            if !files.is_empty() {
                println!("  {what}: {}", files.join(", "));
            }
        }
    }
    Ok(())
}

fn branch_text(tl: &window::Timeline) -> String {
    tl.parent.as_ref().map_or_else(String::new, |b| {
        format!(
            " (branched from timeline {} at {})",
            b.parent_timeline, b.switchpoint
        )
    })
}

fn time_text(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| t.format("%Y-%m-%d %H:%M:%S%.6f UTC").to_string(),
    )
}
