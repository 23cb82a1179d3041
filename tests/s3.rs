//! The S3 store against a real S3 server over HTTP, with faults injected between them:
//! checksums, retries, timeouts, a part that never goes up, kill -9 mid-upload and `gc`,
//! and the errors an operator must be able to act on.

mod common;

use std::time::{Duration, Instant};

use common::fault_proxy::{Fault, Target};
use common::{assert_fails_with, assert_success, pattern, Backend, TestRepo};

const MIB: usize = 1024 * 1024;

/// Objects whose key starts with `repo/<under>`, with what their writes asked for.
fn writes_under(repo: &TestRepo, under: &str) -> Vec<(String, common::s3_server::WriteRecord)> {
    let prefix = format!("repo/{under}");
    repo.server
        .as_ref()
        .unwrap()
        .writes()
        .into_iter()
        .filter(|(key, _)| key.starts_with(&prefix))
        .collect()
}

fn proxy(repo: &TestRepo) -> &common::fault_proxy::FaultProxy {
    repo.proxy.as_ref().unwrap()
}

fn open_uploads(repo: &TestRepo) -> usize {
    repo.server.as_ref().unwrap().open_uploads()
}

/// The repository holds exactly what it should: every byte checks out.
fn assert_verifies(repo: &TestRepo) {
    let out = repo.cmd(&["verify", "--read-data"]).output().unwrap();
    assert_success(&out, &["verify", "--read-data"]);
}

#[test]
fn every_upload_carries_the_configured_checksum() {
    for (mode, md5, crc) in [
        ("crc32c", false, true),
        ("md5", true, false),
        ("none", false, false),
    ] {
        let repo = TestRepo::on(Backend::S3);
        // 12 MiB of random data: one pack, sent as a multipart upload of 5 MiB parts.
        let data = pattern(12 * MIB, 1);
        let out = repo.run_with_input(
            &["--s3-checksum", mode, "backup", "stdin", "--name", "c"],
            &data,
        );
        assert_success(&out, &["backup with checksum", mode]);
        let packs = writes_under(&repo, "data/");
        assert_eq!(packs.len(), 1, "{mode}: {packs:?}");
        let record = &packs[0].1;
        assert!(record.parts >= 2, "{mode}: not multipart: {record:?}");
        assert_eq!(
            (record.md5, record.crc32c),
            (md5, crc),
            "{mode}: {record:?}"
        );
        for (key, record) in writes_under(&repo, "snapshots/") {
            assert_eq!((record.md5, record.crc32c), (md5, crc), "{mode} {key}");
        }
        assert_eq!(repo.cat(&["latest"]), data);
    }
}

#[test]
fn bytes_changed_in_transit_are_refused_by_the_store_and_never_stored() {
    for mode in ["md5", "crc32c"] {
        let repo = TestRepo::on(Backend::S3ViaProxy);
        // A small backup: its pack is one PUT, the first PutObject after init.
        proxy(&repo).inject(Target::PutObject, Fault::CorruptRequest, 0, 1);
        let data = pattern(MIB, 2);
        let args = ["--s3-checksum", mode, "backup", "stdin", "--name", "c"];
        let out = repo.run_with_input(&args, &data);
        assert_fails_with(&out, &["BadDigest"]);
        assert_eq!(proxy(&repo).faults_applied(), 1);
        assert!(repo.json(&["snapshots"]).as_array().unwrap().is_empty());
        assert_verifies(&repo);
        let out = repo.run_with_input(&args, &data);
        assert_success(&out, &["backup after the corruption", mode]);
        assert_eq!(repo.cat(&["latest"]), data, "{mode}");
    }
}

