//! `stowage backup sqlite` and the restore of its snapshots, against real SQLite
//! databases written by another thread while the backups run.
//!
//! Every database here keeps an invariant each transaction preserves: table `t` holds
//! rows 1..N (no holes) and table `meta` records N and the sum of the row checksums.
//! A restored copy that passes `PRAGMA integrity_check` and keeps the invariant is the
//! database as of some committed transaction: a torn copy would break one or the other.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_fails_with, assert_success, TestRepo};
use rusqlite::Connection;

/// A database in `mode` (`wal` or `delete`) with `page_size` pages and `rows` rows of
/// `row_bytes` random bytes each.
fn create(path: &Path, mode: &str, page_size: u32, rows: u64, row_bytes: usize) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA page_size = {page_size}; PRAGMA journal_mode = {mode};
         CREATE TABLE t (n INTEGER PRIMARY KEY, k INTEGER, v BLOB, sum INTEGER);
         CREATE INDEX t_k ON t (k);
         CREATE TABLE meta (rows INTEGER, total INTEGER);
         INSERT INTO meta VALUES (0, 0);"
    ))
    .unwrap();
    let mode_now: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode_now, mode);
    let tx = conn.unchecked_transaction().unwrap();
    for _ in 0..rows {
        commit_row(&tx, row_bytes);
    }
    tx.commit().unwrap();
}

/// Appends row N+1 and updates `meta` to match, in the caller's transaction.
fn commit_row(conn: &Connection, row_bytes: usize) {
    conn.execute_batch(&format!(
        "INSERT INTO t (n, k, v, sum) SELECT rows + 1, abs(random()) % 1000000, randomblob({row_bytes}), 0 FROM meta;
         UPDATE t SET sum = (SELECT length(v) + n FROM t WHERE n = (SELECT rows + 1 FROM meta))
           WHERE n = (SELECT rows + 1 FROM meta);
         UPDATE meta SET rows = rows + 1,
           total = total + (SELECT sum FROM t WHERE n = (SELECT rows + 1 FROM meta));"
    ))
    .unwrap();
}

/// Checks a restored database: integrity, then the invariant. Returns N.
fn check_consistent(path: &Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "{}", path.display());
    let (rows, total): (i64, i64) = conn
        .query_row("SELECT rows, total FROM meta", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let (count, max, sum): (i64, Option<i64>, Option<i64>) = conn
        .query_row("SELECT count(*), max(n), sum(sum) FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(
        (count, max.unwrap_or(0)),
        (rows, rows),
        "rows 1..N with no holes"
    );
    assert_eq!(
        sum.unwrap_or(0),
        total,
        "row checksums add up to meta.total"
    );
    rows
}

/// A thread committing one row per transaction until stopped; returns the commits made.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<i64>,
}

impl Writer {
    fn start(path: &Path, row_bytes: usize) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = path.to_path_buf();
        let handle = std::thread::spawn(move || {
            let conn = Connection::open(&path).unwrap();
            conn.busy_timeout(Duration::from_secs(60)).unwrap();
            let mut commits = 0;
            while !flag.load(Ordering::Relaxed) {
                let tx = conn.unchecked_transaction().unwrap();
                commit_row(&tx, row_bytes);
                tx.commit().unwrap();
                commits += 1;
            }
            commits
        });
        Writer { stop, handle }
    }

    fn stop(self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

fn backup(repo: &TestRepo, db: &Path) -> serde_json::Value {
    repo.json(&["backup", "sqlite", db.to_str().unwrap()])
}

fn restore(repo: &TestRepo, snapshot: &str, to: &Path) {
    repo.ok(&["restore", snapshot, "--to", to.to_str().unwrap()]);
}

fn snapshot_source(repo: &TestRepo, id: &str) -> serde_json::Value {
    let list = repo.json(&["snapshots"]);
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .map(|s| s["source"].clone())
        .unwrap()
}

/// Backups taken while a writer commits restore to committed states, in both journal
/// modes and at both ends of the page sizes; the last one, taken after the writer
/// stopped, restores to exactly the final state.
fn live_backups(mode: &str, page_size: u32) {
    let repo = TestRepo::new();
    let db = repo.scratch("app.db");
    create(&db, mode, page_size, 500, 700);
    let writer = Writer::start(&db, 700);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(backup(&repo, &db)["snapshot"].as_str().unwrap().to_string());
    }
    let commits = writer.stop();
    ids.push(backup(&repo, &db)["snapshot"].as_str().unwrap().to_string());
    let mut seen = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let to = repo.scratch(&format!("restored-{i}.db"));
        restore(&repo, id, &to);
        seen.push(check_consistent(&to));
        let source = snapshot_source(&repo, id);
        assert_eq!(source["page_size"], page_size);
        assert_eq!(source["journal_mode"], mode);
        assert_eq!(
            std::fs::metadata(&to).unwrap().len(),
            source["page_count"].as_u64().unwrap() * u64::from(page_size)
        );
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(*seen.last().unwrap(), 500 + commits, "the final state");
}

