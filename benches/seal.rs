//! Sealing and opening blobs, one thread: [`Sealer::seal`] (zstd level 3, then AES-256-GCM
//! or XChaCha20-Poly1305) and [`open_blob`] (decrypt, decompress, re-hash to check the
//! id), on 1 MiB chunks (the default average chunk). One sealer is what one pipeline
//! worker runs; a backup uses one per core.
//!
//! Throughput is plaintext bytes per second, for both directions. Inputs are in
//! [`inputs`] at the end; the share each one seals to is printed once to stderr.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stowage::repo::blob::{open_blob, BlobKind, Sealer};
use stowage::repo::crypto::{CipherKind, Keys, MasterKey, MASTER_LEN};
use stowage::repo::id::BlobId;

const INPUT_LEN: usize = 16 << 20;
const CHUNK_LEN: usize = 1 << 20;
const LEVEL: i32 = 3;
const CIPHERS: [(&str, CipherKind); 2] = [
    ("aes-256-gcm", CipherKind::Aes256Gcm),
    ("xchacha20-poly1305", CipherKind::XChaCha20Poly1305),
];

fn keys(cipher: CipherKind) -> Keys {
    Keys::derive(&MasterKey::from_bytes([7; MASTER_LEN]), cipher)
}

/// The input cut into 1 MiB chunks, each with its id (computed once, outside the timing).
fn chunks(keys: &Keys, data: &[u8]) -> Vec<(BlobId, Vec<u8>)> {
    data.chunks(CHUNK_LEN)
        .map(|c| (keys.blob_id(c), c.to_vec()))
        .collect()
}

fn seal(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal");
    group.throughput(Throughput::Bytes(INPUT_LEN as u64));
    for (kind, make) in inputs::KINDS {
        let data = make(INPUT_LEN);
        for (cipher_name, cipher) in CIPHERS {
            let keys = keys(cipher);
            let chunks = chunks(&keys, &data);
            let mut sealer = Sealer::new(keys, LEVEL).expect("zstd level 3");
            let sealed: usize = chunks
                .iter()
                .map(|(id, plain)| sealer.seal(BlobKind::Data, id, plain).len())
                .sum();
            if cipher == CipherKind::Aes256Gcm {
                eprintln!(
                    "{kind}: sealed to {:.1}% of {} MiB",
                    sealed as f64 * 100.0 / INPUT_LEN as f64,
                    INPUT_LEN >> 20
                );
            }
            group.bench_function(BenchmarkId::new(cipher_name, kind), |b| {
                b.iter(|| {
                    for (id, plain) in &chunks {
                        black_box(sealer.seal(BlobKind::Data, id, black_box(plain)));
                    }
                });
            });
        }
    }
    group.finish();
}

fn open(c: &mut Criterion) {
    let mut group = c.benchmark_group("open");
    group.throughput(Throughput::Bytes(INPUT_LEN as u64));
    for (kind, make) in inputs::KINDS {
        let data = make(INPUT_LEN);
        for (cipher_name, cipher) in CIPHERS {
            let keys = keys(cipher);
            let mut sealer = Sealer::new(keys.clone(), LEVEL).expect("zstd level 3");
            let sealed: Vec<(BlobId, Vec<u8>, usize)> = chunks(&keys, &data)
                .into_iter()
                .map(|(id, plain)| (id, sealer.seal(BlobKind::Data, &id, &plain), plain.len()))
                .collect();
            group.bench_function(BenchmarkId::new(cipher_name, kind), |b| {
                b.iter(|| {
                    for (id, blob, raw_len) in &sealed {
                        let plain = open_blob(&keys, BlobKind::Data, id, black_box(blob), *raw_len)
                            .expect("a blob sealed just now opens");
                        black_box(plain);
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
    targets = seal, open
}
criterion_main!(benches);

#[path = "inputs/mod.rs"]
mod inputs;
