//! Backups restore bit-identical, and unchanged data is not stored twice.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::{assert_success, compressible, pattern, write, Backend, TestRepo};

fn streams_round_trip_bit_identical(backend: Backend) {
    let repo = TestRepo::on(backend);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("one-byte", vec![0x42]),
        ("random", pattern(5 * 1024 * 1024 + 17, 1)),
        ("compressible", compressible(6 * 1024 * 1024)),
    ];
    for (name, data) in &cases {
        let result = repo.backup_stdin(name, data);
        assert_eq!(result["bytes_read"], data.len() as u64, "{name}");
        let id = result["snapshot"].as_str().unwrap().to_string();
        assert_eq!(&repo.cat(&[&id]), data, "{name} via id");
        assert_eq!(&repo.cat(&[&id, name]), data, "{name} via path");
    }
    // Compressible data is stored smaller than it is.
    let snaps = repo.json(&["snapshots", "--name", "compressible"]);
    let stats = &snaps[0]["stats"];
    assert!(
        stats["bytes_stored"].as_u64().unwrap() * 4 < stats["bytes_read"].as_u64().unwrap(),
        "{stats}"
    );
    repo.ok(&["verify", "--read-data"]);
}

fn second_backup_of_unchanged_data_stores_under_one_percent(backend: Backend) {
    let repo = TestRepo::on(backend);
    let data = pattern(24 * 1024 * 1024, 2);
    let first = repo.backup_stdin("db.dump", &data);
    assert!(first["bytes_stored"].as_u64().unwrap() >= data.len() as u64);
    let second = repo.backup_stdin("db.dump", &data);
    let stored = second["bytes_stored"].as_u64().unwrap();
    assert!(
        stored * 100 < data.len() as u64,
        "second backup stored {stored} bytes"
    );
    assert_eq!(second["bytes_read"], data.len() as u64);
    assert_eq!(repo.cat(&["latest"]), data);
}

