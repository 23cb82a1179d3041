//! The point-in-time recovery drill: plan, restore the files, start a real server that
//! replays the archive to the target and promotes, query what it reached, run the
//! check SQL, stop, remove.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::pg::recovery::config::append_settings;
use crate::pg::recovery::target::{show_time, utc_to_pg};
use crate::pg::recovery::{Plan, RecoveryTarget, Target};
use crate::pg::scratch::{server_bin, user_name, ScratchServer};
use crate::pg::wal::{check_history, pg_timestamp_to_utc};
use crate::repo::id::SnapshotId;
use crate::repo::Repository;
use crate::restore::pg_base::tablespace_targets;
use crate::restore::pitr::{self, Destination};
use crate::restore::{Mode, DEFAULT_PARALLEL};

use super::{finish, shorten, step, Report};

/// What to rehearse.
#[derive(Debug, Clone)]
pub struct PgDrill {
    pub cluster: String,
    /// The target (its action is always promote: the drill needs a server that answers).
    pub target: RecoveryTarget,
    /// Use this base backup instead of choosing one.
    pub backup: Option<SnapshotId>,
    /// An empty or missing directory to work in.
    pub scratch: PathBuf,
    /// Leave the scratch directory (stopped server, restored files) for inspection.
    pub keep: bool,
    pub check_sql: Option<PathBuf>,
    pub check_db: String,
    /// The role to connect as (default: the data directory owner's login name).
    pub user: Option<String>,
    /// Where PostgreSQL's server programs are (default: Debian's directory for the
    /// backup's major version).
    pub pg_bin: Option<PathBuf>,
    pub restore_command: String,
    /// Added to the server's environment (restore_command runs in it).
    pub server_env: Vec<(String, String)>,
    /// Longest wait for the server to come up and for recovery to reach the target.
    pub timeout: Duration,
}

/// Runs the drill; every outcome, failures included, is in the report.
pub async fn run(repo: &Repository, drill: &PgDrill) -> Report {
    let started = Instant::now();
    let mut report = Report {
        kind: "pg-base".into(),
        target: drill.target.target.describe(),
        requested_time: match drill.target.target {
            Target::Time(t) => pg_timestamp_to_utc(t),
            Target::Latest => Some(Utc::now()),
            _ => None,
        },
        ..Report::default()
    };
    let mut server = None;
    let result = steps(repo, drill, started, &mut report, &mut server).await;
    finish(
        &mut report,
        result,
        started,
        server,
        &drill.scratch,
        drill.keep,
    );
    report
}

async fn steps(
    repo: &Repository,
    drill: &PgDrill,
    started: Instant,
    report: &mut Report,
    slot: &mut Option<ScratchServer>,
) -> Result<(), String> {
    let plan: Plan = step(report, "choose base backup", async {
        let plan = pitr::plan(repo, &drill.cluster, &drill.target, drill.backup)
            .await
            .map_err(|e| e.to_string())?;
        let detail = format!(
            "snapshot {} (LSN {} … {}), WAL {} … {}",
            plan.backup.snapshot.short(),
            plan.backup.start_lsn,
            plan.backup.stop_lsn,
            plan.first_segment,
            plan.last_segment
        );
        Ok((plan, detail))
    })
    .await?;
    report.snapshot = Some(plan.backup.snapshot.short());
    report.snapshot_time = Some(plan.backup.time);
    report.wal_segments = Some(plan.segments);
    if report.requested_time.is_none() {
        report.requested_time = plan.stop.time.and_then(pg_timestamp_to_utc);
    }
    let pgdata = drill.scratch.join("pgdata");
    let restore_t = Instant::now();
    let (major, bytes) = step(
        report,
        "restore files",
        restore_files(repo, drill, &plan, &pgdata),
    )
    .await?;
    report.bytes_restored = bytes;
    report.restore_seconds = Some(restore_t.elapsed().as_secs_f64());
    let bin = server_bin(drill.pg_bin.as_deref(), major).map_err(|e| e.to_string())?;
    let (server, settings) =
        ScratchServer::prepare(bin, pgdata.clone(), &drill.scratch).map_err(|e| e.to_string())?;
    append_settings(
        &pgdata,
        &settings,
        "drill server: private socket, no archiving",
    )
    .map_err(|e| e.to_string())?;
    let mut env = drill.server_env.clone();
    if !env.iter().any(|(k, _)| k == "STOWAGE_CACHE_DIR") {
        env.push((
            "STOWAGE_CACHE_DIR".into(),
            drill.scratch.join("keycache").display().to_string(),
        ));
    }
    let user = drill
        .user
        .clone()
        .or_else(|| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&pgdata)
                .ok()
                .and_then(|m| user_name(m.uid()))
        })
        .unwrap_or_else(|| "postgres".into());
    let server = slot.insert(server);
    let replay_t = Instant::now();
    step(report, "start server", async {
        server
            .start(&env, drill.timeout)
            .map(|()| {
                (
                    (),
                    format!("port {}, log {}", server.port, server.log.display()),
                )
            })
            .map_err(|e| e.to_string())
    })
    .await?;
    let server = &*server;
    step(report, "replay WAL to target", async {
        server
            .wait_promoted(&user, drill.timeout)
            .await
            .map(|()| ((), "promoted: recovery reached its target".to_string()))
            .map_err(|e| e.to_string())
    })
    .await?;
    report.replay_seconds = Some(replay_t.elapsed().as_secs_f64());
    report.rto_seconds = Some(started.elapsed().as_secs_f64());
    let end = step(
        report,
        "read what was reached",
        reached(server, &user, &pgdata, &plan),
    )
    .await?;
    report.last_commit = end.last_commit;
    report.timeline = Some(end.timeline);
    report.recovery_end_lsn = Some(end.switchpoint.to_string());
    report.recovery_end_reason = Some(end.reason);
    report.wal_replayed_bytes = Some(end.switchpoint.0.saturating_sub(plan.backup.start_lsn.0));
    if let Some(file) = &drill.check_sql {
        let output = step(report, "check SQL", async {
            server
                .run_sql_file(file, &user, &drill.check_db)
                .map(|out| {
                    let first = out.lines().next().unwrap_or("").to_string();
                    (out, format!("{} ran clean: {first}", file.display()))
                })
                .map_err(|e| e.to_string())
        })
        .await?;
        report.check_output = Some(shorten(&output, 4096));
    }
    Ok(())
}

