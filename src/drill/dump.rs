//! The dump drill: a new scratch server (initdb), the snapshot's dumps restored into
//! it with `pg_restore` (roles first, from `globals.sql`, for an `--all` snapshot), the
//! check SQL, then stop and remove.
//!
//! The RPO of a dump is the age of its snapshot: a dump holds the data as of the start
//! of `pg_dump`, and nothing after.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::pg::conninfo::ConnInfo;
use crate::pg::recovery::config::append_settings;
use crate::pg::scratch::{server_bin, user_ids, ScratchServer};
use crate::pg::tools::PgTools;
use crate::repo::id::SnapshotId;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::NodeKind;
use crate::repo::Repository;
use crate::restore::pg_dump::{
    database_of_file, pg_restore_command, psql_command, restore_into_program,
};
use crate::restore::{plan_tree, DEFAULT_PARALLEL};

use super::{finish, shorten, step, Report};

/// What to rehearse.
#[derive(Debug, Clone)]
pub struct DumpDrill {
    pub snapshot: (SnapshotId, Snapshot),
    pub scratch: PathBuf,
    pub keep: bool,
    pub check_sql: Option<PathBuf>,
    /// The database the check SQL runs in (default: the first restored one).
    pub check_db: Option<String>,
    pub pg_bin: Option<PathBuf>,
    pub timeout: Duration,
}

/// Runs the drill; every outcome, failures included, is in the report.
pub async fn run(repo: &Repository, drill: &DumpDrill) -> Report {
    let started = Instant::now();
    let (id, snapshot) = &drill.snapshot;
    let mut report = Report {
        kind: "pg-dump".into(),
        snapshot: Some(id.short()),
        snapshot_time: Some(snapshot.end),
        target: format!("the dump {:?}", snapshot.name),
        requested_time: Some(Utc::now()),
        // The data is as of pg_dump's start.
        last_commit: Some(snapshot.start),
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
    drill: &DumpDrill,
    started: Instant,
    report: &mut Report,
    slot: &mut Option<ScratchServer>,
) -> Result<(), String> {
    let (id, snapshot) = &drill.snapshot;
    let bin = server_bin(drill.pg_bin.as_deref(), None).map_err(|e| e.to_string())?;
    let pgdata = drill.scratch.join("pgdata");
    // SAFETY: geteuid has no preconditions and cannot fail.
    let owner = if unsafe { libc::geteuid() } == 0 {
        Some(user_ids("postgres").ok_or(
            "running as root, and there is no `postgres` user to run the scratch server as",
        )?)
    } else {
        None
    };
    step(report, "create scratch server", async {
        std::fs::create_dir_all(&drill.scratch).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&drill.scratch, Some(uid), Some(gid))
                .map_err(|e| e.to_string())?;
        }
        ScratchServer::initdb(&bin, &pgdata, owner).map_err(|e| e.to_string())?;
        Ok(((), format!("initdb {}", pgdata.display())))
    })
    .await?;
    let (server, settings) = ScratchServer::prepare(bin.clone(), pgdata.clone(), &drill.scratch)
        .map_err(|e| e.to_string())?;
    append_settings(
        &pgdata,
        &settings,
        "drill server: private socket, no archiving",
    )
    .map_err(|e| e.to_string())?;
    let server = slot.insert(server);
    step(report, "start server", async {
        server
            .start(&[], drill.timeout)
            .map(|()| ((), format!("port {}", server.port)))
            .map_err(|e| e.to_string())
    })
    .await?;
    let server = &*server;
    let index = repo.load_index().await.map_err(|e| e.to_string())?;
    let files: Vec<_> = plan_tree(repo, &index, *id, snapshot.tree)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|e| e.node.kind == NodeKind::File)
        .collect();
    let tools = PgTools::locate(Some(&bin)).map_err(|e| e.to_string())?;
    let conn = |db: &str| -> Result<ConnInfo, String> {
        format!(
            "host={} port={} user=postgres dbname={db}",
            server.socket_dir.display(),
            server.port
        )
        .parse()
        .map_err(|e: crate::pg::conninfo::ConnInfoError| e.to_string())
    };
    let restore_t = Instant::now();
    if let Some(globals) = files
        .iter()
        .find(|e| database_of_file(&e.node.name).is_none())
    {
        step(report, "restore globals.sql", async {
            let cmd = psql_command(&tools, &conn("postgres")?);
            restore_into_program(repo, &index, globals, cmd, "psql", DEFAULT_PARALLEL)
                .await
                .map(|r| ((), format!("{} bytes", r.bytes.unwrap_or(0))))
                .map_err(|e| e.to_string())
        })
        .await?;
    }
    let mut databases = Vec::new();
    for entry in &files {
        let Some(db) = database_of_file(&entry.node.name) else {
            continue;
        };
        step(report, &format!("restore database {db}"), async {
            let client = server
                .connect("postgres", "postgres")
                .await
                .map_err(|e| e.to_string())?;
            if db != "postgres" {
                let quoted = format!("\"{}\"", db.replace('"', "\"\""));
                client
                    .batch_execute(&format!("CREATE DATABASE {quoted}"))
                    .await
                    .map_err(|e| format!("CREATE DATABASE {quoted}: {e}"))?;
            }
            let cmd = pg_restore_command(&tools, &conn(&db)?, &[], &[]);
            restore_into_program(repo, &index, entry, cmd, "pg_restore", DEFAULT_PARALLEL)
                .await
                .map(|_| {
                    (
                        (),
                        format!("{} into {db}", crate::human::bytes(entry.node.size)),
                    )
                })
                .map_err(|e| e.to_string())
        })
        .await?;
        report.bytes_restored += entry.node.size;
        databases.push(db);
    }
    report.restore_seconds = Some(restore_t.elapsed().as_secs_f64());
    report.rto_seconds = Some(started.elapsed().as_secs_f64());
    if let Some(file) = &drill.check_sql {
        let db = drill
            .check_db
            .clone()
            .or_else(|| databases.first().cloned())
            .unwrap_or_else(|| "postgres".into());
        let output = step(report, "check SQL", async {
            server
                .run_sql_file(file, "postgres", &db)
                .map(|out| {
                    let first = out.lines().next().unwrap_or("").to_string();
                    (
                        out,
                        format!("{} ran clean in {db}: {first}", file.display()),
                    )
                })
                .map_err(|e| e.to_string())
        })
        .await?;
        report.check_output = Some(shorten(&output, 4096));
    }
    Ok(())
}
