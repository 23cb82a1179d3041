//! `stowage restore pg`: point-in-time restore of a PostgreSQL cluster.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};

use stowage::pg::recovery::target::{parse_time, show_time};
use stowage::pg::recovery::{Plan, RecoveryTarget, Target, TargetAction, TimelineChoice};
use stowage::restore::pitr::{self, Destination, Restored};
use stowage::restore::{Mode, DEFAULT_PARALLEL};

use super::super::render::{self, print_json};
use super::super::wal::ClusterArg;
use super::super::Resolved;

/// Where recovery stops: exactly one of the target flags.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Recover up to this time: RFC 3339 (2026-11-26T07:00:00Z) or PostgreSQL's syntax
    /// (2026-11-26 08:00:00+01); the zone is required.
    #[arg(long, value_name = "TIME", group = "target")]
    pub target_time: Option<String>,
    /// Recover up to this WAL position (X/X).
    #[arg(long, value_name = "LSN", group = "target")]
    pub target_lsn: Option<String>,
    /// Recover up to the end of this transaction.
    #[arg(long, value_name = "XID", group = "target")]
    pub target_xid: Option<u32>,
    /// Recover up to this restore point (pg_create_restore_point).
    #[arg(long, value_name = "NAME", group = "target")]
    pub target_name: Option<String>,
    /// Recover to the end of the archived WAL.
    #[arg(long, group = "target")]
    pub latest: bool,
    /// Timeline to follow: `latest` (default) or a number.
    #[arg(long, value_name = "TLI", default_value = "latest")]
    pub target_timeline: String,
    /// Stop just before the target instead of just after it.
    #[arg(long)]
    pub target_exclusive: bool,
}

/// `recovery_target_action`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ActionArg {
    Promote,
    Pause,
    Shutdown,
}

impl TargetArgs {
    /// The target; `default` when no target flag is given.
    pub fn resolve(
        &self,
        action: TargetAction,
        default: Option<Target>,
    ) -> anyhow::Result<RecoveryTarget> {
        let target =
            if let Some(text) = &self.target_time {
                Target::Time(parse_time(text)?)
            } else if let Some(text) = &self.target_lsn {
                Target::Lsn(text.parse().with_context(|| {
                    format!("--target-lsn {text:?}: expected X/X, e.g. 0/3000028")
                })?)
            } else if let Some(xid) = self.target_xid {
                Target::Xid(xid)
            } else if let Some(name) = &self.target_name {
                anyhow::ensure!(
                    !name.is_empty() && name.len() < 64,
                    "--target-name {name:?}: a restore point name is 1 to 63 bytes"
                );
                Target::Name(name.clone())
            } else if self.latest {
                Target::Latest
            } else if let Some(default) = default {
                default
            } else {
                anyhow::bail!(
                    "name where to stop: --target-time, --target-lsn, --target-xid, --target-name \
                 or --latest"
                );
            };
        Ok(RecoveryTarget {
            target,
            exclusive: self.target_exclusive,
            timeline: self.target_timeline.parse::<TimelineChoice>()?,
            action,
        })
    }
}

impl From<ActionArg> for TargetAction {
    fn from(a: ActionArg) -> Self {
        match a {
            ActionArg::Promote => TargetAction::Promote,
            ActionArg::Pause => TargetAction::Pause,
            ActionArg::Shutdown => TargetAction::Shutdown,
        }
    }
}

#[derive(Debug, Args)]
pub struct PgRestoreArgs {
    /// The data directory to restore into: missing or empty, unless --delta.
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    #[command(flatten)]
    target: TargetArgs,
    /// What the server does on reaching the target.
    #[arg(long, value_enum, default_value_t = ActionArg::Pause)]
    target_action: ActionArg,
    /// Put a tablespace elsewhere: OLD is its OID or recorded location (repeatable).
    #[arg(long, value_name = "OLD=NEW", value_parser = parse_mapping)]
    tablespace_map: Vec<(String, PathBuf)>,
    /// Rewrite DIR in place: files already right are kept (checked by hash), the rest
    /// is rewritten, and what the backup lacks is removed. The server must be stopped.
    #[arg(long)]
    delta: bool,
    /// Use this base backup (snapshot id or prefix) instead of choosing one.
    #[arg(long, value_name = "SNAPSHOT")]
    backup: Option<String>,
    /// Print the plan and stop.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    cluster: ClusterArg,
}

fn parse_mapping(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((old, new)) if !old.is_empty() && !new.is_empty() => {
            Ok((old.to_string(), PathBuf::from(new)))
        }
        _ => Err(format!("expected OLD=NEW, got {text:?}")),
    }
}