fn one_byte_change_in_100_mib_stores_about_one_chunk(backend: Backend) {
    let repo = TestRepo::on(backend);
    let src = repo.scratch("src");
    let mut data = pattern(100 * 1024 * 1024, 3);
    write(&src.join("big.bin"), &data);
    repo.ok(&["backup", "files", src.to_str().unwrap()]);
    data[50 * 1024 * 1024] ^= 0xff;
    write(&src.join("big.bin"), &data);
    let out = repo
        .cmd(&["--json", "backup", "files", src.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out, &["backup", "files"]);
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let new = result["bytes_new"].as_u64().unwrap();
    // One chunk averages 1 MiB and is at most 4 MiB; the change may also move one boundary.
    assert!(
        new <= 8 * 1024 * 1024,
        "a 1-byte change stored {new} new bytes"
    );
    assert!(result["blobs_new"].as_u64().unwrap() <= 5, "{result}");
    assert_eq!(repo.cat(&["latest", "src/big.bin"]), data);
}

fn file_tree_with_symlinks_modes_and_odd_names_round_trips(backend: Backend) {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let repo = TestRepo::on(backend);
    let src = repo.scratch("tree");
    write(&src.join("a/b/c.txt"), b"deep");
    write(&src.join("empty.bin"), b"");
    write(&src.join("big.bin"), &pattern(3 * 1024 * 1024, 4));
    write(&src.join("spaces and ünïcödé ✓.txt"), b"odd");
    write(&src.join("newline\nname"), b"nl");
    let latin1 = src.join(OsStr::from_bytes(b"latin1-\xe9"));
    write(&latin1, b"not utf-8");
    std::fs::create_dir_all(src.join("empty-dir")).unwrap();
    std::os::unix::fs::symlink("a/b/c.txt", src.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", src.join("dangling")).unwrap();
    std::fs::set_permissions(
        src.join("a/b/c.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::set_permissions(src.join("a"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let mtime = filetime::FileTime::from_unix_time(1_600_000_000, 123_456_789);
    filetime::set_file_mtime(src.join("big.bin"), mtime).unwrap();
    let fifo = src.join("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());

    let out = repo
        .cmd(&["--json", "backup", "files", src.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out, &["backup", "files"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("special file skipped"));

    let dest = repo.scratch("restored");
    repo.ok(&["restore", "latest", "--to", dest.to_str().unwrap()]);
    let got = dest.join("tree");
    assert_eq!(std::fs::read(got.join("a/b/c.txt")).unwrap(), b"deep");
    assert_eq!(std::fs::read(got.join("empty.bin")).unwrap(), b"");
    assert_eq!(
        std::fs::read(got.join("big.bin")).unwrap(),
        pattern(3 * 1024 * 1024, 4)
    );
    assert_eq!(
        std::fs::read(got.join("spaces and ünïcödé ✓.txt")).unwrap(),
        b"odd"
    );
    assert_eq!(std::fs::read(got.join("newline\nname")).unwrap(), b"nl");
    assert_eq!(
        std::fs::read(got.join(OsStr::from_bytes(b"latin1-\xe9"))).unwrap(),
        b"not utf-8"
    );
    assert!(got.join("empty-dir").is_dir());
    assert_eq!(
        std::fs::read_link(got.join("link")).unwrap(),
        std::path::Path::new("a/b/c.txt")
    );
    assert_eq!(
        std::fs::read_link(got.join("dangling")).unwrap(),
        std::path::Path::new("/nonexistent/target")
    );
    assert!(!got.join("fifo").exists(), "special files are not restored");
    let meta = std::fs::metadata(got.join("a/b/c.txt")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(
        std::fs::metadata(got.join("a")).unwrap().mode() & 0o7777,
        0o750
    );
    let big = std::fs::metadata(got.join("big.bin")).unwrap();
    assert_eq!(
        (big.mtime(), big.mtime_nsec()),
        (1_600_000_000, 123_456_789)
    );
    repo.ok(&["verify", "--read-data"]);
}

#[test]
fn snapshots_list_filters_and_json() {
    let repo = TestRepo::new();
    let out = repo.run_with_input(
        &[
            "backup", "stdin", "--name", "a.yaml", "--tag", "k8s", "--host", "h1",
        ],
        b"kind: Pod\n",
    );
    assert_success(&out, &["backup"]);
    repo.backup_stdin("b.sql", b"select 1;");
    let all = repo.json(&["snapshots"]);
    assert_eq!(all.as_array().unwrap().len(), 2);
    let tagged = repo.json(&["snapshots", "--tag", "k8s"]);
    assert_eq!(tagged.as_array().unwrap().len(), 1);
    let snap = &tagged[0];
    assert_eq!(snap["name"], "a.yaml");
    assert_eq!(snap["host"], "h1");
    assert_eq!(snap["kind"], "stdin");
    for field in ["id", "start", "end", "tree", "dedup_ratio"] {
        assert!(!snap[field].is_null(), "{field} missing in {snap}");
    }
    for field in ["bytes_read", "bytes_new", "bytes_stored", "files"] {
        assert!(snap["stats"][field].is_u64(), "stats.{field} missing");
    }
    let table = repo.ok(&["snapshots"]);
    assert!(
        table.contains("a.yaml") && table.contains("b.sql") && table.contains("2 snapshot(s)"),
        "{table}"
    );
    // `latest` honours filters; a unique id prefix works.
    assert_eq!(repo.cat(&["latest", "--name", "a.yaml"]), b"kind: Pod\n");
    let id = snap["id"].as_str().unwrap();
    assert_eq!(repo.cat(&[&id[..8]]), b"kind: Pod\n");
}

#[test]
fn settings_file_carries_repository_and_password() {
    let repo = TestRepo::new();
    let password_file = repo.scratch("pass");
    std::fs::write(&password_file, format!("{}\n", common::PASSWORD)).unwrap();
    let config = repo.scratch("stowage.toml");
    std::fs::write(
        &config,
        format!(
            "repo = {:?}\npassword_file = {:?}\ncompression_level = 5\n",
            repo.path(),
            password_file
        ),
    )
    .unwrap();
    let out = common::run_with_input(
        {
            let mut cmd = common::stowage();
            cmd.args([
                "--config",
                config.to_str().unwrap(),
                "backup",
                "stdin",
                "--name",
                "x",
            ]);
            cmd.env_remove("STOWAGE_REPO")
                .env_remove("STOWAGE_PASSWORD");
            cmd
        },
        b"from the settings file",
    );
    assert_success(&out, &["backup via settings file"]);
    assert_eq!(repo.cat(&["latest"]), b"from the settings file");

    let bad = repo.scratch("bad.toml");
    std::fs::write(&bad, "repo = 5\nunknown_key = true\n").unwrap();
    let out = common::stowage()
        .args(["--config", bad.to_str().unwrap(), "snapshots"])
        .output()
        .unwrap();
    common::assert_fails_with(&out, &["bad.toml"]);
}

#[test]
fn quickstart_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("data");
    write(&src.join("x/y.txt"), &compressible(200_000));
    write(&src.join("r.bin"), &pattern(300_000, 9));
    let out = common::stowage()
        .args([
            "quickstart",
            "--source",
            src.to_str().unwrap(),
            "--dir",
            dir.path().join("qs").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_success(&out, &["quickstart"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("compared 2 files with the originals: identical"),
        "{text}"
    );
}

#[test]
fn smallest_in_flight_cap_and_one_thread_still_complete() {
    let repo = TestRepo::new();
    let data = pattern(40 * 1024 * 1024, 5);
    let out = repo.run_with_input(
        &[
            "--in-flight-mib",
            "16",
            "--threads",
            "1",
            "backup",
            "stdin",
            "--name",
            "x",
        ],
        &data,
    );
    assert_success(&out, &["backup with a small cap"]);
    assert_eq!(repo.cat(&["latest"]), data);
}

#[test]
fn cat_into_a_closed_pipe_is_not_an_error() {
    let repo = TestRepo::new();
    repo.backup_stdin("big", &pattern(20 * 1024 * 1024, 6));
    let script = format!(
        "set -o pipefail; {:?} cat latest | head -c 10 > /dev/null",
        env!("CARGO_BIN_EXE_stowage")
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .env("STOWAGE_REPO", repo.path())
        .env("STOWAGE_PASSWORD", common::PASSWORD)
        .output()
        .unwrap();
    assert_success(&out, &["cat | head"]);
}

on_every_store!(
    streams_round_trip_bit_identical,
    second_backup_of_unchanged_data_stores_under_one_percent,
    one_byte_change_in_100_mib_stores_about_one_chunk,
    file_tree_with_symlinks_modes_and_odd_names_round_trips,
);