/// Restores the chosen backup into `pgdata` (tablespaces beside it in scratch space)
/// with recovery set to promote at the target; returns the backup's major version.
async fn restore_files(
    repo: &Repository,
    drill: &PgDrill,
    plan: &Plan,
    pgdata: &Path,
) -> Result<((Option<u32>, u64), String), String> {
    let snapshot = repo
        .read_snapshot(plan.backup.snapshot)
        .await
        .map_err(|e| e.to_string())?;
    let major = snapshot
        .source
        .get("pg_version_num")
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v / 10000).ok());
    let spaces = tablespace_targets(&snapshot, &[]).map_err(|e| e.to_string())?;
    let map = spaces
        .iter()
        .map(|t| {
            (
                t.oid.to_string(),
                drill.scratch.join("tablespaces").join(t.oid.to_string()),
            )
        })
        .collect();
    let index = repo.load_index().await.map_err(|e| e.to_string())?;
    let mut target = drill.target.clone();
    target.action = crate::pg::recovery::TargetAction::Promote;
    target.timeline = crate::pg::recovery::TimelineChoice::Id(plan.timeline);
    let mut settings = vec![("restore_command", drill.restore_command.clone())];
    settings.extend(target.settings());
    let to = Destination {
        pgdata: pgdata.to_path_buf(),
        tablespace_map: map,
        mode: Mode::Fresh,
        parallel: DEFAULT_PARALLEL,
    };
    let restored = pitr::restore(repo, &index, plan, &to, &settings)
        .await
        .map_err(|e| e.to_string())?;
    let total = restored.stats.total();
    Ok((
        (major, total.bytes),
        format!(
            "{} files, {} into {}",
            total.files,
            crate::human::bytes(total.bytes),
            pgdata.display()
        ),
    ))
}

/// Where recovery ended, from the server.
struct End {
    last_commit: Option<DateTime<Utc>>,
    timeline: u32,
    switchpoint: crate::pg::wal::Lsn,
    reason: String,
}

/// Reads where recovery ended (the new timeline's history file: the server's own
/// record of the switch point and why) and the last commit it replayed.
async fn reached(
    server: &ScratchServer,
    user: &str,
    pgdata: &Path,
    plan: &Plan,
) -> Result<(End, String), String> {
    let client = server
        .connect(user, "postgres")
        .await
        .map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT pg_last_xact_replay_timestamp(), \
             substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
            &[],
        )
        .await
        .map_err(|e| format!("querying the restored server: {e}"))?;
    let last: Option<std::time::SystemTime> = row.try_get(0).map_err(|e| e.to_string())?;
    let tli_hex: String = row.try_get(1).map_err(|e| e.to_string())?;
    let timeline =
        u32::from_str_radix(&tli_hex, 16).map_err(|e| format!("timeline {tli_hex:?}: {e}"))?;
    let history = pgdata
        .join("pg_wal")
        .join(format!("{timeline:08X}.history"));
    let text = std::fs::read(&history).map_err(|e| format!("{}: {e}", history.display()))?;
    let entries = check_history(timeline, &text).map_err(|e| e.to_string())?;
    let last_entry = entries
        .last()
        .ok_or_else(|| format!("{}: no entries", history.display()))?;
    let end = End {
        last_commit: last.map(DateTime::<Utc>::from),
        timeline,
        switchpoint: last_entry.switchpoint,
        reason: last_entry.reason.trim().to_string(),
    };
    let commit = end.last_commit.map_or_else(
        || "no commit replayed".to_string(),
        |t| show_time(utc_to_pg(t)),
    );
    let detail = format!(
        "timeline {timeline}, ended at {} ({}), {} of WAL from the backup's start, last commit {commit}",
        end.switchpoint,
        end.reason,
        crate::human::bytes(end.switchpoint.0.saturating_sub(plan.backup.start_lsn.0)),
    );
    Ok((end, detail))
}
