//! Point-in-time restore and restore drills against a real PostgreSQL 15: WAL archived
//! by `stowage wal-push`, base backups by `stowage backup pg-base`, restores by
//! `stowage restore pg`, replayed by a real server.
//!
//! A ticker commits one row every ~100 ms with one client, so rows commit in id order
//! and `pg_xact_commit_timestamp` (track_commit_timestamp is on) says exactly which rows
//! a time target must keep. A second table gets rows only from statements the test
//! runs one at a time, for the LSN, xid and restore-point targets.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use common::pg::{self, Cluster, PgWorld};
use common::{assert_fails_with, assert_success};

const ARCHIVE_WAIT: Duration = Duration::from_secs(120);

fn json(out: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `pgbench` committing one row into `ticks` every 100 ms for `secs` seconds.
fn ticker(world: &PgWorld, cluster: &Cluster, secs: u32) -> Child {
    let script = world.root().join("tick.sql");
    std::fs::write(
        &script,
        "INSERT INTO ticks DEFAULT VALUES;\n\\sleep 100 ms\n",
    )
    .unwrap();
    pg::give_to_owner(&script);
    let mut cmd = cluster.client("pgbench");
    cmd.args(["-n", "-c", "1", "-T", &secs.to_string(), "-f"])
        .arg(&script)
        .arg("postgres")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().unwrap()
}

fn primary(world: &PgWorld, name: &str) -> Cluster {
    let mut cluster = Cluster::init(world, name, Some("stowage wal-push %p"), &[]);
    cluster.start();
    cluster.sql(
        "CREATE TABLE ticks (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp()); \
         CREATE TABLE marks (n int PRIMARY KEY)",
    );
    cluster
}

fn base_backup(world: &PgWorld, cluster: &Cluster) -> String {
    let out = world
        .stowage(&[
            "--json",
            "backup",
            "pg-base",
            "--fast",
            "--dbname",
            &cluster.connstr("postgres"),
            "--pgdata",
            cluster.data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_success(&out, &["backup", "pg-base"]);
    json(&out.stdout)["snapshot"].as_str().unwrap().to_string()
}

/// `stowage restore pg --to <root>/<name> ARGS`.
fn restore_pg(world: &PgWorld, name: &str, args: &[&str]) -> (Output, PathBuf) {
    let dir = world.root().join(name);
    let mut all = vec!["restore", "pg", "--to", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    (world.stowage(&all).output().unwrap(), dir)
}

/// Restores with `args` (promoting at the target), starts the result with archiving
/// off, and waits until it has promoted.
fn recover(world: &PgWorld, name: &str, args: &[&str]) -> Cluster {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--target-action", "promote"]);
    let (out, dir) = restore_pg(world, name, &all);
    assert_success(&out, &["restore", "pg", name]);
    let mut cluster = Cluster::existing(world, name, dir);
    cluster.append_conf(&["archive_mode = off".into()]);
    cluster.start();
    cluster.wait_promoted();
    cluster
}

/// (count, max id) of a table's rows.
fn rows(cluster: &Cluster, table: &str) -> String {
    cluster.sql(&format!(
        "SELECT count(*) || '/' || coalesce(max(id), 0) FROM {table}"
    ))
}

fn marks(cluster: &Cluster) -> String {
    cluster.sql("SELECT coalesce(string_agg(n::text, ',' ORDER BY n), '') FROM marks")
}

/// The commit time of tick `id`, as the server prints it.
fn commit_time(cluster: &Cluster, id: i64) -> String {
    cluster.sql(&format!(
        "SELECT pg_xact_commit_timestamp(xmin)::text FROM ticks WHERE id = {id}"
    ))
}

/// Time, LSN, xid, restore-point and latest targets each leave exactly the rows the
/// server's stop rules say; an unreachable target is refused with the window before
/// anything is written; `--delta` rewinds a damaged restore in place; a drill reports
/// what the test measured.
#[test]
fn every_kind_of_target_restores_exactly_its_rows() {
    if pg::skip() {
        return;
    }
    let world = PgWorld::new();
    let mut primary = primary(&world, "primary");
    let before_backup = primary.sql("SELECT now()::text");
    let mut ticks = ticker(&world, &primary, 16);
    std::thread::sleep(Duration::from_secs(3));
    base_backup(&world, &primary);
    // Segment switches, so the WAL after the backup spans several segments.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(1));
        primary.sql("SELECT pg_switch_wal()");
    }
    // Statements one at a time for the other targets.
    primary.sql("INSERT INTO marks VALUES (1)");
    let rp_lsn = primary.sql("SELECT pg_create_restore_point('before_two')");
    primary.sql("INSERT INTO marks VALUES (2)");
    let xid3 = primary.sql("BEGIN; INSERT INTO marks VALUES (3); SELECT txid_current(); COMMIT;");
    let xid3 = xid3
        .lines()
        .find(|l| l.chars().all(|c| c.is_ascii_digit()) && !l.is_empty())
        .unwrap()
        .to_string();
    primary.sql("INSERT INTO marks VALUES (4)");
    let lsn4 = primary.sql("SELECT pg_current_wal_lsn()");
    primary.sql("INSERT INTO marks VALUES (5)");
    while ticks.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_secs(1));
        primary.sql("SELECT pg_switch_wal()");
    }
    primary.sql("INSERT INTO marks VALUES (6)");
    let all_ticks = rows(&primary, "ticks");
    primary.sql("SELECT pg_switch_wal()");
    primary.wait_archived(ARCHIVE_WAIT);
    eprintln!("restore point at {rp_lsn}, xid {xid3}, lsn {lsn4}, ticks {all_ticks}");

    // A time between the backup's end and the end of the ticks.
    let total: i64 = primary.sql("SELECT max(id) FROM ticks").parse().unwrap();
    let k = total - 20;
    let t = commit_time(&primary, k);
    let at_or_before = primary.sql(&format!(
        "SELECT count(*) || '/' || max(id) FROM ticks WHERE pg_xact_commit_timestamp(xmin) <= '{t}'"
    ));
    assert_eq!(at_or_before, format!("{k}/{k}"));

    let by_time = recover(&world, "by-time", &["--target-time", &t]);
    assert_eq!(rows(&by_time, "ticks"), format!("{k}/{k}"));
    drop(by_time);
    let before = recover(
        &world,
        "by-time-excl",
        &["--target-time", &t, "--target-exclusive"],
    );
    assert_eq!(rows(&before, "ticks"), format!("{}/{}", k - 1, k - 1));
    drop(before);
    let by_name = recover(&world, "by-name", &["--target-name", "before_two"]);
    assert_eq!(marks(&by_name), "1");
    drop(by_name);
    let by_xid = recover(&world, "by-xid", &["--target-xid", &xid3]);
    assert_eq!(marks(&by_xid), "1,2,3");
    drop(by_xid);
    let by_xid_excl = recover(
        &world,
        "by-xid-excl",
        &["--target-xid", &xid3, "--target-exclusive"],
    );
    assert_eq!(marks(&by_xid_excl), "1,2");
    drop(by_xid_excl);
    let by_lsn = recover(&world, "by-lsn", &["--target-lsn", &lsn4]);
    assert_eq!(marks(&by_lsn), "1,2,3,4");
    drop(by_lsn);
    let mut latest = recover(&world, "latest", &["--latest"]);
    assert_eq!(marks(&latest), "1,2,3,4,5,6");
    assert_eq!(rows(&latest, "ticks"), all_ticks);

    // --delta over a damaged copy: rewrites what differs, keeps the rest.
    latest.stop();
    let data = latest.data.clone();
    let table = latest_relation(&world, &primary, "ticks");
    let damaged = data.join(&table);
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[100..200].fill(0xAB);
    std::fs::write(&damaged, bytes).unwrap();
    std::fs::remove_file(data.join("PG_VERSION")).unwrap();
    std::fs::write(data.join("base/stray_file"), b"not in the backup").unwrap();
    let (out, _) = restore_pg(
        &world,
        "latest",
        &[
            "--latest",
            "--delta",
            "--target-action",
            "promote",
            "--json",
        ],
    );
    assert_success(&out, &["restore", "pg", "--delta"]);
    let report = json(&out.stdout);
    let stats = &report["stats"];
    let (bytes_total, kept) = (
        stats["bytes"].as_u64().unwrap(),
        stats["kept_bytes"].as_u64().unwrap(),
    );
    eprintln!("delta: {kept} of {bytes_total} bytes kept");
    assert!(kept > bytes_total * 3 / 4, "kept {kept} of {bytes_total}");
    assert!(!data.join("base/stray_file").exists());
    assert!(data.join("PG_VERSION").exists());
    let mut again = Cluster::existing(&world, "latest-again", data);
    again.append_conf(&["archive_mode = off".into()]);
    again.start();
    again.wait_promoted();
    assert_eq!(marks(&again), "1,2,3,4,5,6");
    assert_eq!(rows(&again, "ticks"), all_ticks);
    again.stop();
    drop(latest);

    // A drill to the time target reports what the test measured.
    let check = world.root().join("check.sql");
    std::fs::write(&check, "SELECT count(*) AS ticks FROM ticks;\n").unwrap();
    pg::give_to_owner(&check);
    let out = world
        .stowage(&[
            "--json",
            "drill",
            "--target-time",
            &t,
            "--check-sql",
            check.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_success(&out, &["drill"]);
    let report = json(&out.stdout);
    assert_eq!(report["ok"], true, "{report:#}");
    let last =
        chrono::DateTime::parse_from_rfc3339(report["last_commit"].as_str().unwrap()).unwrap();
    let want = parse_pg_time(&t);
    assert_eq!(last, want, "the last commit reached is tick {k}'s");
    assert_eq!(report["rpo_seconds"].as_f64(), Some(0.0));
    assert!(report["check_output"]
        .as_str()
        .unwrap()
        .contains(&k.to_string()));
    assert!(report["wal_replayed_bytes"].as_u64().unwrap() > 0);
    assert!(report["rto_seconds"].as_f64().unwrap() > 0.0);

    // Refused before anything is written, with the window in the message.
    let (out, dir) = restore_pg(&world, "too-early", &["--target-time", &before_backup]);
    assert_fails_with(
        &out,
        &[
            "cannot restore to time",
            "no base backup can reach it",
            "WAL replayable",
        ],
    );
    assert!(!dir.exists());
    let (out, dir) = restore_pg(
        &world,
        "too-late",
        &["--target-time", "2099-01-01 00:00:00+00"],
    );
    assert_fails_with(
        &out,
        &["lies after the newest archived WAL", "commits from"],
    );
    assert!(!dir.exists());
    let (out, _) = restore_pg(&world, "no-such-point", &["--target-name", "never_made"]);
    assert_fails_with(&out, &["restore point \"never_made\""]);
    let (out, _) = restore_pg(&world, "bad-time", &["--target-time", "yesterday noon"]);
    assert_fails_with(&out, &["--target-time \"yesterday noon\"", "with its zone"]);
    let busy = world.root().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("file"), b"x").unwrap();
    let out = world
        .stowage(&["restore", "pg", "--latest", "--to", busy.to_str().unwrap()])
        .output()
        .unwrap();
    assert_fails_with(&out, &["is not empty", "--delta"]);

    // A deleted segment between the backup and the target makes it unreachable.
    let victim = delete_segment_after_backup(&world);
    let (out, dir) = restore_pg(&world, "gap", &["--target-time", &t]);
    assert_fails_with(&out, &[&format!("segment {victim} is missing"), "gap:"]);
    assert!(!dir.exists());
    let (out, _) = restore_pg(&world, "gap-latest", &["--latest"]);
    assert_fails_with(&out, &[&format!("segment {victim} is missing")]);
    primary.stop();
}

/// Parses the server's `timestamptz` text (`2026-11-26 07:00:01.123456+00`).
fn parse_pg_time(text: &str) -> chrono::DateTime<chrono::FixedOffset> {
    let iso = format!("{}:00", text.replacen(' ', "T", 1));
    chrono::DateTime::parse_from_rfc3339(&iso).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The path of `table`'s main fork relative to the data directory.
fn latest_relation(_world: &PgWorld, primary: &Cluster, table: &str) -> PathBuf {
    PathBuf::from(primary.sql(&format!("SELECT pg_relation_filepath('{table}')")))
}

/// Deletes the archived segment right after the (only) base backup's stop segment;
/// returns its name.
fn delete_segment_after_backup(world: &PgWorld) -> String {
    let list = json(world.ok(&["--json", "snapshots"]).as_bytes());
    let stop = list[0]["source"]["stop_wal"].as_str().unwrap().to_string();
    let mut segments: Vec<PathBuf> = walk(&world.repo().join("wal"))
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.len() == 24 && name.as_str() > stop.as_str()
        })
        .collect();
    segments.sort();
    let victim = segments[0].clone();
    std::fs::remove_file(&victim).unwrap();
    victim.file_name().unwrap().to_string_lossy().to_string()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Timelines: a restore promoted to timeline 2 keeps writing and archiving while the
/// old primary goes on on timeline 1; restores follow timeline 2 by default, and reach
/// a point on timeline 1 after the fork with `--target-timeline 1`.
#[test]
fn restores_follow_the_timeline_asked_for() {
    if pg::skip() {
        return;
    }
    let world = PgWorld::new();
    let mut primary = primary(&world, "primary");
    primary.sql("INSERT INTO marks VALUES (1)");
    base_backup(&world, &primary);
    primary.sql("INSERT INTO marks VALUES (2)");
    let fork_lsn = primary.sql("SELECT pg_current_wal_lsn()");
    primary.sql("INSERT INTO marks VALUES (3)");
    primary.sql("SELECT pg_switch_wal()");
    primary.wait_archived(ARCHIVE_WAIT);

    // Timeline 2: restored to fork_lsn (marks 1, 2), promoted, archiving on.
    let (out, dir) = restore_pg(
        &world,
        "tl2",
        &["--target-lsn", &fork_lsn, "--target-action", "promote"],
    );
    assert_success(&out, &["restore", "pg", "tl2"]);
    let mut tl2 = Cluster::existing(&world, "tl2", dir);
    tl2.start();
    tl2.wait_promoted();
    assert_eq!(marks(&tl2), "1,2");
    assert_eq!(
        tl2.sql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"),
        "00000002"
    );
    tl2.sql("INSERT INTO marks VALUES (20)");
    let on_tl2 = tl2.sql("SELECT pg_current_wal_lsn()");
    tl2.sql("INSERT INTO marks VALUES (21)");
    tl2.sql("SELECT pg_switch_wal()");
    tl2.wait_archived(ARCHIVE_WAIT);
    // Meanwhile timeline 1 goes on.
    primary.sql("INSERT INTO marks VALUES (4)");
    let on_tl1 = primary.sql("SELECT pg_current_wal_lsn()");
    primary.sql("INSERT INTO marks VALUES (5)");
    primary.sql("SELECT pg_switch_wal()");
    primary.wait_archived(ARCHIVE_WAIT);
    tl2.stop();
    primary.stop();

    let latest = recover(&world, "latest", &["--latest"]);
    assert_eq!(marks(&latest), "1,2,20,21");
    drop(latest);
    let on_two = recover(&world, "on-two", &["--target-lsn", &on_tl2]);
    assert_eq!(marks(&on_two), "1,2,20");
    drop(on_two);
    let on_one = recover(
        &world,
        "on-one",
        &["--target-lsn", &on_tl1, "--target-timeline", "1"],
    );
    assert_eq!(marks(&on_one), "1,2,3,4");
    drop(on_one);
    let (out, _) = restore_pg(&world, "no-tl", &["--latest", "--target-timeline", "7"]);
    assert_fails_with(&out, &["timeline 7 has no history file"]);
}

/// A drill of a dump restores it into a scratch server and runs the check; a failing
/// check fails the drill.
#[test]
fn drills_of_dumps_restore_and_check() {
    if pg::skip() {
        return;
    }
    let world = PgWorld::new();
    let primary = primary(&world, "primary");
    primary.sql("INSERT INTO marks SELECT g FROM generate_series(1, 1000) g");
    let out = world
        .stowage(&[
            "--json",
            "backup",
            "pg-dump",
            "--dbname",
            &primary.connstr("postgres"),
        ])
        .output()
        .unwrap();
    assert_success(&out, &["backup", "pg-dump"]);
    let id = json(&out.stdout)["snapshot"].as_str().unwrap().to_string();
    let check = world.root().join("check.sql");
    std::fs::write(&check, "SELECT sum(n) FROM marks;\n").unwrap();
    pg::give_to_owner(&check);
    let out = world
        .stowage(&[
            "--json",
            "drill",
            "--snapshot",
            &id,
            "--check-sql",
            check.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_success(&out, &["drill", "--snapshot"]);
    let report = json(&out.stdout);
    assert_eq!(report["kind"], "pg-dump");
    assert!(
        report["check_output"].as_str().unwrap().contains("500500"),
        "{report:#}"
    );
    assert!(report["rpo_seconds"].as_f64().unwrap() >= 0.0);

    std::fs::write(&check, "SELECT no_such_column FROM marks;\n").unwrap();
    let out = world
        .stowage(&[
            "drill",
            "--snapshot",
            &id,
            "--check-sql",
            check.to_str().unwrap(),
            "--markdown",
        ])
        .output()
        .unwrap();
    assert_fails_with(&out, &["restore drill failed at step \"check SQL\""]);
    let markdown = String::from_utf8_lossy(&out.stdout);
    assert!(
        markdown.contains("## Restore drill: **FAILED**"),
        "{markdown}"
    );
    assert!(markdown.contains("no_such_column"), "{markdown}");
}
