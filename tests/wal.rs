//! WAL archiving against a real PostgreSQL 15: `archive_command = 'stowage wal-push %p'`
//! and `restore_command = 'stowage wal-fetch %f %p'` with nothing but `STOWAGE_CONFIG`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::pg::{self, Cluster, PgWorld};
use common::{assert_fails_with, assert_success};

const ARCHIVE_WAIT: Duration = Duration::from_secs(120);

fn skip() -> bool {
    if !pg::available() {
        eprintln!("PostgreSQL 15 not installed; skipped");
        return true;
    }
    false
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn window(world: &PgWorld) -> serde_json::Value {
    json(&world.ok(&["--json", "wal-window"]))
}

fn timeline(window: &serde_json::Value, tli: u64) -> &serde_json::Value {
    window["timelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["timeline"] == tli)
        .unwrap_or_else(|| panic!("timeline {tli} missing: {window:#}"))
}

/// Commit timestamps as PostgreSQL reports them, normalized to RFC 3339 UTC with
/// microseconds (`2026-11-25T10:00:00.123456Z`).
fn utc_micros(cluster: &Cluster, expr: &str) -> String {
    cluster.sql(&format!(
        "SELECT to_char(({expr}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    ))
}

fn rfc3339_micros(value: &serde_json::Value) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap();
    t.with_timezone(&chrono::Utc)
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn fetch(world: &PgWorld, name: &str, dest: &Path) -> Output {
    world
        .stowage(&["wal-fetch", name, dest.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn every_archived_segment_comes_back_byte_identical() {
    if skip() {
        return;
    }
    let world = PgWorld::new();
    // Parallel push from the settings file: the line itself carries no flags.
    std::fs::write(
        world.config(),
        std::fs::read_to_string(world.config()).unwrap() + "wal_parallel = 4\n",
    )
    .unwrap();
    let mut cluster = Cluster::init(&world, "a", Some("stowage wal-push %p"), &[]);
    cluster.start();
    pgbench(&cluster, &["-i", "-s", "2"]);
    pgbench(&cluster, &["-c", "4", "-T", "3"]);
    cluster.sql(
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 60000) g",
    );
    for _ in 0..3 {
        cluster.sql("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 5000) g");
        cluster.sql("SELECT pg_switch_wal()");
    }
    cluster.wait_archived(ARCHIVE_WAIT);
    let stats = cluster.sql("SELECT archived_count, failed_count FROM pg_stat_archiver");
    let (archived, failed) = stats.split_once('|').unwrap();
    assert_eq!(
        failed,
        "0",
        "archiver failures; log:\n{}",
        cluster.log_text()
    );
    let names = cluster.archived();
    assert_eq!(names.len().to_string(), archived);
    assert!(names.len() >= 8, "only {names:?}");
    let out_dir = world.root().join("fetched");
    world.mkdir(&out_dir);
    for name in &names {
        let dest = out_dir.join(name);
        let out = fetch(&world, name, &dest);
        assert_success(&out, &["wal-fetch", name]);
        let original = std::fs::read(cluster.data.join("pg_wal").join(name)).unwrap();
        assert!(std::fs::read(&dest).unwrap() == original, "{name} differs");
    }
    // What wal-show and wal-window say agrees with what was archived.
    let w = window(&world);
    let tl = timeline(&w, 1);
    assert_eq!(tl["segments"], names.len() as u64);
    assert_eq!(tl["gaps"].as_array().unwrap().len(), 0, "{w:#}");
    assert_eq!(
        tl["runs"][0]["last_segment"],
        names.last().unwrap().as_str()
    );
    let show = world.ok(&["wal-show"]);
    assert!(
        show.contains(&format!("{} segment(s) in 1 range(s)", names.len())),
        "{show}"
    );
    cluster.stop();
}

/// Rows committed with known commit timestamps (track_commit_timestamp), a WAL switch in
/// between, then a new timeline by archive recovery: the index agrees with the server.
#[test]
fn commit_time_index_matches_the_server_across_a_switch_and_a_timeline() {
    if skip() {
        return;
    }
    let world = PgWorld::new();
    let mut cluster = Cluster::init(
        &world,
        "a",
        Some("stowage wal-push %p"),
        &["autovacuum = off"],
    );
    cluster.start();
    cluster.sql("CREATE TABLE t(id int, note text)");
    for i in 0..6 {
        cluster.sql(&format!("INSERT INTO t VALUES ({i}, 'tl1')"));
        if i == 2 {
            cluster.sql("SELECT pg_switch_wal()");
        }
    }
    let first = utc_micros(
        &cluster,
        "SELECT min(pg_xact_commit_timestamp(xmin)) FROM t",
    );
    let last_tl1 = utc_micros(
        &cluster,
        "SELECT max(pg_xact_commit_timestamp(xmin)) FROM t",
    );
    cluster.stop();

    // Timeline 2: archive recovery over the same data directory ends and promotes.
    std::fs::write(cluster.data.join("recovery.signal"), "").unwrap();
    cluster.append_conf(&["restore_command = 'stowage wal-fetch %f %p'"
        .replace("stowage", env!("CARGO_BIN_EXE_stowage"))]);
    cluster.start();
    let mut tli = String::new();
    for _ in 0..100 {
        tli = cluster.sql("SELECT pg_is_in_recovery()");
        if tli == "f" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(tli, "f", "still in recovery:\n{}", cluster.log_text());
    for i in 100..104 {
        cluster.sql(&format!("INSERT INTO t VALUES ({i}, 'tl2')"));
    }
    let last_tl2 = utc_micros(
        &cluster,
        "SELECT max(pg_xact_commit_timestamp(xmin)) FROM t WHERE note = 'tl2'",
    );
    cluster.sql("SELECT pg_switch_wal()");
    cluster.wait_archived(ARCHIVE_WAIT);
    cluster.stop();

    let w = window(&world);
    let tl1 = timeline(&w, 1);
    let runs1 = tl1["runs"].as_array().unwrap();
    assert_eq!(runs1.len(), 1, "{w:#}");
    // CREATE TABLE committed before the first row: the earliest commit is at most it.
    assert!(
        rfc3339_micros(&runs1[0]["earliest_commit"]) <= first,
        "{w:#}"
    );
    assert_eq!(
        rfc3339_micros(&runs1[0]["latest_commit"]),
        last_tl1,
        "{w:#}"
    );
    let tl2 = timeline(&w, 2);
    assert_eq!(tl2["parent"]["parent_timeline"], 1, "{w:#}");
    let runs2 = tl2["runs"].as_array().unwrap();
    assert_eq!(
        rfc3339_micros(&runs2.last().unwrap()["latest_commit"]),
        last_tl2,
        "{w:#}"
    );
    // The history file is archived and served; a timeline that does not exist is not.
    let dest = world.root().join("history");
    assert_success(&fetch(&world, "00000002.history", &dest), &["wal-fetch"]);
    assert!(std::fs::read_to_string(&dest).unwrap().starts_with("1\t"));
    let out = fetch(&world, "00000003.history", &dest);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A base backup replayed to the end from the archive through wal-fetch with prefetch.
#[test]
fn replay_from_the_archive_with_prefetch() {
    if skip() {
        return;
    }
    let world = PgWorld::new();
    let mut a = Cluster::init(&world, "a", Some("stowage wal-push %p"), &[]);
    a.start();
    a.sql("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g");
    let backup = world.root().join("b");
    let mut basebackup = pg::as_owner(Path::new(pg::PG_BIN).join("pg_basebackup"));
    basebackup
        .args(["-X", "none", "-c", "fast", "-U", "postgres", "-h"])
        .arg(&a.socket_dir)
        .args(["-p", &a.port.to_string(), "-D"])
        .arg(&backup);
    assert!(basebackup.status().unwrap().success());
    for _ in 0..12 {
        a.sql("INSERT INTO t SELECT g FROM generate_series(1, 20000) g");
    }
    let expected = a.sql("SELECT count(*), sum(id) FROM t");
    a.sql("SELECT pg_switch_wal()");
    a.wait_archived(ARCHIVE_WAIT);
    a.stop();

    let mut b = Cluster::existing(&world, "b", backup.clone());
    std::fs::write(backup.join("recovery.signal"), "").unwrap();
    b.append_conf(&[
        "archive_mode = off".into(),
        "restore_command = 'stowage -v wal-fetch --prefetch 4 %f %p'"
            .replace("stowage", env!("CARGO_BIN_EXE_stowage")),
    ]);
    b.start();
    let mut state = String::new();
    for _ in 0..300 {
        state = b.sql("SELECT pg_is_in_recovery()");
        if state == "f" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(state, "f", "recovery did not finish:\n{}", b.log_text());
    assert_eq!(b.sql("SELECT count(*), sum(id) FROM t"), expected);
    let log = b.log_text();
    assert!(log.contains("restored log file"), "{log}");
    // Most segments came from the prefetcher's spool, not from a round trip each.
    let from_spool = log.matches("restored from the prefetch spool").count();
    let from_repo = log.matches("restored from the repository").count();
    assert!(
        from_spool > from_repo,
        "{from_spool} from spool, {from_repo} direct:\n{log}"
    );
    b.stop();
}

fn pgbench(cluster: &Cluster, args: &[&str]) {
    let out = pg::as_owner(Path::new(pg::PG_BIN).join("pgbench"))
        .args(["-U", "postgres", "-h"])
        .arg(&cluster.socket_dir)
        .args(["-p", &cluster.port.to_string()])
        .args(args)
        .arg("postgres")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pgbench {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stopped cluster's WAL, for tests that push files by hand.
fn cluster_with_wal(world: &PgWorld, name: &str, segments: usize) -> (Cluster, Vec<String>) {
    let mut cluster = Cluster::init(world, name, None, &[]);
    cluster.start();
    cluster.sql("CREATE TABLE t(id int, v text)");
    for _ in 0..segments {
        cluster.sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 3000) g");
        cluster.sql("SELECT pg_switch_wal()");
    }
    cluster.stop();
    // Complete segments only, as the archiver would offer them: those before the one the
    // shutdown checkpoint is in (later names are that segment's unfinished tail and
    // preallocated or recycled files holding old bytes).
    let current = controldata(&cluster, "Latest checkpoint's REDO WAL file:");
    let mut names: Vec<String> = std::fs::read_dir(cluster.data.join("pg_wal"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 && *n < current)
        .collect();
    names.sort();
    (cluster, names)
}

/// One field of `pg_controldata` for a stopped cluster.
fn controldata(cluster: &Cluster, field: &str) -> String {
    let out = pg::as_owner(Path::new(pg::PG_BIN).join("pg_controldata"))
        .arg(&cluster.data)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in pg_controldata output"))
        .trim()
        .to_string()
}

fn push(world: &PgWorld, path: &Path) -> Output {
    world
        .stowage(&["wal-push", path.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn bad_files_are_refused_and_nothing_stored_is_lost() {
    if skip() {
        return;
    }
    let world = PgWorld::new();
    let (a, names) = cluster_with_wal(&world, "a", 4);
    let wal = a.data.join("pg_wal");
    let scratch = world.root().join("scratch");
    world.mkdir(&scratch);
    let copy = |from: &Path, name: &str| -> PathBuf {
        let to = scratch.join(name);
        world.copy(from, &to);
        to
    };
    let write = |name: &str, bytes: &[u8]| -> PathBuf {
        let to = scratch.join(name);
        std::fs::write(&to, bytes).unwrap();
        pg::give_to_owner(&to);
        to
    };
    // Segment 2 ends with a SWITCH: its tail is zeros.
    let (seg, next) = (&names[1], &names[2]);
    assert_success(&push(&world, &wal.join(seg)), &["wal-push", seg]);
    let stored = world.repo().join("wal/main/00000001").join(seg);
    let stored_bytes = std::fs::read(&stored).unwrap();

    // The same content again: success, nothing rewritten.
    assert_success(
        &push(&world, &copy(&wal.join(seg), seg)),
        &["wal-push again"],
    );
    // Different content under the same name: refused, the stored object untouched.
    let mut changed = std::fs::read(wal.join(seg)).unwrap();
    let last = changed.len() - 1;
    changed[last] ^= 0x5A;
    let out = push(&world, &write(seg, &changed));
    assert_fails_with(&out, &[seg.as_str(), "different content"]);
    assert_eq!(std::fs::read(&stored).unwrap(), stored_bytes);

    // A segment under another segment's name.
    let out = push(&world, &copy(&wal.join(seg), next));
    assert_fails_with(&out, &[next.as_str()]);
    // Truncated, empty, garbage.
    let original = std::fs::read(wal.join(next)).unwrap();
    assert_fails_with(
        &push(&world, &write(next, &original[..100_000])),
        &[next.as_str()],
    );
    assert_fails_with(&push(&world, &write(next, b"")), &[next.as_str()]);
    assert_fails_with(
        &push(&world, &write(next, &common::pattern(1 << 20, 5))),
        &[next.as_str()],
    );
    // Garbage after a valid first page.
    let mut tail_garbage = original.clone();
    tail_garbage[200_000..].copy_from_slice(&common::pattern(original.len() - 200_000, 9));
    assert_fails_with(&push(&world, &write(next, &tail_garbage)), &[next.as_str()]);
    // Not a WAL file name at all; a history file that is not one.
    assert_fails_with(&push(&world, &write("notes.txt", b"hello")), &["notes.txt"]);
    assert_fails_with(
        &push(&world, &write("00000002.history", b"garbage\n")),
        &["00000002.history"],
    );
    // WAL from another cluster, under this cluster's name: both ids in the message.
    let (b, b_names) = cluster_with_wal(&world, "b", 1);
    let ids = |c: &Cluster| controldata(c, "Database system identifier:");
    let foreign = b.data.join("pg_wal").join(&b_names[b_names.len() - 1]);
    let out = push(&world, &foreign);
    assert_fails_with(&out, &["another cluster", &ids(&a), &ids(&b)]);
    // None of this left anything but the one good segment.
    let listed = world.ok(&["wal-show"]);
    assert!(listed.contains("1 segment(s)"), "{listed}");

    // wal-fetch: missing → 1; unreachable or damaged → ≥126, destination untouched.
    let dest = scratch.join("RECOVERYXLOG");
    let out = fetch(&world, next, &dest);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dest.exists());
    let mut bad = stored_bytes.clone();
    bad[100] ^= 1;
    std::fs::write(&stored, &bad).unwrap();
    let out = fetch(&world, seg, &dest);
    assert!(out.status.code().unwrap_or(0) > 125, "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(seg.as_str()));
    assert!(!dest.exists());
    let out = world
        .stowage(&[
            "--repo",
            "/nonexistent/repo",
            "wal-fetch",
            seg,
            dest.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.code().unwrap_or(0) > 125, "{out:?}");
}

/// kill -9 in the middle of a parallel push, then the archiver's calls resume: every file
/// the spool vouches for is stored, and in the end everything is, byte for byte.
#[test]
fn parallel_push_survives_kill_9() {
    if skip() {
        return;
    }
    let world = PgWorld::new();
    let (a, names) = cluster_with_wal(&world, "a", 14);
    let wal = a.data.join("pg_wal");
    let status = wal.join("archive_status");
    world.mkdir(&status);
    for name in &names {
        std::fs::write(status.join(format!("{name}.ready")), "").unwrap();
    }
    let archive = |name: &str, parallel: &str| -> Output {
        world
            .stowage(&[
                "wal-push",
                "--parallel",
                parallel,
                wal.join(name).to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    // The first push binds the cluster and goes alone.
    assert_success(&archive(&names[0], "8"), &["wal-push", &names[0]]);
    std::fs::rename(
        status.join(format!("{}.ready", names[0])),
        status.join(format!("{}.done", names[0])),
    )
    .unwrap();
    let mut child = world
        .stowage(&[
            "wal-push",
            "--parallel",
            "8",
            wal.join(&names[1]).to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    let stored_dir = world.repo().join("wal/main/00000001");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&stored_dir).map_or(0, |d| d.count()) < 3
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    let _ = child.wait();
    // Whatever the spool vouches for is in the repository, identical.
    let spool_root = wal.join(".stowage");
    let markers: Vec<PathBuf> = std::fs::read_dir(&spool_root)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|d| {
            std::fs::read_dir(d.path().join("push"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .collect();
    let check = world.root().join("check");
    world.mkdir(&check);
    for marker in &markers {
        let name = marker.file_name().unwrap().to_str().unwrap();
        let dest = check.join(name);
        assert_success(&fetch(&world, name, &dest), &["wal-fetch", name]);
        assert!(std::fs::read(&dest).unwrap() == std::fs::read(wal.join(name)).unwrap());
    }
    // The archiver resumes: one call per file, in order, each marking it done.
    for name in &names[1..] {
        assert_success(&archive(name, "8"), &["wal-push", name]);
        std::fs::rename(
            status.join(format!("{name}.ready")),
            status.join(format!("{name}.done")),
        )
        .unwrap();
    }
    for name in &names {
        let dest = check.join(name);
        assert_success(&fetch(&world, name, &dest), &["wal-fetch", name]);
        assert!(
            std::fs::read(&dest).unwrap() == std::fs::read(wal.join(name)).unwrap(),
            "{name} differs"
        );
    }
}

/// The same contract on S3, through a proxy that fails requests: retried writes, exact
/// reads, "not archived" as exit 1 and an unreachable store as "cannot tell".
#[test]
fn push_and_fetch_on_s3_through_faults() {
    use common::fault_proxy::{Fault, Target};
    use common::{Backend, TestRepo};
    if skip() {
        return;
    }
    let world = PgWorld::new();
    let (a, names) = cluster_with_wal(&world, "a", 3);
    let repo = TestRepo::on(Backend::S3ViaProxy);
    let proxy = repo.proxy.as_ref().unwrap();
    let cache = repo.scratch("cache");
    let cmd = |args: &[&str]| {
        let mut cmd = repo.cmd(args);
        cmd.env("STOWAGE_CACHE_DIR", &cache);
        cmd.output().unwrap()
    };
    let wal = a.data.join("pg_wal");
    proxy.inject(Target::PutObject, Fault::Status(503), 0, 2);
    for name in &names {
        let path = wal.join(name);
        assert_success(
            &cmd(&["wal-push", path.to_str().unwrap()]),
            &["wal-push", name],
        );
    }
    // Pushed again (PostgreSQL retries after a crash): same content, exit 0.
    let again = wal.join(&names[0]);
    assert_success(
        &cmd(&["wal-push", again.to_str().unwrap()]),
        &["wal-push again"],
    );
    proxy.inject(Target::GetObject, Fault::CutResponse, 0, 1);
    let out_dir = repo.scratch("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    for name in &names {
        let dest = out_dir.join(name);
        assert_success(
            &cmd(&["wal-fetch", name, dest.to_str().unwrap()]),
            &["wal-fetch", name],
        );
        assert!(std::fs::read(&dest).unwrap() == std::fs::read(wal.join(name)).unwrap());
    }
    let dest = out_dir.join("missing");
    let out = cmd(&[
        "wal-fetch",
        "0000000100000000000000FF",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    proxy.inject(Target::Any, Fault::Status(503), 0, 1000);
    let out = cmd(&["wal-fetch", &names[0], dest.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(255),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dest.exists());
}
