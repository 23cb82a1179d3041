//! Damage is detected and named: flipped bytes, missing packs, truncated indexes, corrupt
//! snapshots, wrong passphrases, interrupted backups. Nothing panics.

mod common;

use std::process::Stdio;

use common::{assert_fails_with, pattern, Backend, TestRepo};

fn name_of(path: &std::path::Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn flipped_byte_in_a_pack_is_named_by_verify_and_refused_by_restore(backend: Backend) {
    let repo = TestRepo::on(backend);
    let data = pattern(3 * 1024 * 1024, 10);
    let snap = repo.backup_stdin("f", &data)["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    repo.ok(&["verify", "--read-data"]);
    let packs = repo.objects("data");
    assert_eq!(packs.len(), 1);
    let mut bytes = std::fs::read(&packs[0]).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&packs[0], &bytes).unwrap();

    // Structure alone cannot see it (sizes match); the data check must.
    repo.ok(&["verify"]);
    let out = repo.cmd(&["verify", "--read-data"]).output().unwrap();
    assert_fails_with(
        &out,
        &[
            &name_of(&packs[0]),
            "hash mismatch",
            "authentication failed",
            &snap[..8],
        ],
    );
    let report = repo
        .cmd(&["--json", "verify", "--read-data"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let problems = json["report"]["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["blob"].is_string() && p["snapshot"] == serde_json::json!(snap)),
        "{json}"
    );

    let out = repo.cmd(&["cat", "latest"]).output().unwrap();
    assert_fails_with(&out, &["authentication failed"]);
}

fn deleted_pack_is_reported_with_its_key(backend: Backend) {
    let repo = TestRepo::on(backend);
    repo.backup_stdin("f", &pattern(1024 * 1024, 11));
    let packs = repo.objects("data");
    std::fs::remove_file(&packs[0]).unwrap();
    let out = repo.cmd(&["verify"]).output().unwrap();
    assert_fails_with(&out, &[&name_of(&packs[0]), "missing from the store"]);
    let out = repo.cmd(&["cat", "latest"]).output().unwrap();
    assert_fails_with(&out, &[&name_of(&packs[0]), "not found"]);
}

fn truncated_index_is_named(backend: Backend) {
    let repo = TestRepo::on(backend);
    repo.backup_stdin("f", b"some data");
    let index = &repo.objects("index")[0];
    let bytes = std::fs::read(index).unwrap();
    std::fs::write(index, &bytes[..bytes.len() / 2]).unwrap();
    let out = repo.cmd(&["verify"]).output().unwrap();
    assert_fails_with(&out, &[&name_of(index), "hash mismatch"]);
    let out = repo
        .cmd(&[
            "restore",
            "latest",
            "--to",
            repo.scratch("out").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_fails_with(&out, &[&name_of(index), "damaged"]);
}

fn corrupt_snapshot_is_named(backend: Backend) {
    let repo = TestRepo::on(backend);
    repo.backup_stdin("f", b"some data");
    let snap = &repo.objects("snapshots")[0];
    std::fs::write(snap, b"garbage").unwrap();
    let out = repo.cmd(&["verify"]).output().unwrap();
    assert_fails_with(&out, &[&name_of(snap)]);
    let out = repo.cmd(&["snapshots"]).output().unwrap();
    assert_fails_with(&out, &[&name_of(snap), "damaged"]);
}

#[test]
fn wrong_passphrase_and_missing_repository_have_their_own_exit_codes() {
    let repo = TestRepo::new();
    let out = repo
        .cmd(&["snapshots"])
        .env("STOWAGE_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_fails_with(&out, &["wrong passphrase"]);
    assert_eq!(out.status.code(), Some(12));
    let empty = TestRepo::empty();
    let out = empty.cmd(&["snapshots"]).output().unwrap();
    assert_fails_with(&out, &["not a stowage repository"]);
    assert_eq!(out.status.code(), Some(10));
    let out = repo.cmd(&["init"]).output().unwrap();
    assert_fails_with(&out, &["already holds a repository"]);
    let out = common::stowage()
        .env_remove("STOWAGE_REPO")
        .env("STOWAGE_PASSWORD", "x")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_fails_with(&out, &["no repository given"]);
    let out = repo
        .cmd(&["snapshots"])
        .env_remove("STOWAGE_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_fails_with(&out, &["STOWAGE_PASSWORD"]);
}

#[test]
fn unreadable_source_file_fails_the_backup_with_its_name() {
    let repo = TestRepo::new();
    let missing = repo.scratch("does-not-exist");
    let out = repo
        .cmd(&["backup", "files", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_fails_with(&out, &["does-not-exist"]);
    assert!(
        repo.objects("snapshots").is_empty(),
        "no snapshot for a failed backup"
    );
}

fn kill_during_backup_leaves_a_repository_that_verifies_and_accepts_the_next_backup(
    backend: Backend,
) {
    let repo = TestRepo::on(backend);
    // Several points in the run: early (first buffers), mid (packs written), late.
    for (round, feed_mib) in [(0u64, 1usize), (1, 40), (2, 90)] {
        let data = pattern(feed_mib * 1024 * 1024, 100 + round);
        let (mut child, stdin) = repo.spawn_backup("killed", &data);
        std::thread::sleep(std::time::Duration::from_millis(300));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        drop(stdin);
        repo.ok(&["verify", "--read-data"]);
        let data = pattern(8 * 1024 * 1024, 200 + round);
        repo.backup_stdin("after", &data);
        assert_eq!(repo.cat(&["latest", "--name", "after"]), data);
    }
    assert!(repo
        .json(&["snapshots", "--name", "killed"])
        .as_array()
        .unwrap()
        .is_empty());
    repo.ok(&["verify", "--read-data"]);
}

fn modified_config_is_detected_and_stray_key_files_are_skipped(backend: Backend) {
    let repo = TestRepo::on(backend);
    repo.backup_stdin("f", b"data");
    // A stray or hostile file under keys/ must not lock the owner out.
    std::fs::write(repo.path().join("keys").join("0".repeat(64)), b"not a key").unwrap();
    let out = repo.cmd(&["snapshots"]).output().unwrap();
    common::assert_success(&out, &["snapshots with a stray key file"]);
    // Opening without the key cache tries every key file and reports the stray one.
    let out = repo
        .cmd(&["snapshots"])
        .env(
            "STOWAGE_CACHE_DIR",
            repo.path().with_file_name("fresh-cache"),
        )
        .output()
        .unwrap();
    common::assert_success(&out, &["snapshots with a stray key file, no cache"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped"));
    assert_eq!(repo.json(&["key", "list"]).as_array().unwrap().len(), 1);
    // The config is plaintext, but the key files seal its hash.
    let config = repo.path().join("config");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"compression_level\": 3", "\"compression_level\": 19"),
    )
    .unwrap();
    let out = repo.cmd(&["snapshots"]).output().unwrap();
    assert_fails_with(&out, &["config", "modified after init"]);
}

on_every_store!(
    flipped_byte_in_a_pack_is_named_by_verify_and_refused_by_restore,
    deleted_pack_is_reported_with_its_key,
    truncated_index_is_named,
    corrupt_snapshot_is_named,
    kill_during_backup_leaves_a_repository_that_verifies_and_accepts_the_next_backup,
    modified_config_is_detected_and_stray_key_files_are_skipped,
);
