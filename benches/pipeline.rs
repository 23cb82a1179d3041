//! The whole backup pipeline, as `stowage backup stdin` runs it: [`run_backup`] with a
//! [`StdinSource`] over an in-memory stream, default [`Settings`] (one sealer per core),
//! into a [`LocalStore`] repository.
//!
//! - `first`: a fresh repository each time: read, chunk, hash, compress, encrypt, pack,
//!   upload, index, snapshot. Creating the repository is not timed.
//! - `second`: the same stream again into a repository that already holds it, so every
//!   data chunk deduplicates: read, chunk, hash and dedup (plus one tree blob, its index
//!   and the snapshot).
//!
//! Repositories live under `/dev/shm` (a RAM-backed tmpfs) when it exists, else in the
//! system temporary directory. On tmpfs the store's writes and fsyncs cost almost nothing,
//! so the figures are the pipeline's own cost rather than the disk's; the whole-command
//! benchmarks in `benches/compare.sh` measure a real disk.
//!
//! Throughput is input bytes per second. Inputs are in [`inputs`] at the end.

use std::hint::black_box;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stowage::backup::{run_backup, BackupResult, SnapshotMeta};
use stowage::pipeline::Settings;
use stowage::repo::{InitOptions, KdfCost, Repository};
use stowage::source::StdinSource;
use stowage::store::{LocalStore, ObjectStore};
use tempfile::TempDir;
use tokio::runtime::Runtime;

/// Four read buffers of the default 16 MiB, about 64 average chunks.
const INPUT_LEN: usize = 64 << 20;

/// A scratch directory for repositories, in RAM when the system has `/dev/shm`.
fn scratch_dir() -> TempDir {
    let mut builder = tempfile::Builder::new();
    builder.prefix("stowage-bench-");
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        builder.tempdir_in(shm)
    } else {
        builder.tempdir()
    }
    .expect("create a scratch directory")
}

/// A new repository in `dir`, with a trivial key-derivation cost so setup stays fast.
fn init_repo(runtime: &Runtime, dir: &Path) -> Repository {
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir));
    let options = InitOptions {
        kdf: KdfCost {
            memory_kib: 64,
            iterations: 1,
        },
        ..InitOptions::default()
    };
    runtime
        .block_on(Repository::init(store, b"bench", &options))
        .expect("init a repository")
}

/// One backup of `data`, from this (non-async) thread, as `stowage backup stdin` does it.
fn backup(repo: &Repository, runtime: &Runtime, data: &[u8]) -> BackupResult {
    let mut source = StdinSource::new(Cursor::new(data), "input");
    let meta = SnapshotMeta {
        name: "bench".into(),
        ..SnapshotMeta::default()
    };
    run_backup(
        repo,
        runtime.handle(),
        &mut source,
        meta,
        Settings::new(3),
        |_| {},
    )
    .expect("backup")
}

fn pipeline(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let scratch = scratch_dir();
    let mut group = c.benchmark_group("backup");
    group.throughput(Throughput::Bytes(INPUT_LEN as u64));
    for (kind, make) in inputs::KINDS {
        let data = make(INPUT_LEN);

        group.bench_function(BenchmarkId::new("first", kind), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let dir = TempDir::new_in(scratch.path()).expect("repository directory");
                    let repo = init_repo(&runtime, dir.path());
                    let start = Instant::now();
                    black_box(backup(&repo, &runtime, &data));
                    timed += start.elapsed();
                    // The repository and its directory are dropped here, untimed.
                }
                timed
            });
        });

        let dir = TempDir::new_in(scratch.path()).expect("repository directory");
        let repo = init_repo(&runtime, dir.path());
        backup(&repo, &runtime, &data);
        let again = backup(&repo, &runtime, &data);
        assert_eq!(again.snapshot.stats.bytes_read, INPUT_LEN as u64);
        assert!(
            again.snapshot.stats.blobs_new <= 1,
            "a second backup stores only its tree, not {} blobs",
            again.snapshot.stats.blobs_new
        );
        group.bench_function(BenchmarkId::new("second", kind), |b| {
            b.iter(|| backup(&repo, &runtime, &data));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = inputs::criterion();
    targets = pipeline
}
criterion_main!(benches);

#[path = "inputs/mod.rs"]
mod inputs;