/// The `restore_command` that reaches the repository these settings opened, and a
/// warning when the server will need something it cannot be given here.
pub fn restore_command(
    settings: &Resolved,
    cluster: &str,
) -> anyhow::Result<(String, Option<String>)> {
    let program = std::env::current_exe().context("locating the stowage program")?;
    let mut options = Vec::new();
    if let Some(config) = &settings.config_path {
        options.push("--config".into());
        options.push(absolute(config)?.display().to_string());
    }
    if let Some(repo) = &settings.repo {
        let location = if repo.contains("://") {
            repo.clone()
        } else {
            absolute(std::path::Path::new(repo))?.display().to_string()
        };
        options.push("--repo".into());
        options.push(location);
    }
    let mut env = Vec::new();
    if let Some(file) = std::env::var_os("STOWAGE_PASSWORD_FILE") {
        env.push((
            "STOWAGE_PASSWORD_FILE",
            absolute(std::path::Path::new(&file))?.display().to_string(),
        ));
    }
    if let Some(dir) = std::env::var_os("STOWAGE_CACHE_DIR") {
        env.push((
            "STOWAGE_CACHE_DIR",
            PathBuf::from(dir).display().to_string(),
        ));
    }
    let warning = (settings.password_file.is_none()).then(|| {
        "restore_command needs the repository passphrase: the server must have \
             STOWAGE_PASSWORD or STOWAGE_PASSWORD_FILE in its environment (or use a settings \
             file with password_file)"
            .to_string()
    });
    Ok((
        pitr::restore_command(&env, &program, &options, cluster),
        warning,
    ))
}

fn absolute(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path)
        .with_context(|| format!("{}: cannot make it absolute", path.display()))
}

/// The plan in words, one fact per line.
pub fn describe_plan(plan: &Plan) -> String {
    let b = &plan.backup;
    let mut lines = vec![
        format!(
            "base backup: snapshot {} ({:?}, written {}), LSN {} … {} on timeline {}",
            b.snapshot.short(),
            b.name,
            b.time.format("%Y-%m-%dT%H:%M:%SZ"),
            b.start_lsn,
            b.stop_lsn,
            b.timeline
        ),
        "  why: the newest base backup that ends before the target with all the WAL it needs"
            .to_string(),
    ];
    for (id, why) in &plan.passed_over {
        lines.push(format!("  passed over {}: {why}", id.short()));
    }
    lines.push(format!(
        "WAL: {} … {} ({} segments) on timelines {}",
        plan.first_segment, plan.last_segment, plan.segments, plan.timelines
    ));
    let mut stop = format!("recovery stops at: {}", plan.stop.description);
    if let Some(lsn) = plan.stop.lsn {
        stop.push_str(&format!(" (LSN {lsn})"));
    }
    if let Some(t) = plan.stop.time {
        stop.push_str(&format!(" at {}", show_time(t)));
    }
    lines.push(stop);
    lines.join("\n")
}

pub async fn run(settings: &Resolved, args: PgRestoreArgs) -> anyhow::Result<()> {
    let cluster = args.cluster.resolve(settings)?;
    let target = args.target.resolve(args.target_action.into(), None)?;
    let repo = settings.open().await?;
    let only = match &args.backup {
        Some(spec) => Some(repo.find_snapshot(spec, |s| s.kind == "pg-base").await?.0),
        None => None,
    };
    let plan = pitr::plan(&repo, &cluster, &target, only).await?;
    if !settings.quiet && !settings.json {
        eprintln!("{}", describe_plan(&plan));
    }
    if args.dry_run {
        if settings.json {
            print_json(&serde_json::json!({ "plan": plan }))?;
        }
        return Ok(());
    }
    let (command, warning) = restore_command(settings, &cluster)?;
    let mut conf = vec![("restore_command", command)];
    // The timeline the plan checked, by number: a timeline archived between now and the
    // server's start must not take recovery off the checked path.
    let mut checked = target.clone();
    checked.timeline = TimelineChoice::Id(plan.timeline);
    conf.extend(checked.settings());
    let to = Destination {
        pgdata: args.to.clone(),
        tablespace_map: args.tablespace_map,
        mode: if args.delta { Mode::Delta } else { Mode::Fresh },
        parallel: DEFAULT_PARALLEL,
    };
    let index = repo.load_index().await?;
    let started = Instant::now();
    let Restored { stats, tablespaces } = pitr::restore(&repo, &index, &plan, &to, &conf).await?;
    let elapsed = started.elapsed();
    let total = stats.total();
    if settings.json {
        print_json(&serde_json::json!({
            "plan": plan,
            "target": args.to,
            "stats": total,
            "tablespaces": tablespaces,
            "duration_secs": elapsed.as_secs_f64(),
            "settings": conf.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>(),
        }))?;
    } else if !settings.quiet {
        let kept = if args.delta {
            format!(
                " ({} already right in {} untouched files, {} rewritten)",
                render::bytes(total.kept_bytes),
                total.kept_files,
                render::bytes(total.bytes - total.kept_bytes)
            )
        } else {
            String::new()
        };
        println!(
            "restored base backup {} to {}: {} files, {}{kept} in {:.1} s ({})",
            plan.backup.snapshot.short(),
            args.to.display(),
            total.files,
            render::bytes(total.bytes),
            elapsed.as_secs_f64(),
            render::rate(total.bytes, elapsed)
        );
        for t in &tablespaces {
            println!("tablespace {} at {}", t.oid, t.location.display());
        }
        println!(
            "recovery configured (recovery.signal, postgresql.auto.conf): start the server with \
             `pg_ctl -D {} start`",
            args.to.display()
        );
    }
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    Ok(())
}
