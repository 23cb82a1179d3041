//! `stowage backup sqlite PATH [--every DURATION]`: one backup, or one on each tick
//! at which the database changed, until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::runtime::Handle;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;

use stowage::repo::Repository;
use stowage::source::SqliteSource;
use stowage::sqlite::Database;

use super::super::Resolved;
use super::{run_one, Common};

#[derive(Debug, Args)]
pub struct SqliteArgs {
    /// The database file.
    path: PathBuf,
    /// Snapshot name (default: PATH as given).
    #[arg(long)]
    name: Option<String>,
    /// How long to wait for a writer that holds the database locked (rollback mode)
    /// before giving up.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    busy_timeout: Duration,
    /// Keep running: back up now, then on each tick of DURATION (`5m`) when the database
    /// changed since the last snapshot. SIGINT / SIGTERM end it after the current
    /// snapshot.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    every: Option<Duration>,
    #[command(flatten)]
    common: Common,
}

pub(super) fn run(
    settings: &Resolved,
    runtime: &Handle,
    repo: &Repository,
    args: SqliteArgs,
) -> anyhow::Result<()> {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| args.path.display().to_string());
    let mut source = SqliteSource::new(args.path.clone(), args.busy_timeout);
    let Some(every) = args.every else {
        return run_one(settings, runtime, repo, &mut source, name, args.common);
    };
    anyhow::ensure!(
        every >= Duration::from_secs(1),
        "--every must be at least 1s"
    );
    let stop = Stop::install(runtime)?;
    // A connection kept open across ticks: its data_version changes exactly when another
    // connection has committed.
    let watch = Database::open(&args.path, args.busy_timeout)?;
    let mut backed_up: Option<i64> = None;
    let mut failed = None;
    let mut next = Instant::now();
    while !stop.requested() {
        match watch.data_version() {
            Ok(version) if backed_up == Some(version) => {
                tracing::info!("{}: unchanged, no snapshot", args.path.display());
            }
            // Read before the backup: a commit during it shows at the next tick.
            Ok(version) => {
                match run_one(
                    settings,
                    runtime,
                    repo,
                    &mut source,
                    name.clone(),
                    args.common.clone(),
                ) {
                    Ok(()) => {
                        backed_up = Some(version);
                        failed = None;
                    }
                    Err(e) => {
                        eprintln!("stowage: {e:#} (trying again at the next tick)");
                        failed = Some(e);
                    }
                }
            }
            Err(e) => {
                eprintln!("stowage: {e} (trying again at the next tick)");
                failed = Some(e.into());
            }
        }
        // A backup longer than the interval skips the ticks it overran.
        let now = Instant::now();
        while next <= now {
            next += every;
        }
        stop.sleep_until(runtime, next);
    }
    match failed {
        Some(e) => Err(e.context("the last backup before stopping failed")),
        None => Ok(()),
    }
}

/// SIGINT and SIGTERM, caught: they end `--every` after the current snapshot.
struct Stop {
    requested: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl Stop {
    fn install(runtime: &Handle) -> anyhow::Result<Stop> {
        let requested = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(Notify::new());
        let _guard = runtime.enter();
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let (flag, notify) = (requested.clone(), wake.clone());
        runtime.spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::info!("stopping after the current snapshot");
            flag.store(true, Ordering::SeqCst);
            notify.notify_one();
        });
        Ok(Stop { requested, wake })
    }

    fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Sleeps until `when`, or until a signal comes.
    fn sleep_until(&self, runtime: &Handle, when: Instant) {
        if self.requested() {
            return;
        }
        runtime.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep_until(when.into()) => {}
                _ = self.wake.notified() => {}
            }
        });
    }
}