#[test]
fn transient_faults_are_retried_and_every_byte_arrives() {
    let repo = TestRepo::on(Backend::S3ViaProxy);
    let p = proxy(&repo);
    p.inject(Target::UploadPart(None), Fault::Status(503), 0, 2);
    p.inject(Target::UploadPart(None), Fault::CutRequest, 1, 1);
    p.inject(Target::PutObject, Fault::Status(500), 0, 2);
    p.inject(Target::CompleteUpload, Fault::Status(503), 0, 1);
    let data = pattern(40 * MIB, 3);
    let backup = repo.backup_stdin("faults", &data);
    assert_eq!(backup["bytes_read"], data.len() as u64);
    assert_eq!(p.faults_applied(), 6, "every injected fault was met");

    p.inject(Target::GetObject, Fault::CutResponse, 0, 3);
    p.inject(Target::GetObject, Fault::Status(503), 0, 2);
    assert_eq!(repo.cat(&["latest"]), data);
    assert_eq!(p.faults_applied(), 11);
    assert_eq!(open_uploads(&repo), 0);
    assert_verifies(&repo);
}

#[test]
fn a_stalled_request_times_out_and_is_tried_again() {
    let repo = TestRepo::on(Backend::S3ViaProxy);
    std::fs::write(
        repo.scratch("stowage.toml"),
        "[s3]\ninitial_backoff_ms = 20\nmax_attempts = 4\ntimeout_secs = 1\n",
    )
    .unwrap();
    // Far longer than the test can wait: only a timeout and a retry get past it.
    proxy(&repo).inject(
        Target::PutObject,
        Fault::Delay(Duration::from_secs(120)),
        0,
        1,
    );
    let started = Instant::now();
    let data = pattern(2 * MIB, 4);
    repo.backup_stdin("slow", &data);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(proxy(&repo).faults_applied(), 1);
    assert_eq!(repo.cat(&["latest"]), data);
}

#[test]
fn a_part_that_keeps_failing_aborts_its_upload_and_the_backup_fails_clearly() {
    let repo = TestRepo::on(Backend::S3ViaProxy);
    proxy(&repo).inject(
        Target::UploadPart(Some(2)),
        Fault::Status(503),
        0,
        usize::MAX,
    );
    let data = pattern(20 * MIB, 5);
    let out = repo.run_with_input(&["backup", "stdin", "--name", "doomed"], &data);
    assert_fails_with(&out, &["upload part", "SlowDown"]);
    assert_eq!(open_uploads(&repo), 0, "the failed upload was aborted");
    assert!(repo.json(&["snapshots"]).as_array().unwrap().is_empty());
    assert_verifies(&repo);

    proxy(&repo).heal();
    let backup = repo.backup_stdin("after", &data);
    assert_eq!(backup["bytes_read"], data.len() as u64);
    assert_eq!(repo.cat(&["latest"]), data);
}

