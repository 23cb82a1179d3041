//! Blob ids: keyed blake3 ([`Keys::blob_id`]) over 1 MiB chunks (the default average
//! chunk) and 64 KiB chunks (where per-call overhead and blake3's narrower SIMD path start
//! to show). Hashing speed does not depend on content; the three inputs confirm it.
//!
//! Throughput is input bytes per second. Inputs are in [`inputs`] at the end.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stowage::repo::crypto::{CipherKind, Keys, MasterKey, MASTER_LEN};

const INPUT_LEN: usize = 32 << 20;

fn blob_id(c: &mut Criterion) {
    let keys = Keys::derive(
        &MasterKey::from_bytes([7; MASTER_LEN]),
        CipherKind::Aes256Gcm,
    );
    let mut group = c.benchmark_group("blob_id");
    group.throughput(Throughput::Bytes(INPUT_LEN as u64));
    for (kind, make) in inputs::KINDS {
        let data = make(INPUT_LEN);
        for (label, chunk_len) in [("1MiB", 1 << 20), ("64KiB", 64 << 10)] {
            group.bench_with_input(BenchmarkId::new(label, kind), &data, |b, data| {
                b.iter(|| {
                    for chunk in black_box(data).chunks(chunk_len) {
                        black_box(keys.blob_id(chunk));
                    }
                });
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = inputs::criterion();
    targets = blob_id
}
criterion_main!(benches);

#[path = "inputs/mod.rs"]
mod inputs;
