//! Physical base backups of a real PostgreSQL 15: `stowage backup pg-base`, with WAL
//! archived by `stowage wal-push`, restored and replayed by a real server.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::pg::{self, Cluster, PgWorld};
use common::{assert_fails_with, assert_success};

const ARCHIVE_WAIT: Duration = Duration::from_secs(120);

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn base_backup(world: &PgWorld, cluster: &Cluster, extra: &[&str]) -> Output {
    let conninfo = cluster.connstr("postgres");
    let mut args = vec![
        "--json",
        "backup",
        "pg-base",
        "--fast",
        "--dbname",
        &conninfo,
        "--pgdata",
        cluster.data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    world.stowage(&args).output().unwrap()
}

fn snapshots(world: &PgWorld) -> Vec<serde_json::Value> {
    json(&world.ok(&["--json", "snapshots"]))
        .as_array()
        .unwrap()
        .clone()
}

/// Restores snapshot `id` into `dir` and makes a recovering cluster of it that fetches
/// WAL with `stowage wal-fetch`, recovering to the end of the archive.
fn restore(world: &PgWorld, id: &str, name: &str) -> Cluster {
    let target = world.root().join(format!("{name}-files"));
    world.ok(&["restore", id, "--to", target.to_str().unwrap()]);
    let data = target.join("pgdata");
    let cluster = Cluster::existing(world, name, data.clone());
    std::fs::write(data.join("recovery.signal"), "").unwrap();
    pg::give_to_owner(&data.join("recovery.signal"));
    cluster.append_conf(&[
        format!(
            "restore_command = '{} wal-fetch %f %p'",
            env!("CARGO_BIN_EXE_stowage")
        ),
        "archive_mode = off".into(),
        "recovery_target_action = promote".into(),
    ]);
    cluster
}

/// A pgbench cluster archiving into the world's repository.
fn busy_cluster(world: &PgWorld, name: &str, scale: &str) -> Cluster {
    let mut cluster = Cluster::init(world, name, Some("stowage wal-push %p"), &[]);
    cluster.start();
    cluster.pgbench("postgres", &["-i", "-s", scale]);
    cluster
}

fn state(cluster: &Cluster) -> String {
    cluster.sql(
        "SELECT sum(abalance)::text || '/' || (SELECT count(*) FROM pgbench_history)::text \
         || '/' || (SELECT md5(string_agg(aid::text || ':' || abalance, ',' ORDER BY aid)) \
         FROM pgbench_accounts) FROM pgbench_accounts",
    )
}

/// A base backup taken while pgbench writes, restored and replayed from the repository's
/// WAL, reaches consistency and ends with exactly the primary's data.
#[test]
fn backup_under_load_restores_and_replays_to_the_same_data() {
    if pg::skip() {
        return;
    }
    let world = PgWorld::new();
    let mut primary = busy_cluster(&world, "primary", "4");
    primary.sql("CREATE UNLOGGED TABLE scratch AS SELECT g FROM generate_series(1, 10000) g");
    let space = world.root().join("space");
    world.mkdir(&space);
    primary.sql(&format!(
        "CREATE TABLESPACE space LOCATION '{}'",
        space.display()
    ));
    primary.sql(
        "CREATE TABLE spaced TABLESPACE space AS \
         SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g",
    );
    let spaced = primary.sql("SELECT md5(string_agg(v, ',' ORDER BY id)) FROM spaced");
    let load = {
        let mut cmd = pg::as_owner(Path::new(pg::PG_BIN).join("pgbench"));
        cmd.args(["-U", "postgres", "-h"])
            .arg(&primary.socket_dir)
            .args([
                "-p",
                &primary.port.to_string(),
                "-c",
                "2",
                "-T",
                "8",
                "postgres",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn().unwrap()
    };
    // pg_stat_tmp as a symlink to elsewhere (a tmpfs, say): restored as a real, empty
    // directory.
    let stat_tmp = world.root().join("stat-tmp");
    world.mkdir(&stat_tmp);
    std::fs::write(stat_tmp.join("leftover"), "x").unwrap();
    std::fs::remove_dir_all(primary.data.join("pg_stat_tmp")).unwrap();
    std::os::unix::fs::symlink(&stat_tmp, primary.data.join("pg_stat_tmp")).unwrap();
    // Tables created and dropped all through the copy: files vanish under the walk, as
    // PostgreSQL's docs say they will.
    let churn_sql = world.root().join("churn.sql");
    std::fs::write(
        &churn_sql,
        "CREATE TABLE churn_:client_id AS SELECT g FROM generate_series(1, 20000) g;\n\
         DROP TABLE churn_:client_id;\n",
    )
    .unwrap();
    pg::give_to_owner(&churn_sql);
    let churn = pg::as_owner(Path::new(pg::PG_BIN).join("pgbench"))
        .args(["-n", "-U", "postgres", "-h"])
        .arg(&primary.socket_dir)
        .args(["-p", &primary.port.to_string(), "-c", "2", "-T", "8", "-f"])
        .arg(&churn_sql)
        .arg("postgres")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let out = base_backup(&world, &primary, &[]);
    assert_success(&out, &["backup", "pg-base"]);
    let report = json(&String::from_utf8_lossy(&out.stdout));
    let mut load = load;
    assert!(load.wait().unwrap().success());
    assert!(churn.wait_with_output().unwrap().status.success());
    let expected = state(&primary);
    primary.sql("SELECT pg_switch_wal()");
    primary.wait_archived(ARCHIVE_WAIT);

    let list = snapshots(&world);
    assert_eq!(list.len(), 1);
    let snap = &list[0];
    assert_eq!(snap["kind"], "pg-base");
    let source = &snap["source"];
    let sysid = primary.sql("SELECT system_identifier FROM pg_control_system()");
    assert_eq!(source["system_identifier"], sysid.as_str());
    assert_eq!(source["timeline"], 1);
    assert!(source["backup_label"]
        .as_str()
        .unwrap()
        .starts_with("START WAL LOCATION: "));
    assert_eq!(source["start_lsn"].as_str().unwrap().split('/').count(), 2);
    assert!(report["bytes_read"].as_u64().unwrap() > 50 << 20);
    primary.stop();

    let tablespaces = source["tablespaces"].as_array().unwrap();
    assert_eq!(tablespaces.len(), 1);
    assert_eq!(tablespaces[0]["location"], space.to_str().unwrap());
    assert!(source["tablespace_map"]
        .as_str()
        .unwrap()
        .contains(space.to_str().unwrap()));

    let id = snap["id"].as_str().unwrap();
    let mut restored = restore(&world, id, "restored");
    // The tablespace goes back where tablespace_map says (relocation is `restore pg`'s).
    std::fs::remove_dir_all(&space).unwrap();
    let oid = tablespaces[0]["oid"].as_str().unwrap();
    let saved = world.root().join("restored-files/tablespaces").join(oid);
    let status = Command::new("cp")
        .arg("-a")
        .arg(&saved)
        .arg(&space)
        .status()
        .unwrap();
    assert!(status.success());
    let files = world.root().join("restored-files/pgdata");
    assert!(files.join("tablespace_map").is_file());
    assert!(files.join("backup_label").is_file());
    assert!(!files.join("postmaster.pid").exists());
    assert_eq!(std::fs::read_dir(files.join("pg_wal")).unwrap().count(), 1);
    let restored_stat = files.join("pg_stat_tmp");
    assert!(restored_stat.symlink_metadata().unwrap().is_dir());
    assert_eq!(std::fs::read_dir(&restored_stat).unwrap().count(), 0);
    restored.start();
    restored.wait_promoted();
    assert!(
        restored
            .log_text()
            .contains("consistent recovery state reached"),
        "{}",
        restored.log_text()
    );
    assert_eq!(state(&restored), expected);
    // The unlogged table came back empty (from its init fork), as after a crash.
    assert_eq!(restored.sql("SELECT count(*) FROM scratch"), "0");
    assert_eq!(
        restored.sql("SELECT md5(string_agg(v, ',' ORDER BY id)) FROM spaced"),
        spaced
    );
}

fn stored(out: &Output) -> (u64, u64, u64) {
    let report = json(&String::from_utf8_lossy(&out.stdout));
    (
        report["bytes_read"].as_u64().unwrap(),
        report["bytes_new"].as_u64().unwrap(),
        report["bytes_stored"].as_u64().unwrap(),
    )
}

/// A second full backup after scattered updates stores the changed pages and little else.
#[test]
fn second_full_backup_stores_only_changed_pages() {
    if pg::skip() {
        return;
    }
    let world = PgWorld::new();
    let primary = busy_cluster(&world, "primary", "10");
    primary.sql("VACUUM FREEZE");
    primary.sql("CHECKPOINT");
    let first = base_backup(&world, &primary, &[]);
    assert_success(&first, &["backup", "pg-base"]);
    let (read1, _, stored1) = stored(&first);
    // 200 scattered rows: at most 200 heap pages (of ~16,400) and their index leaves.
    primary.sql(
        "UPDATE pgbench_accounts SET abalance = abalance + 1 \
         WHERE aid IN (SELECT 1 + (g * 4999) % 1000000 FROM generate_series(1, 200) g)",
    );
    primary.sql("CHECKPOINT");
    let second = base_backup(&world, &primary, &[]);
    assert_success(&second, &["backup", "pg-base"]);
    let (read2, new2, stored2) = stored(&second);
    eprintln!(
        "first: read {read1} stored {stored1}; second: read {read2} new {new2} stored {stored2}"
    );
    assert!(read2 > 100 << 20, "a full read: {read2}");
    // New: the updated heap pages, their index, FSM and VM pages, pg_xact, catalog pages
    // the checkpoint touched, and the trees listing every page (measured: 2.6%).
    assert!(new2 < read2 / 20, "new {new2} of {read2}");
    // Stored (measured: a tenth of the first backup's).
    assert!(stored2 < stored1 / 5, "stored {stored2} vs first {stored1}");
    // Large relation files list their pages through content lists; verify follows them.
    let report = json(&world.ok(&["--json", "verify", "--read-data"]));
    assert_eq!(
        report["report"]["problems"].as_array().map(Vec::len),
        Some(0),
        "{report:#}"
    );
}

/// What a user gets wrong gets a message that says what to fix, and nothing is listed.
#[test]
fn refusals_name_the_problem_and_leave_nothing_listed() {
    if pg::skip() {
        return;
    }
    let world = PgWorld::new();
    let mut primary = busy_cluster(&world, "primary", "1");

    // A role that does not exist.
    let bad_user = primary
        .connstr("postgres")
        .replace("user=postgres", "user=nobody");
    let out = world
        .stowage(&[
            "backup",
            "pg-base",
            "--dbname",
            &bad_user,
            "--pgdata",
            primary.data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_fails_with(
        &out,
        &[
            "cannot connect to PostgreSQL as nobody@",
            "role \"nobody\" does not exist",
        ],
    );

    // --pgdata of another cluster.
    let other = Cluster::init(&world, "other", None, &[]);
    let out = world
        .stowage(&[
            "backup",
            "pg-base",
            "--fast",
            "--dbname",
            &primary.connstr("postgres"),
            "--pgdata",
            other.data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_fails_with(
        &out,
        &["belongs to database system", "--dbname connects to"],
    );

    // Not a data directory at all.
    let out = world
        .stowage(&[
            "backup",
            "pg-base",
            "--dbname",
            &primary.connstr("postgres"),
            "--pgdata",
            world.root().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_fails_with(&out, &["cannot read global/pg_control"]);

    // Archiving off: such a backup could never be restored.
    let mut unarchived = Cluster::init(&world, "unarchived", None, &[]);
    unarchived.start();
    let out = base_backup(&world, &unarchived, &[]);
    assert_fails_with(
        &out,
        &[
            "archive_mode is off",
            "archive_command = 'stowage wal-push %p'",
        ],
    );
    unarchived.stop();

    // A file the backup cannot read: the whole backup fails (a missing relation file
    // would restore to a corrupt database), naming it.
    let unreadable = primary.data.join("base/1/PG_VERSION");
    let mode = |m: &str| {
        let status = pg::as_owner("chmod")
            .arg(m)
            .arg(&unreadable)
            .status()
            .unwrap();
        assert!(status.success());
    };
    mode("000");
    let out = base_backup(&world, &primary, &[]);
    mode("600");
    assert_fails_with(&out, &["base/1/PG_VERSION", "Permission denied"]);
    assert!(snapshots(&world).is_empty());

    // WAL that never arrives: archiving into another repository.
    primary.append_conf(&["archive_command = '/bin/false'".into()]);
    primary.sql("SELECT pg_reload_conf()");
    let out = base_backup(&world, &primary, &["--wal-timeout", "3s"]);
    assert_fails_with(
        &out,
        &["did not reach the repository within", "last failed on"],
    );
    assert!(snapshots(&world).is_empty());
    // The failed backup was stopped: another one can start at once.
    assert_eq!(
        primary.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'stowage'"),
        "0"
    );

    // The server going away in the middle.
    primary.append_conf(&[format!(
        "archive_command = '{} wal-push %p'",
        env!("CARGO_BIN_EXE_stowage")
    )]);
    primary.sql("SELECT pg_reload_conf()");
    primary.pgbench("postgres", &["-i", "-s", "20"]);
    let backup = {
        let conninfo = primary.connstr("postgres");
        world
            .stowage(&[
                "backup",
                "pg-base",
                "--fast",
                "--wal-timeout",
                "10s",
                "--dbname",
                &conninfo,
                "--pgdata",
                primary.data.to_str().unwrap(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let started = std::time::Instant::now();
    while primary.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'stowage' \
         AND query LIKE '%backup_start%'",
    ) == "0"
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "backup never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    primary.crash();
    let out = backup.wait_with_output().unwrap();
    assert_fails_with(&out, &[]);
    assert!(snapshots(&world).is_empty());
}

/// `pg_basebackup -Ft -X none -D -` (a base backup as one tar stream on stdout).
fn basebackup_to_stdout(conninfo: &str) -> Command {
    let mut cmd = pg::as_owner(Path::new(pg::PG_BIN).join("pg_basebackup"));
    cmd.args([
        "-Ft",
        "-X",
        "none",
        "-D",
        "-",
        "--checkpoint=fast",
        "-d",
        conninfo,
    ]);
    cmd
}

/// `--from-stream`: pg_basebackup's tar stream, spawned by stowage or piped in, makes the
/// same restorable snapshot, still deduplicated page by page.
#[test]
fn from_stream_spawned_or_piped_restores() {
    if pg::skip() {
        return;
    }
    let world = PgWorld::new();
    let mut primary = busy_cluster(&world, "primary", "4");
    let conninfo = primary.connstr("postgres");
    // pg_basebackup is not on PATH here: stowage finds Debian's under /usr/lib/postgresql.
    let out = world
        .stowage(&[
            "--json",
            "backup",
            "pg-base",
            "--from-stream",
            "spawn",
            "--fast",
            "--dbname",
            &conninfo,
        ])
        .output()
        .unwrap();
    assert_success(&out, &["backup", "pg-base", "--from-stream", "spawn"]);
    let (read1, _, stored1) = stored(&out);

    primary.sql("UPDATE pgbench_accounts SET abalance = 7 WHERE aid % 5000 = 1");
    let expected_later = state(&primary);
    let mut basebackup = basebackup_to_stdout(&conninfo)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let piped = world
        .stowage(&["--json", "backup", "pg-base", "--from-stream", "-"])
        .stdin(basebackup.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(basebackup.wait().unwrap().success());
    assert_success(&piped, &["backup", "pg-base", "--from-stream", "-"]);
    let (read2, new2, stored2) = stored(&piped);
    eprintln!(
        "spawned: read {read1} stored {stored1}; piped: read {read2} new {new2} stored {stored2}"
    );
    assert!(
        stored2 < stored1 / 5,
        "pages dedup across streams: {stored2} vs {stored1}"
    );

    // A cut stream is refused, naming what is missing, and nothing is listed.
    let whole = basebackup_to_stdout(&conninfo).output().unwrap();
    assert!(whole.status.success());
    for cut_at in [whole.stdout.len() / 2, whole.stdout.len() - 30_000] {
        let mut cmd = world.stowage(&["backup", "pg-base", "--from-stream", "-"]);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let _ = std::io::Write::write_all(&mut stdin, &whole.stdout[..cut_at]);
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert_fails_with(&out, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("backup_manifest") || stderr.contains("tar stream"),
            "cut at {cut_at}: {stderr}"
        );
    }
    assert_eq!(snapshots(&world).len(), 2);

    primary.sql("SELECT pg_switch_wal()");
    primary.wait_archived(ARCHIVE_WAIT);
    primary.stop();
    let list = snapshots(&world);
    assert_eq!(list.len(), 2);
    let source = &list[1]["source"];
    assert_eq!(source["method"], "pg_basebackup-stream");
    assert!(source["stop_lsn"].as_str().is_some());
    let mut restored = restore(&world, list[1]["id"].as_str().unwrap(), "restored");
    assert!(world
        .root()
        .join("restored-files/backup_manifest")
        .is_file());
    restored.start();
    restored.wait_promoted();
    assert_eq!(state(&restored), expected_later);
}

/// A backup of a standby: no WAL switch there, so stowage waits for the segment the
/// primary archives; the restored copy replays to the primary's data.
#[test]
fn backup_from_a_standby_waits_for_the_primarys_wal() {
    if pg::skip() {
        return;
    }
    let world = PgWorld::new();
    let mut primary = busy_cluster(&world, "primary", "2");
    let standby_dir = world.root().join("standby");
    let out = pg::as_owner(Path::new(pg::PG_BIN).join("pg_basebackup"))
        .args(["-X", "stream", "-R", "--checkpoint=fast", "-D"])
        .arg(&standby_dir)
        .args(["-d", &primary.connstr("postgres")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut standby = Cluster::existing(&world, "standby", standby_dir);
    standby.append_conf(&["archive_mode = off".into(), "hot_standby = on".into()]);
    standby.start();
    primary.pgbench("postgres", &["-n", "-T", "2"]);

    // The primary switches segments now and then, as archive_timeout would.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let switcher = {
        let stop = stop.clone();
        let conninfo = primary.connstr("postgres");
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(700));
                let _ = pg::as_owner(Path::new(pg::PG_BIN).join("psql"))
                    .args(["-X", "-q", "-d", &conninfo, "-c"])
                    .arg("CREATE TABLE IF NOT EXISTS tick(t timestamptz); INSERT INTO tick VALUES (now()); SELECT pg_switch_wal()")
                    .output();
            }
        })
    };
    let out = base_backup(&world, &standby, &[]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    switcher.join().unwrap();
    assert_success(&out, &["backup", "pg-base", "(standby)"]);
    let list = snapshots(&world);
    assert_eq!(list[0]["source"]["backup_from"], "standby");

    let expected = state(&primary);
    primary.sql("SELECT pg_switch_wal()");
    primary.wait_archived(ARCHIVE_WAIT);
    standby.stop();
    primary.stop();
    let mut restored = restore(&world, list[0]["id"].as_str().unwrap(), "restored");
    std::fs::remove_file(world.root().join("restored-files/pgdata/standby.signal")).unwrap();
    restored.start();
    restored.wait_promoted();
    assert_eq!(state(&restored), expected);
}
