//! `stowage quickstart`: the whole job on the embedded default, with real data.
//!
//! Creates a local repository, backs up a real directory tree (this machine's
//! `/usr/share/doc` unless told otherwise), backs it up again to show dedup, verifies every
//! byte, restores it and compares the restored tree with the original, byte for byte.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use tokio::runtime::Handle;

use stowage::backup::{run_backup, SnapshotMeta};
use stowage::repo::{InitOptions, Repository};
use stowage::restore::{restore_snapshot, DEFAULT_PARALLEL};
use stowage::source::FilesSource;
use stowage::store::open_store;
use stowage::verify::verify;

use super::render;
use super::Resolved;

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// What to back up.
    #[arg(long, default_value = "/usr/share/doc")]
    source: PathBuf,
    /// Working directory for the repository and the restore (default: a new temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
}

const DEMO_PASSPHRASE: &[u8] = b"stowage quickstart";

pub fn run(settings: &Resolved, runtime: &Handle, args: QuickstartArgs) -> anyhow::Result<()> {
    let dir = match args.dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("stowage-quickstart-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let repo_dir = dir.join("repo");
    let restore_dir = dir.join("restored");
    anyhow::ensure!(
        !repo_dir.exists(),
        "{} already exists; pick another --dir",
        repo_dir.display()
    );
    println!(
        "stowage quickstart: backing up {} into {}",
        args.source.display(),
        repo_dir.display()
    );

    let store = runtime.block_on(open_store(
        &repo_dir.display().to_string(),
        &Default::default(),
    ))?;
    let repo = runtime.block_on(Repository::init(
        store,
        DEMO_PASSPHRASE,
        &InitOptions::default(),
    ))?;
    println!(
        "1. created an encrypted repository ({})",
        repo_dir.display()
    );

    for (step, label) in [
        (2, "first backup"),
        (3, "second backup (unchanged data: dedup)"),
    ] {
        let started = Instant::now();
        let mut source = FilesSource::new(vec![args.source.clone()]);
        let meta = SnapshotMeta {
            name: "quickstart".into(),
            ..SnapshotMeta::default()
        };
        let result = run_backup(
            &repo,
            runtime,
            &mut source,
            meta,
            settings.pipeline_settings(&repo),
            |_| {},
        )?;
        let s = &result.snapshot.stats;
        println!(
            "{step}. {label}: snapshot {}, {} files, {} read, {} stored, {:.1} s ({})",
            result.id.short(),
            s.files,
            render::bytes(s.bytes_read),
            render::bytes(s.bytes_stored),
            started.elapsed().as_secs_f64(),
            render::rate(s.bytes_read, started.elapsed())
        );
    }

    let started = Instant::now();
    let report = runtime.block_on(verify(&repo, true, 3))?;
    anyhow::ensure!(
        report.problems.is_empty(),
        "verify found problems: {:?}",
        report.problems
    );
    println!(
        "4. verify --read-data: {} packs, {} blobs re-hashed, no problems ({:.1} s)",
        report.packs,
        report.blobs,
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let (id, snapshot) = runtime.block_on(repo.find_snapshot("latest", |_| true))?;
    let index = runtime.block_on(repo.load_index())?;
    let stats = runtime.block_on(restore_snapshot(
        &repo,
        &index,
        id,
        snapshot.tree,
        &restore_dir,
        DEFAULT_PARALLEL,
    ))?;
    println!(
        "5. restored {} files ({}) to {} in {:.1} s",
        stats.files,
        render::bytes(stats.bytes),
        restore_dir.display(),
        started.elapsed().as_secs_f64()
    );

    let name = args
        .source
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("root"));
    let compared = compare_trees(&args.source, &restore_dir.join(name))?;
    println!("6. compared {compared} files with the originals: identical");
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("stowage"));
    println!(
        "done. Look around: STOWAGE_REPO={} STOWAGE_PASSWORD='stowage quickstart' {} snapshots",
        repo_dir.display(),
        exe.display()
    );
    Ok(())
}

/// Compares two trees file by file; returns how many regular files matched.
fn compare_trees(original: &Path, restored: &Path) -> anyhow::Result<u64> {
    let mut count = 0;
    let mut stack = vec![(original.to_path_buf(), restored.to_path_buf())];
    while let Some((a, b)) = stack.pop() {
        let meta = std::fs::symlink_metadata(&a)?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&a)? {
                let entry = entry?;
                stack.push((entry.path(), b.join(entry.file_name())));
            }
        } else if meta.is_file() {
            let (Ok(x), Ok(y)) = (std::fs::read(&a), std::fs::read(&b)) else {
                continue; // unreadable originals were skipped by the backup, with a warning
            };
            anyhow::ensure!(x == y, "{} differs after restore", b.display());
            count += 1;
        } else if meta.file_type().is_symlink() {
            anyhow::ensure!(
                std::fs::read_link(&a)? == std::fs::read_link(&b)?,
                "{} link differs",
                b.display()
            );
        }
    }
    Ok(count)
}
