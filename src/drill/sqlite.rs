//! The SQLite drill: the database restored into scratch space, `PRAGMA integrity_check`,
//! the check SQL run against it, then removed.
//!
//! The RPO of a SQLite snapshot is its age: it holds the database as of the read
//! transaction the backup took, at the snapshot's start.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;

use crate::repo::id::SnapshotId;
use crate::repo::snapshot::Snapshot;
use crate::repo::Repository;
use crate::restore::sqlite::restore_to_file;
use crate::restore::DEFAULT_PARALLEL;
use crate::sqlite::integrity_check;
use rusqlite::fallible_iterator::FallibleIterator;

use super::{finish, shorten, step, Report};

/// What to rehearse.
#[derive(Debug, Clone)]
pub struct SqliteDrill {
    pub snapshot: (SnapshotId, Snapshot),
    pub scratch: PathBuf,
    pub keep: bool,
    pub check_sql: Option<PathBuf>,
}

/// Runs the drill; every outcome, failures included, is in the report.
pub async fn run(repo: &Repository, drill: &SqliteDrill) -> Report {
    let started = Instant::now();
    let (id, snapshot) = &drill.snapshot;
    let mut report = Report {
        kind: "sqlite".into(),
        snapshot: Some(id.short()),
        snapshot_time: Some(snapshot.end),
        target: format!("the database {:?}", snapshot.name),
        requested_time: Some(Utc::now()),
        last_commit: Some(snapshot.start),
        ..Report::default()
    };
    let result = steps(repo, drill, started, &mut report).await;
    finish(
        &mut report,
        result,
        started,
        None,
        &drill.scratch,
        drill.keep,
    );
    report
}

async fn steps(
    repo: &Repository,
    drill: &SqliteDrill,
    started: Instant,
    report: &mut Report,
) -> Result<(), String> {
    let (id, snapshot) = &drill.snapshot;
    std::fs::create_dir_all(&drill.scratch)
        .map_err(|e| format!("{}: {e}", drill.scratch.display()))?;
    let file = drill.scratch.join("restored.db");
    let restore_t = Instant::now();
    let bytes = step(report, "restore database", async {
        let index = repo.load_index().await.map_err(|e| e.to_string())?;
        let restored = restore_to_file(
            repo,
            &index,
            *id,
            snapshot.tree,
            &file,
            false,
            DEFAULT_PARALLEL,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok((
            restored.bytes,
            format!(
                "{} into {}",
                crate::human::bytes(restored.bytes),
                restored.path.display()
            ),
        ))
    })
    .await?;
    report.bytes_restored = bytes;
    report.restore_seconds = Some(restore_t.elapsed().as_secs_f64());
    step(report, "integrity_check", async {
        integrity_check(&file)
            .map(|()| ((), "ok".to_string()))
            .map_err(|e| e.to_string())
    })
    .await?;
    report.rto_seconds = Some(started.elapsed().as_secs_f64());
    if let Some(sql) = &drill.check_sql {
        let output = step(report, "check SQL", async { run_check(&file, sql) }).await?;
        report.check_output = Some(shorten(&output, 4096));
    }
    Ok(())
}

/// Runs every statement of `sql` against the database; rows come back `|`-separated.
fn run_check(db: &Path, sql: &Path) -> Result<(String, String), String> {
    let text = std::fs::read_to_string(sql).map_err(|e| format!("{}: {e}", sql.display()))?;
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("{}: {e}", db.display()))?;
    let mut out = String::new();
    let mut batch = rusqlite::Batch::new(&conn, &text);
    while let Some(mut stmt) = batch
        .next()
        .map_err(|e| format!("check SQL {}: {e}", sql.display()))?
    {
        let columns = stmt.column_count();
        let mut rows = stmt
            .query([])
            .map_err(|e| format!("check SQL {}: {e}", sql.display()))?;
        while let Some(row) = rows
            .next()
            .map_err(|e| format!("check SQL {}: {e}", sql.display()))?
        {
            let cells: Vec<String> = (0..columns)
                .map(|i| match row.get_ref(i) {
                    Ok(value) => match value {
                        rusqlite::types::ValueRef::Null => String::new(),
                        rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                        rusqlite::types::ValueRef::Real(x) => x.to_string(),
                        rusqlite::types::ValueRef::Text(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        rusqlite::types::ValueRef::Blob(b) => format!("<{} bytes>", b.len()),
                    },
                    Err(_) => String::new(),
                })
                .collect();
            out.push_str(&cells.join("|"));
            out.push('\n');
        }
    }
    let first = out.lines().next().unwrap_or("").to_string();
    Ok((out, format!("{} ran clean: {first}", sql.display())))
}