#[test]
fn live_wal_4k() {
    live_backups("wal", 4096);
}

#[test]
fn live_wal_64k() {
    live_backups("wal", 65536);
}

#[test]
fn live_rollback_4k() {
    live_backups("delete", 4096);
}

#[test]
fn live_rollback_64k() {
    live_backups("delete", 65536);
}

/// Pages of `page` bytes that differ between two files (a page only one has counts).
fn changed_pages(a: &[u8], b: &[u8], page: usize) -> usize {
    let pages = a.len().max(b.len()).div_ceil(page);
    (0..pages)
        .filter(|i| a.get(i * page..(i + 1) * page) != b.get(i * page..(i + 1) * page))
        .count()
}

/// After ~1% of the pages changed, the second backup stores about those pages: at most
/// 1.2× their size plus the metadata, which is the new page list (a 32-byte blob id a page,
/// at most) and the tree, however the changes fall.
#[test]
fn second_backup_stores_the_changed_pages() {
    let repo = TestRepo::new();
    let db = repo.scratch("big.db");
    // ~3000 pages of incompressible rows, one row a page.
    create(&db, "delete", 4096, 3000, 3000);
    let first = backup(&repo, &db);
    let before = std::fs::read(&db).unwrap();
    let conn = Connection::open(&db).unwrap();
    for n in (7..3000).step_by(100) {
        conn.execute("UPDATE t SET v = randomblob(3000) WHERE n = ?1", [n as i64])
            .unwrap();
    }
    drop(conn);
    let after = std::fs::read(&db).unwrap();
    let changed = changed_pages(&before, &after, 4096);
    assert!((30..=60).contains(&changed), "{changed} pages changed");
    let second = backup(&repo, &db);
    let stored = second["bytes_stored"].as_u64().unwrap();
    let floor = (changed * 4096) as u64;
    let page_list = 32 * (after.len() / 4096) as u64;
    assert!(
        stored <= floor * 12 / 10 + page_list + 16 * 1024,
        "stored {stored} for {changed} changed pages ({floor} bytes); first stored {}",
        first["bytes_stored"]
    );
    assert!(stored * 20 < first["bytes_stored"].as_u64().unwrap());
}

