//! Vault raft snapshots: backup from a file, stdin and the API, restore to a file and to
//! the API, against snapshots made in the exact raft-snapshot format
//! ([`vault_fixtures`]) and a Vault HTTP server in the test process.

mod common;
mod vault_fixtures;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use common::{assert_fails_with, assert_success, TestRepo, PASSWORD};
use stowage::backup::{run_backup, SnapshotMeta};
use stowage::pipeline::{BackupSession, PipelineError, Settings};
use stowage::repo::blob::BlobKind;
use stowage::repo::tree::{Node, NodeKind, Tree};
use stowage::repo::Repository;
use stowage::source::{Source, SourceOutcome, SourceReport};
use stowage::store::LocalStore;
use vault_fixtures::server::VaultServer;
use vault_fixtures::{encode_members, verify_like_raft, Snap, VaultData, MTIME};

const TOKEN: &str = "hvs.test-token";

/// `stowage ARGS` with no Vault settings from the environment.
fn cmd(repo: &TestRepo, args: &[&str]) -> Command {
    let mut cmd = repo.cmd(args);
    for var in [
        "VAULT_ADDR",
        "VAULT_TOKEN",
        "VAULT_NAMESPACE",
        "VAULT_CACERT",
        "VAULT_CAPATH",
        "VAULT_SKIP_VERIFY",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", repo.scratch("home"));
    cmd
}

fn json(out: &std::process::Output, what: &[&str]) -> serde_json::Value {
    assert_success(out, what);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn snapshots(repo: &TestRepo) -> Vec<serde_json::Value> {
    let out = cmd(repo, &["--json", "snapshots"]).output().unwrap();
    json(&out, &["snapshots"]).as_array().unwrap().clone()
}

/// The members of `snap` as a restore must give them back: same names in raft's order,
/// same bytes, 0600, the snapshot's time.
fn assert_same_members(restored: &[u8], snap: &Snap) {
    let members = verify_like_raft(restored).unwrap();
    let expected: Vec<(String, Vec<u8>)> = snap.members();
    assert_eq!(
        members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        expected.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
    );
    for (member, (name, data)) in members.iter().zip(&expected) {
        assert!(member.data == *data, "{name} differs");
        assert_eq!((member.mode, member.mtime), (0o600, MTIME), "{name}");
    }
}

#[test]
fn two_nights_from_file_and_stdin_dedup_and_restore_byte_equal() {
    let repo = TestRepo::new();
    let mut vault = VaultData::new(6 << 20, 1);
    let night1 = Snap::new(vault.state_bin(), 10_400, 7).sealed();
    let file = repo.scratch("night1.snap");
    std::fs::write(&file, night1.encode()).unwrap();
    let first = json(
        &cmd(
            &repo,
            &[
                "--json",
                "backup",
                "vault",
                "--file",
                file.to_str().unwrap(),
            ],
        )
        .output()
        .unwrap(),
        &["backup", "vault"],
    );
    assert_eq!(first["kind"], "vault");
    assert_eq!(first["files"], 4);

    // A night of a slowly changing Vault: about 1% of entries rewritten, 1% new, 0.3% gone.
    let entries = vault.entries.len();
    vault.churn(entries / 100, entries / 100, entries / 300);
    let night2 = Snap::new(vault.state_bin(), 11_020, 7);
    let out = common::run_with_input(
        cmd(
            &repo,
            &[
                "--json",
                "backup",
                "vault",
                "--file",
                "-",
                "--name",
                "vault-prod",
            ],
        ),
        &night2.encode(),
    );
    let second = json(&out, &["backup", "vault", "--file", "-"]);
    let (stored1, stored2) = (
        first["bytes_stored"].as_u64().unwrap(),
        second["bytes_stored"].as_u64().unwrap(),
    );
    eprintln!("night 1 stored {stored1}, night 2 stored {stored2} ({entries} entries)");
    assert!(
        stored1 > 6 << 20,
        "random values do not compress: {stored1}"
    );
    assert!(
        stored2 * 100 <= stored1 * 15,
        "night 2 stored {stored2} bytes, more than 15% of night 1's {stored1}"
    );

    let listed = snapshots(&repo);
    assert_eq!(listed.len(), 2);
    let source = &listed[0]["source"];
    assert_eq!(source["origin"], "file");
    assert_eq!(source["raft_index"], 10_400);
    assert_eq!(source["raft_term"], 7);
    assert_eq!(source["sealed_sums"], true);
    assert_eq!(source["state_bytes"], night1.state.len() as u64);
    assert_eq!(
        source["raft_servers"][1]["address"],
        "vault-1.vault-internal:8201"
    );
    assert_eq!(listed[1]["source"]["origin"], "stdin");
    assert_eq!(listed[1]["source"]["sealed_sums"], false);

    for (i, (listed, snap)) in listed.iter().zip([&night1, &night2]).enumerate() {
        let id = listed["id"].as_str().unwrap();
        let to = repo.scratch(&format!("restored-{i}.snap"));
        let out = cmd(&repo, &["restore", id, "--to", to.to_str().unwrap()])
            .output()
            .unwrap();
        assert_success(&out, &["restore", id]);
        assert_same_members(&std::fs::read(&to).unwrap(), snap);
        // A restored file is a valid input again, and is never overwritten.
        let out = cmd(&repo, &["restore", id, "--to", to.to_str().unwrap()])
            .output()
            .unwrap();
        assert_fails_with(&out, &["exists"]);
    }
    let state = repo.cat(&["latest", "state.bin"]);
    assert!(state == night2.state, "cat state.bin");
}

/// A snapshot whose backup must fail naming `says`, leaving no snapshot behind.
fn assert_backup_refused(repo: &TestRepo, snap: &[u8], says: &[&str]) {
    let file = repo.scratch("bad.snap");
    std::fs::write(&file, snap).unwrap();
    let out = cmd(repo, &["backup", "vault", "--file", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_fails_with(&out, says);
    assert!(snapshots(repo).is_empty(), "a refused snapshot was listed");
}

#[test]
fn damaged_snapshots_are_refused_on_backup_naming_the_member() {
    let repo = TestRepo::new();
    let good = Snap::new(VaultData::new(1 << 20, 2).state_bin(), 500, 2);

    let mut flipped = good.clone();
    let middle = flipped.state.len() / 2;
    flipped.state[middle] ^= 0x40;
    assert_backup_refused(
        &repo,
        &flipped.encode(),
        &["bad.snap", "state.bin does not match its SHA256SUMS entry"],
    );

    // The same meta.json with another Index: valid JSON, wrong hash.
    let mut meta = good.clone();
    meta.meta = String::from_utf8(good.meta.clone())
        .unwrap()
        .replace("\"Index\":500", "\"Index\":501")
        .into_bytes();
    assert_backup_refused(&repo, &meta.encode(), &["meta.json does not match"]);

    let mut stray = good.clone();
    stray.extra.push(("notes.txt".into(), b"hello".to_vec()));
    assert_backup_refused(&repo, &stray.encode(), &["unexpected member \"notes.txt\""]);

    let mut unlisted = good.clone();
    unlisted.sums = format!("{}  meta.json\n", vault_fixtures::sha256_hex(&good.meta)).into_bytes();
    assert_backup_refused(
        &repo,
        &unlisted.encode(),
        &["SHA256SUMS", "no line for state.bin"],
    );

    let mut no_sums = good.members();
    no_sums.retain(|(name, _)| name != "SHA256SUMS");
    assert_backup_refused(
        &repo,
        &encode_members(&no_sums),
        &["the snapshot has no SHA256SUMS"],
    );
    let encoded = good.encode();
    assert_backup_refused(&repo, &encoded[..encoded.len() / 2], &["bad.snap"]);
    assert_backup_refused(
        &repo,
        b"meta.json state.bin",
        &["not a gzip-compressed raft snapshot"],
    );
    let plain_tar = flate2::read::GzDecoder::new(&encoded[..]);
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut { plain_tar }, &mut raw).unwrap();
    assert_backup_refused(&repo, &raw, &["not a gzip-compressed raft snapshot"]);
}

/// Writes a `vault` snapshot whose members are given as is (a damaged repository: the
/// blobs are sound, their content no longer matches SHA256SUMS).
struct Crafted(Vec<(String, Vec<u8>)>);

impl Source for Crafted {
    fn kind(&self) -> &'static str {
        "vault"
    }
    fn run(&mut self, session: &mut BackupSession) -> Result<SourceOutcome, PipelineError> {
        let mut nodes = Vec::new();
        for (name, data) in &self.0 {
            let id = session.add_blob(BlobKind::Data, Bytes::from(data.clone()))?;
            nodes.push(Node {
                mode: 0o600,
                mtime_ns: MTIME as i64 * 1_000_000_000,
                size: data.len() as u64,
                content: vec![id],
                ..Node::new(name.as_bytes(), NodeKind::File)
            });
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let tree = session.add_blob(BlobKind::Tree, Bytes::from(Tree { nodes }.encode()))?;
        Ok(SourceOutcome {
            tree,
            report: SourceReport::default(),
        })
    }
}

fn craft(repo: &TestRepo, members: Vec<(String, Vec<u8>)>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = Arc::new(LocalStore::new(repo.path()));
    let opened = runtime
        .block_on(Repository::open(store, PASSWORD.as_bytes()))
        .unwrap();
    run_backup(
        &opened,
        runtime.handle(),
        &mut Crafted(members),
        SnapshotMeta::default(),
        Settings::new(3),
        |_| {},
    )
    .unwrap();
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn damaged_stored_snapshots_are_refused_on_restore() {
    let repo = TestRepo::new();
    let vault = VaultServer::start(TOKEN, None, Vec::new());
    let good = Snap::new(VaultData::new(512 << 10, 3).state_bin(), 77, 1);
    let mut damaged = good.clone();
    damaged.state[100] ^= 1;
    craft(&repo, damaged.members());
    let out_dir = repo.scratch("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let to = out_dir.join("vault.snap");
    let out = cmd(&repo, &["restore", "latest", "--to", to.to_str().unwrap()])
        .output()
        .unwrap();
    assert_fails_with(&out, &["state.bin does not match its SHA256SUMS entry"]);
    assert!(
        dir_names(&out_dir).is_empty(),
        "left {:?}",
        dir_names(&out_dir)
    );
    let out = cmd(&repo, &["restore", "vault", "latest"])
        .env("VAULT_ADDR", vault.address())
        .env("VAULT_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_fails_with(&out, &["state.bin does not match its SHA256SUMS entry"]);
    assert!(
        vault.restored().is_empty(),
        "Vault received a damaged snapshot"
    );

    // A stray member in a stored snapshot is refused too.
    let mut stray = good.members();
    stray.push(("notes.txt".into(), b"x".to_vec()));
    craft(&repo, stray);
    let to = out_dir.join("stray.snap");
    let out = cmd(&repo, &["restore", "latest", "--to", to.to_str().unwrap()])
        .output()
        .unwrap();
    assert_fails_with(&out, &["unexpected member \"notes.txt\""]);
    assert!(dir_names(&out_dir).is_empty());
}

#[test]
fn api_backup_and_restore_check_token_namespace_and_follow_standby_redirects() {
    let repo = TestRepo::new();
    let vault = VaultData::new(2 << 20, 4);
    let snap = Snap::new(vault.state_bin(), 3_141, 5).sealed();
    let active = VaultServer::start(TOKEN, Some("admin"), snap.encode());
    let standby = VaultServer::standby(&active);
    let with = |args: &[&str], addr: &str, token: &str, ns: Option<&str>| {
        let mut c = cmd(&repo, args);
        c.env("VAULT_ADDR", addr).env("VAULT_TOKEN", token);
        if let Some(ns) = ns {
            c.env("VAULT_NAMESPACE", ns);
        }
        c.output().unwrap()
    };
    let backup = ["--json", "backup", "vault"];

    let out = with(&backup, &active.address(), "hvs.wrong", Some("admin"));
    assert_fails_with(
        &out,
        &[
            "GET",
            "/v1/sys/storage/raft/snapshot",
            "403",
            "permission denied",
        ],
    );
    let out = with(&backup, &active.address(), TOKEN, None);
    assert_fails_with(&out, &["403", "no handler for route in this namespace"]);
    let out = cmd(&repo, &backup)
        .env("VAULT_ADDR", active.address())
        .output()
        .unwrap();
    assert_fails_with(&out, &["no Vault token"]);
    assert!(snapshots(&repo).is_empty());

    // Through the standby, which redirects to the active node; the token from a file.
    let token_file = repo.scratch("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let out = cmd(
        &repo,
        &[
            "--json",
            "backup",
            "vault",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    )
    .env("VAULT_ADDR", standby.address())
    .env("VAULT_NAMESPACE", "admin")
    .output()
    .unwrap();
    let done = json(&out, &["backup", "vault", "via standby"]);
    assert_eq!(done["files"], 4);
    assert_eq!(standby.seen().len(), 1);
    let listed = snapshots(&repo);
    assert_eq!(listed[0]["source"]["origin"], "api");
    assert_eq!(listed[0]["source"]["address"], standby.address());
    assert_eq!(listed[0]["source"]["raft_index"], 3_141);

    let out = with(
        &["restore", "vault", "latest"],
        &active.address(),
        "hvs.wrong",
        Some("admin"),
    );
    assert_fails_with(&out, &["POST", "403", "permission denied"]);
    assert!(active.restored().is_empty());

    let out = with(
        &["restore", "vault", "latest"],
        &standby.address(),
        TOKEN,
        Some("admin"),
    );
    assert_success(&out, &["restore", "vault", "via standby"]);
    let out = with(
        &["restore", "vault", "latest", "--force"],
        &active.address(),
        TOKEN,
        Some("admin"),
    );
    assert_success(&out, &["restore", "vault", "--force"]);
    let restored = active.restored();
    assert_eq!(
        restored
            .iter()
            .map(|(path, _)| path.as_str())
            .collect::<Vec<_>>(),
        [
            "/v1/sys/storage/raft/snapshot",
            "/v1/sys/storage/raft/snapshot-force"
        ]
    );
    for (_, body) in &restored {
        assert_same_members(body, &snap);
    }
}