#[test]
fn kill_during_a_multipart_upload_breaks_nothing_and_gc_aborts_the_orphan() {
    let repo = TestRepo::on(Backend::S3ViaProxy);
    // Parts hang, so the process is certainly mid-upload when it is killed.
    proxy(&repo).inject(
        Target::UploadPart(None),
        Fault::Delay(Duration::from_secs(30)),
        0,
        usize::MAX,
    );
    // Enough for a full pack (16 MiB) while stdin stays open.
    let (mut child, stdin) = repo.spawn_backup("killed", &pattern(48 * MIB, 6));
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy(&repo).count(Target::UploadPart(None)) == 0 {
        assert!(
            Instant::now() < deadline,
            "no part upload started: {:?}",
            proxy(&repo).seen()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(stdin);
    proxy(&repo).heal();
    let orphans = open_uploads(&repo);
    assert!(
        orphans >= 1,
        "the killed upload is still open on the server"
    );

    // The next backup neither trips over it nor needs it.
    let data = pattern(12 * MIB, 7);
    repo.backup_stdin("after", &data);
    assert_eq!(repo.cat(&["latest"]), data);
    assert_verifies(&repo);

    let listed = repo.json(&["gc", "--dry-run", "--older-than", "0s"]);
    assert_eq!(
        listed["incomplete_writes"].as_array().unwrap().len(),
        orphans
    );
    assert_eq!(open_uploads(&repo), orphans, "a dry run removes nothing");
    let young = repo.json(&["gc", "--older-than", "1h"]);
    assert!(young["incomplete_writes"].as_array().unwrap().is_empty());
    assert_eq!(open_uploads(&repo), orphans);
    repo.ok(&["gc", "--older-than", "0s"]);
    assert_eq!(open_uploads(&repo), 0);
    assert_verifies(&repo);
    assert_eq!(repo.cat(&["latest"]), data);
}

#[test]
fn server_side_encryption_and_storage_class_are_asked_for() {
    let repo = TestRepo::on(Backend::S3);
    let data = pattern(3 * MIB, 8);
    let out = repo.run_with_input(
        &[
            "--sse",
            "aws:kms",
            "--sse-kms-key-id",
            "alias/backups",
            "--storage-class",
            "STANDARD_IA",
            "backup",
            "stdin",
            "--name",
            "kms",
        ],
        &data,
    );
    assert_success(&out, &["backup with SSE-KMS"]);
    let packs = writes_under(&repo, "data/");
    assert!(!packs.is_empty());
    for (key, record) in packs {
        assert_eq!(record.sse.as_deref(), Some("aws:kms"), "{key}");
        assert_eq!(record.kms_key_id.as_deref(), Some("alias/backups"), "{key}");
        assert_eq!(
            record.storage_class.as_deref(),
            Some("STANDARD_IA"),
            "{key}"
        );
    }
    // Metadata is read by every command: it stays in the default class.
    for (key, record) in writes_under(&repo, "snapshots/") {
        assert_eq!(record.sse.as_deref(), Some("aws:kms"), "{key}");
        assert_eq!(record.storage_class, None, "{key}");
    }
    let out = repo.run_with_input(
        &["--sse", "AES256", "backup", "stdin", "--name", "s3"],
        b"small",
    );
    assert_success(&out, &["backup with SSE-S3"]);
    let out = repo.run_with_input(&["--sse", "rot13", "backup", "stdin", "--name", "x"], b"x");
    assert_fails_with(&out, &["rot13", "AES256 or aws:kms"]);
}

#[test]
fn errors_name_the_bucket_the_credentials_and_the_region() {
    let repo = TestRepo::on(Backend::S3ViaProxy);

    let out = repo
        .cmd(&["snapshots"])
        .env("STOWAGE_REPO", "s3://no-such-bucket/repo")
        .output()
        .unwrap();
    assert_fails_with(&out, &["\"no-such-bucket\" does not exist"]);

    let out = repo
        .cmd(&["snapshots"])
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .output()
        .unwrap();
    assert_fails_with(&out, &["secret access key does not match"]);

    let out = repo
        .cmd(&["snapshots"])
        .env("AWS_ACCESS_KEY_ID", "AKIDUNKNOWN")
        .output()
        .unwrap();
    assert_fails_with(&out, &["access refused"]);

    let out = repo
        .cmd(&["snapshots"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert_fails_with(&out, &["no usable AWS credentials"]);

    proxy(&repo).inject(Target::Any, Fault::WrongRegion, 0, usize::MAX);
    let out = repo.cmd(&["snapshots"]).output().unwrap();
    assert_fails_with(&out, &["eu-north-1", "AWS_REGION"]);
    proxy(&repo).heal();

    let out = repo
        .cmd(&["snapshots"])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_fails_with(&out, &["s3://stowage-test/repo"]);

    let out = repo
        .cmd(&["snapshots"])
        .env("STOWAGE_REPO", "s3:///repo")
        .output()
        .unwrap();
    assert_fails_with(&out, &["no bucket name"]);
    // After all that, the repository is untouched.
    repo.ok(&["snapshots"]);
}

#[test]
fn gc_removes_temporary_files_a_killed_local_backup_left() {
    let repo = TestRepo::on(Backend::Local);
    repo.backup_stdin("f", &pattern(MIB, 9));
    let stale = repo
        .path()
        .join("data")
        .join("ab")
        .join(".tmp-abcdef-0011223344556677");
    common::write(&stale, b"half a pack");
    let listed = repo.json(&["gc", "--dry-run", "--older-than", "0s"]);
    let writes = listed["incomplete_writes"].as_array().unwrap();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0]["key"], "data/ab/abcdef");
    assert!(stale.exists());
    repo.ok(&["gc", "--older-than", "0s"]);
    assert!(!stale.exists());
    assert_verifies(&repo);
}
