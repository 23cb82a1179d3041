//! Restores never write outside their target; several writers share one repository;
//! passphrases are managed without ever locking the owner out.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{assert_fails_with, pattern, Backend, TestRepo, PASSWORD};
use stowage::backup::{run_backup, SnapshotMeta};
use stowage::pipeline::{BackupSession, PipelineError, Settings};
use stowage::repo::blob::BlobKind;
use stowage::repo::tree::{Node, NodeKind, Tree};
use stowage::repo::Repository;
use stowage::source::{Source, SourceOutcome, SourceReport};
use stowage::store::LocalStore;

fn node(name: &str, kind: NodeKind) -> Node {
    Node {
        mode: 0o644,
        mtime_ns: 0,
        ..Node::new(name.as_bytes(), kind)
    }
}

type BuildTree = Box<dyn Fn(&mut BackupSession) -> Result<Tree, PipelineError> + Send>;

/// A source that writes whatever trees it is given: how a hostile or buggy writer would.
struct Crafted {
    build: BuildTree,
}

impl Source for Crafted {
    fn kind(&self) -> &'static str {
        "files"
    }
    fn run(&mut self, session: &mut BackupSession) -> Result<SourceOutcome, PipelineError> {
        let root = (self.build)(session)?;
        let tree = session.add_blob(BlobKind::Tree, Bytes::from(root.encode()))?;
        Ok(SourceOutcome {
            tree,
            report: SourceReport::default(),
        })
    }
}

fn craft(
    repo: &TestRepo,
    build: impl Fn(&mut BackupSession) -> Result<Tree, PipelineError> + Send + 'static,
) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = Arc::new(LocalStore::new(repo.path()));
    let opened = runtime
        .block_on(Repository::open(store, PASSWORD.as_bytes()))
        .unwrap();
    let mut source = Crafted {
        build: Box::new(build),
    };
    run_backup(
        &opened,
        runtime.handle(),
        &mut source,
        SnapshotMeta::default(),
        Settings::new(3),
        |_| {},
    )
    .unwrap();
}

fn file_with(
    session: &mut BackupSession,
    name: &str,
    data: &'static [u8],
) -> Result<Node, PipelineError> {
    let mut splitter = session.content_splitter();
    let pending = session.add_stream(data, &mut splitter, None, name)?;
    let content = session.wait(pending)?;
    let mut n = node(name, NodeKind::File);
    n.size = content.size;
    n.content = content.blobs;
    Ok(n)
}

#[test]
fn hostile_names_are_refused_before_anything_is_written() {
    for bad in ["..", ".", "", "a/b", "../escape", "/abs"] {
        let repo = TestRepo::new();
        let bad_name = bad.to_string();
        craft(&repo, move |s| {
            Ok(Tree {
                nodes: vec![file_with(s, &bad_name, b"pwned")?],
            })
        });
        let dest = repo.scratch("out");
        let out = repo
            .cmd(&["restore", "latest", "--to", dest.to_str().unwrap()])
            .output()
            .unwrap();
        assert_fails_with(&out, &["unsafe entry name"]);
        assert!(!repo.scratch("escape").exists() && !std::path::Path::new("/abs").exists());
    }
}

#[test]
fn symlink_then_directory_of_the_same_name_is_refused() {
    let repo = TestRepo::new();
    let outside = repo.scratch("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let target = outside.to_str().unwrap().to_string();
    craft(&repo, move |s| {
        let mut link = node("x", NodeKind::Symlink);
        link.target = Some(target.clone());
        let inner = Tree {
            nodes: vec![file_with(s, "pwned", b"pwned")?],
        };
        let mut dir = node("x", NodeKind::Dir);
        dir.subtree = Some(s.add_blob(BlobKind::Tree, Bytes::from(inner.encode()))?);
        Ok(Tree {
            nodes: vec![link, dir],
        })
    });
    let dest = repo.scratch("out");
    let out = repo
        .cmd(&["restore", "latest", "--to", dest.to_str().unwrap()])
        .output()
        .unwrap();
    assert_fails_with(&out, &["names \"x\" twice"]);
    assert!(!outside.join("pwned").exists());
}

#[test]
fn existing_symlink_in_the_target_is_never_followed() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    common::write(&src.join("file"), b"payload");
    repo.ok(&["backup", "files", src.to_str().unwrap()]);
    let dest = repo.scratch("out");
    let outside = repo.scratch("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    // The target already has `src` pointing elsewhere: restore must not write through it.
    std::os::unix::fs::symlink(&outside, dest.join("src")).unwrap();
    let out = repo
        .cmd(&["restore", "latest", "--to", dest.to_str().unwrap()])
        .output()
        .unwrap();
    assert_fails_with(&out, &["not a directory"]);
    assert!(!outside.join("file").exists());
    // A file that is a symlink is refused too.
    std::fs::remove_file(dest.join("src")).unwrap();
    std::fs::create_dir_all(dest.join("src")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), dest.join("src/file")).unwrap();
    let out = repo
        .cmd(&["restore", "latest", "--to", dest.to_str().unwrap()])
        .output()
        .unwrap();
    assert_fails_with(&out, &["not a regular file"]);
    assert!(!outside.join("victim").exists());
}

fn concurrent_writers_all_succeed_and_all_restore(backend: Backend) {
    let repo = TestRepo::on(backend);
    let shared = pattern(6 * 1024 * 1024, 50);
    let inputs: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let mut data = shared.clone();
            data.extend_from_slice(&pattern(3 * 1024 * 1024, 60 + i));
            data
        })
        .collect();
    let handles: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, data)| {
            let cmd = repo.cmd(&["--json", "backup", "stdin", "--name", &format!("w{i}")]);
            let data = data.clone();
            std::thread::spawn(move || common::run_with_input(cmd, &data))
        })
        .collect();
    for handle in handles {
        let out = handle.join().unwrap();
        common::assert_success(&out, &["concurrent backup"]);
    }
    for (i, data) in inputs.iter().enumerate() {
        assert_eq!(&repo.cat(&["latest", "--name", &format!("w{i}")]), data);
    }
    repo.ok(&["verify", "--read-data"]);
}

#[test]
fn keys_can_be_added_listed_and_removed_but_never_all() {
    let repo = TestRepo::new();
    repo.add_key("second secret");
    let keys = repo.json(&["key", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 2);
    let other = repo.key_id(false);
    let current = repo.key_id(true);
    // The new passphrase opens the repository.
    let out = repo
        .cmd(&["snapshots"])
        .env("STOWAGE_PASSWORD", "second secret")
        .output()
        .unwrap();
    common::assert_success(&out, &["snapshots with second key"]);
    // The key in use cannot be removed; another can.
    let out = repo
        .cmd(&["key", "remove", &current[..12]])
        .output()
        .unwrap();
    assert_fails_with(&out, &["in use"]);
    repo.ok(&["key", "remove", &other[..12]]);
    let out = repo
        .cmd(&["snapshots"])
        .env("STOWAGE_PASSWORD", "second secret")
        .output()
        .unwrap();
    assert_fails_with(&out, &["wrong passphrase"]);
    assert_eq!(repo.json(&["key", "list"]).as_array().unwrap().len(), 1);
}

on_every_store!(concurrent_writers_all_succeed_and_all_restore,);
