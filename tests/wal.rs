//! WAL archiving against a real PostgreSQL 15: `archive_command = 'stowage wal-push %p'`
//! and `restore_command = 'stowage wal-fetch %f %p'` with nothing but `STOWAGE_CONFIG`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::pg::{self, Cluster, PgWorld};
use common::{assert_fails_with, assert_success};

const ARCHIVE_WAIT: Duration = Duration::from_secs(120);

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
    if pg::skip() {
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
    cluster.pgbench("postgres", &["-i", "-s", "2"]);
    cluster.pgbench("postgres", &["-c", "4", "-T", "3"]);
    cluster.sql(
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 60000) g",
    );
    for _ in 0..3 {
        cluster.sql("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 5000) g");
        cluster.sql("SELECT pg_switch_wal()");
    }
    cluster.wait_archived(ARCHIVE_WAIT);
    // The archiver marks a file done before it counts it: wait for the count to agree.
    let names = cluster.archived();
    let mut stats = String::new();
    for _ in 0..100 {
        stats = cluster.sql("SELECT archived_count, failed_count FROM pg_stat_archiver");
        if stats.split('|').next() == Some(names.len().to_string().as_str()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        stats,
        format!("{}|0", names.len()),
        "log:\n{}",
        cluster.log_text()
    );
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
    if pg::skip() {
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
    cluster.wait_promoted();
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
    if pg::skip() {
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
    b.wait_promoted();
    assert_eq!(b.sql("SELECT count(*), sum(id) FROM t"), expected);
    let log = b.log_text();
    assert!(log.contains("restored log file"), "{log}");
    // Most segments came from the prefetcher's spool, not from a round trip each.
    let from_spool = log.matches("restored from the prefetch spool").count();
    let from_repo = log.matches("restored from the repository").count();
    assert!(
        from_spool >= 1 && from_spool + from_repo >= 8,
        "{from_spool} from spool, {from_repo} direct:\n{log}"
    );
    b.stop();
}

/// After a crash, archive recovery over the same data directory moves to timeline 2 and
/// archives the old timeline's unfinished segment as `.partial`: it is checked, stored,
/// summarized, listed apart from the segments, and served back byte for byte.
#[test]
fn partial_segment_of_the_old_timeline_is_archived() {
    if pg::skip() {
        return;
    }
    let world = PgWorld::new();
    let mut cluster = Cluster::init(&world, "a", Some("stowage wal-push %p"), &[]);
    cluster.start();
    cluster.sql("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g");
    cluster.sql("SELECT pg_switch_wal()");
    cluster.sql("INSERT INTO t SELECT g FROM generate_series(1, 1000) g");
    cluster.wait_archived(ARCHIVE_WAIT);
    cluster.crash();
    std::fs::write(cluster.data.join("recovery.signal"), "").unwrap();
    cluster.append_conf(&["restore_command = 'stowage wal-fetch %f %p'"
        .replace("stowage", env!("CARGO_BIN_EXE_stowage"))]);
    cluster.start();
    cluster.wait_promoted();
    cluster.sql("SELECT pg_switch_wal()");
    cluster.wait_archived(ARCHIVE_WAIT);
    let partial = cluster
        .archived()
        .into_iter()
        .find(|n| n.ends_with(".partial"))
        .unwrap_or_else(|| panic!("no .partial archived:\n{}", cluster.log_text()));
    cluster.stop();
    let w = window(&world);
    assert_eq!(timeline(&w, 1)["partial"][0], partial.as_str(), "{w:#}");
    let summary = world.repo().join("wal-index/main/00000001").join(&partial);
    assert!(summary.exists(), "no summary for {partial}");
    let dest = world.root().join("partial");
    assert_success(&fetch(&world, &partial, &dest), &["wal-fetch", &partial]);
    assert!(
        std::fs::read(&dest).unwrap()
            == std::fs::read(cluster.data.join("pg_wal").join(&partial)).unwrap()
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
    if pg::skip() {
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
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read(&stored).unwrap(), stored_bytes);

    // Each refusal names the file and says why, with an exit code the archiver retries.
    let refused = |out: &Output, fragments: &[&str]| {
        assert_fails_with(out, fragments);
        assert!(matches!(out.status.code(), Some(1..=125)), "{out:?}");
    };
    // A segment under another segment's name.
    let out = push(&world, &copy(&wal.join(seg), next));
    refused(
        &out,
        &[next.as_str(), "header says this is segment", seg.as_str()],
    );
    // Truncated, empty, garbage.
    let original = std::fs::read(wal.join(next)).unwrap();
    let out = push(&world, &write(next, &original[..100_000]));
    refused(&out, &[next.as_str(), "truncated"]);
    refused(&push(&world, &write(next, b"")), &[next.as_str(), "empty"]);
    let out = push(&world, &write(next, &common::pattern(1 << 20, 5)));
    refused(&out, &[next.as_str(), "not a PostgreSQL 12–17 WAL page"]);
    // Garbage after a valid first page.
    let mut tail_garbage = original.clone();
    tail_garbage[200_000..].copy_from_slice(&common::pattern(original.len() - 200_000, 9));
    let out = push(&world, &write(next, &tail_garbage));
    refused(&out, &[next.as_str(), "valid WAL ends at"]);
    // Not a WAL file name at all; a history file that is not one.
    refused(&push(&world, &write("notes.txt", b"hello")), &["notes.txt"]);
    let out = push(&world, &write("00000002.history", b"garbage\n"));
    refused(&out, &["00000002.history", "syntax error"]);
    // WAL from another cluster, under this cluster's name: both ids in the message.
    let (b, b_names) = cluster_with_wal(&world, "b", 1);
    let ids = |c: &Cluster| controldata(c, "Database system identifier:");
    let foreign = b.data.join("pg_wal").join(&b_names[b_names.len() - 1]);
    let out = push(&world, &foreign);
    assert_fails_with(&out, &["another cluster", &ids(&a), &ids(&b)]);
    // None of this left anything but the one good segment.
    let w = window(&world);
    assert_eq!(timeline(&w, 1)["segments"], 1, "{w:#}");

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
    // Whatever keeps wal-fetch from answering is "cannot tell", never "not archived":
    // no repository, an unknown cluster name, a bad flag, a broken settings file.
    let dest_arg = dest.to_str().unwrap();
    for args in [
        &["--repo", "/nonexistent/repo", "wal-fetch", seg, dest_arg][..],
        &["wal-fetch", "--cluster", "typo", seg, dest_arg],
        &["wal-fetch", "--no-such-flag", seg, dest_arg],
    ] {
        let out = world.stowage(args).output().unwrap();
        assert_eq!(out.status.code(), Some(255), "{args:?}: {out:?}");
    }
    let out = world
        .stowage(&["wal-fetch", "--cluster", "typo", seg, dest_arg])
        .output()
        .unwrap();
    assert_fails_with(&out, &["no WAL archive for cluster \"typo\""]);
    let broken = world.root().join("broken.toml");
    std::fs::write(&broken, "repo = [").unwrap();
    pg::give_to_owner(&broken);
    let out = world
        .stowage(&[
            "--config",
            broken.to_str().unwrap(),
            "wal-fetch",
            seg,
            dest_arg,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(!dest.exists());
}

/// kill -9 in the middle of a parallel push, then the archiver's calls resume: every file
/// the spool vouches for is stored, and in the end everything is, byte for byte. Uploads
/// go through a proxy that delays each one, so the kill lands while some are in flight.
#[test]
fn parallel_push_survives_kill_9() {
    use common::fault_proxy::{Fault, Target};
    use common::{Backend, TestRepo};
    if pg::skip() {
        return;
    }
    let world = PgWorld::new();
    let (a, names) = cluster_with_wal(&world, "a", 14);
    let wal = a.data.join("pg_wal");
    let status = wal.join("archive_status");
    for name in &names {
        std::fs::write(status.join(format!("{name}.ready")), "").unwrap();
    }
    let repo = TestRepo::on(Backend::S3ViaProxy);
    let proxy = repo.proxy.as_ref().unwrap();
    let cmd = |args: &[&str]| {
        let mut cmd = repo.cmd(args);
        cmd.env("STOWAGE_CACHE_DIR", repo.scratch("cache"));
        cmd
    };
    let archive = |name: &str| -> Output {
        let path = wal.join(name);
        cmd(&["wal-push", "--parallel", "8", path.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let done = |name: &str| {
        std::fs::rename(
            status.join(format!("{name}.ready")),
            status.join(format!("{name}.done")),
        )
        .unwrap();
    };
    // The first push binds the cluster and goes alone.
    assert_success(&archive(&names[0]), &["wal-push", &names[0]]);
    done(&names[0]);
    proxy.inject(
        Target::PutObject,
        Fault::Delay(Duration::from_millis(300)),
        0,
        10_000,
    );
    let path = wal.join(&names[1]);
    let mut child = cmd(&["wal-push", "--parallel", "8", path.to_str().unwrap()])
        .spawn()
        .unwrap();
    let markers = || -> Vec<String> {
        std::fs::read_dir(wal.join(".stowage"))
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|d| {
                std::fs::read_dir(d.path().join("push"))
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while markers().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the push ended before the kill"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    proxy.heal();
    // Whatever the spool vouches for is in the repository, identical.
    let vouched = markers();
    assert!(!vouched.is_empty());
    let check = repo.scratch("check");
    std::fs::create_dir_all(&check).unwrap();
    let fetch = |name: &str| {
        let dest = check.join(name);
        let out = cmd(&["wal-fetch", name, dest.to_str().unwrap()])
            .output()
            .unwrap();
        assert_success(&out, &["wal-fetch", name]);
        assert!(
            std::fs::read(&dest).unwrap() == std::fs::read(wal.join(name)).unwrap(),
            "{name} differs"
        );
    };
    for name in &vouched {
        fetch(name);
    }
    // The archiver resumes: one call per file, in order, each marking it done.
    for name in &names[1..] {
        assert_success(&archive(name), &["wal-push", name]);
        done(name);
    }
    for name in &names {
        fetch(name);
    }
}

/// The key cache spares Argon2id per call, but a passphrase removed from the repository
/// no longer opens it, cached or not; a damaged entry only costs the slow path.
#[test]
fn key_cache_is_retired_by_key_remove() {
    use common::TestRepo;
    let repo = TestRepo::new();
    let cache = repo.scratch("cache");
    let run = |password: &str, args: &[&str]| {
        repo.cmd(args)
            .env("STOWAGE_PASSWORD", password)
            .env("STOWAGE_CACHE_DIR", &cache)
            .output()
            .unwrap()
    };
    repo.add_key("second secret");
    assert_success(&run(common::PASSWORD, &["wal-show"]), &["wal-show"]);
    let entries: Vec<PathBuf> = std::fs::read_dir(cache.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1);
    std::fs::write(&entries[0], b"SKC1 not an entry").unwrap();
    assert_success(
        &run(common::PASSWORD, &["wal-show"]),
        &["wal-show, damaged"],
    );
    let first = repo.key_id(true);
    let out = run("second secret", &["key", "remove", &first]);
    assert_success(&out, &["key remove"]);
    let out = run(common::PASSWORD, &["wal-show"]);
    assert_eq!(out.status.code(), Some(12), "{out:?}");
}

/// The same contract on S3, through a proxy that fails requests: retried writes, exact
/// reads, "not archived" as exit 1 and an unreachable store as "cannot tell".
#[test]
fn push_and_fetch_on_s3_through_faults() {
    use common::fault_proxy::{Fault, Target};
    use common::{Backend, TestRepo};
    if pg::skip() {
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