#[test]
fn refuses_what_is_not_a_database() {
    let repo = TestRepo::new();
    let text = repo.scratch("notes.txt");
    std::fs::write(
        &text,
        "just some text, long enough to be read as a header ....\n".repeat(4),
    )
    .unwrap();
    let out = repo
        .cmd(&["backup", "sqlite", text.to_str().unwrap()])
        .output()
        .unwrap();
    assert_fails_with(&out, &["notes.txt", "not an SQLite database"]);

    let empty = repo.scratch("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let out = repo
        .cmd(&["backup", "sqlite", empty.to_str().unwrap()])
        .output()
        .unwrap();
    assert_fails_with(&out, &["empty.db", "empty file"]);

    let db = repo.scratch("bad.db");
    create(&db, "delete", 4096, 10, 100);
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[16..18].copy_from_slice(&3000u16.to_be_bytes());
    std::fs::write(&db, &bytes).unwrap();
    let out = repo
        .cmd(&["backup", "sqlite", db.to_str().unwrap()])
        .output()
        .unwrap();
    assert_fails_with(&out, &["bad.db", "corrupt SQLite header", "page size 3000"]);

    let list = repo.json(&["snapshots"]);
    assert_eq!(list.as_array().unwrap().len(), 0, "nothing stored");
}

#[test]
fn a_database_locked_beyond_the_timeout_is_refused() {
    let repo = TestRepo::new();
    let db = repo.scratch("locked.db");
    create(&db, "delete", 4096, 10, 100);
    let holder = Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let out = repo
        .cmd(&[
            "backup",
            "sqlite",
            db.to_str().unwrap(),
            "--busy-timeout",
            "300ms",
        ])
        .output()
        .unwrap();
    assert_fails_with(&out, &["locked.db", "locked", "--busy-timeout"]);
    holder.execute_batch("COMMIT").unwrap();
    backup(&repo, &db);
}

/// `backup sqlite --every` in the background: it keeps its watch connection open.
fn spawn_every(repo: &TestRepo, db: &Path) -> Child {
    repo.cmd(&["backup", "sqlite", db.to_str().unwrap(), "--every", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn snapshot_count(repo: &TestRepo) -> usize {
    repo.json(&["snapshots"]).as_array().unwrap().len()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    // SAFETY: kill has no memory effects; the pid is our own child's.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap()
}

/// `--every` snapshots at once, again only once the database changed, and stops cleanly
/// on SIGTERM.
#[test]
fn every_snapshots_on_change_and_stops_on_sigterm() {
    let repo = TestRepo::new();
    let db = repo.scratch("ticking.db");
    create(&db, "wal", 4096, 50, 200);
    let mut child = spawn_every(&repo, &db);
    wait_for("the first snapshot", || snapshot_count(&repo) == 1);
    // Three ticks with no change: no new snapshot.
    std::thread::sleep(Duration::from_millis(3200));
    assert_eq!(
        snapshot_count(&repo),
        1,
        "unchanged database backed up again"
    );
    let conn = Connection::open(&db).unwrap();
    commit_row(&conn, 200);
    drop(conn);
    wait_for("the snapshot of the change", || snapshot_count(&repo) == 2);
    let status = terminate(&mut child);
    assert!(status.success(), "{status:?}");
    let to = repo.scratch("latest.db");
    restore(&repo, "latest", &to);
    assert_eq!(check_consistent(&to), 51);
}

/// Restore writes a checked file, but not over a database another process has open
/// (WAL mode, or rollback mode with no transaction running) unless --force.
#[test]
fn restore_refuses_a_database_open_elsewhere() {
    for mode in ["wal", "delete"] {
        let repo = TestRepo::new();
        let db = repo.scratch("source.db");
        create(&db, mode, 4096, 100, 100);
        let id = backup(&repo, &db)["snapshot"].as_str().unwrap().to_string();

        let target = repo.scratch("live.db");
        create(&target, mode, 4096, 5, 100);
        let mut holder = spawn_every(&repo, &target);
        wait_for("the holder's snapshot", || snapshot_count(&repo) == 2);
        let args = ["restore", &id, "--to", target.to_str().unwrap()];
        let out = repo.cmd(&args).output().unwrap();
        assert_fails_with(&out, &["live.db", "has it open", "--force"]);
        assert_eq!(check_consistent(&target), 5, "{mode}: target left alone");

        let mut forced = args.to_vec();
        forced.push("--force");
        let out = repo.cmd(&forced).output().unwrap();
        assert_success(&out, &forced);
        terminate(&mut holder);
        assert_eq!(check_consistent(&target), 100, "{mode}: replaced");
        let leftovers: Vec<PathBuf> = std::fs::read_dir(repo.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".stowage-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

/// The library calls `stowage drill` uses: a damaged database fails the check, naming it.
#[test]
fn integrity_check_names_a_damaged_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("damaged.db");
    create(&db, "delete", 4096, 400, 300);
    stowage::restore::sqlite::integrity_check(&db).unwrap();
    let mut bytes = std::fs::read(&db).unwrap();
    // Scribble over the b-tree page headers of a few pages after the schema's.
    for page in 2..6 {
        let at = page * 4096;
        bytes[at..at + 12].fill(0x5a);
    }
    std::fs::write(&db, &bytes).unwrap();
    let err = stowage::restore::sqlite::integrity_check(&db).unwrap_err();
    assert!(err.to_string().contains("damaged.db"), "{err}");
}

/// A drill of a SQLite snapshot restores it to scratch space, checks its integrity and
/// runs the check SQL; a check that fails fails the drill.
#[test]
fn drill_restores_checks_and_reports() {
    let repo = TestRepo::new();
    let db = repo.scratch("drill.db");
    create(&db, "wal", 4096, 200, 100);
    let snapshot = backup(&repo, &db)["snapshot"].as_str().unwrap().to_string();
    let check = repo.scratch("check.sql");
    std::fs::write(&check, "SELECT rows FROM meta;\nSELECT count(*) FROM t;\n").unwrap();
    let report = repo.json(&[
        "drill",
        "--snapshot",
        &snapshot,
        "--check-sql",
        check.to_str().unwrap(),
    ]);
    assert_eq!(report["kind"], "sqlite");
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["check_output"], "200\n200\n");
    assert!(report["rpo_seconds"].as_f64().unwrap() >= 0.0);
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "restore database",
            "integrity_check",
            "check SQL",
            "stop and clean up"
        ]
    );

    std::fs::write(&check, "SELECT missing FROM t;\n").unwrap();
    let out = repo
        .cmd(&[
            "drill",
            "--snapshot",
            &snapshot,
            "--check-sql",
            check.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_fails_with(&out, &["restore drill failed at step \"check SQL\""]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no such column: missing"));
}
