//! Cut-point finding: FastCDC with the repository defaults (1 MiB average) against fixed
//! 8 KiB pages (`fastcdc`, `fixed-8k`: the splitter alone over one buffer), then both
//! behind a [`ChunkReader`] (`reader-*`), which adds what the pipeline's first stage does
//! around the splitter: budgeted, recycled 16 MiB read buffers, the copy from the source
//! into them, and one `Bytes` slice per chunk.
//!
//! Throughput is input bytes per second. Inputs are in [`inputs`] at the end.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stowage::pipeline::split::{FastCdc, Fixed, Splitter};
use stowage::pipeline::{Budget, ChunkReader, ReadBuffers, DEFAULT_BUFFER_BYTES};
use stowage::repo::config::ChunkerParams;

const INPUT_LEN: usize = 32 << 20;
/// Any fixed seed: real repositories derive theirs from the master key.
const SEED: u64 = 0x5EED_CDC0;

/// Runs `splitter` over `data` the way a whole buffer at end of stream is cut; returns
/// the number of chunks.
fn cut_all(splitter: &mut dyn Splitter, data: &[u8]) -> usize {
    let mut pos = 0;
    let mut chunks = 0;
    while let Some(len) = splitter.next_cut(&data[pos..], true) {
        pos += len;
        chunks += 1;
    }
    assert_eq!(pos, data.len());
    chunks
}

/// Reads `data` through a [`ChunkReader`], as the pipeline's first stage does; returns
/// the number of chunks.
fn read_all(splitter: &mut dyn Splitter, buffers: &ReadBuffers, data: &[u8]) -> usize {
    let mut reader = ChunkReader::new(data, splitter, buffers, None);
    let mut chunks = 0;
    while let Some(chunk) = reader.next_chunk().expect("reading memory") {
        black_box(&chunk);
        chunks += 1;
    }
    assert_eq!(reader.bytes_read(), data.len() as u64);
    chunks
}

fn split(c: &mut Criterion) {
    let params = ChunkerParams::default();
    // One pool for every iteration, as for one long stream: its buffers are recycled.
    let buffers = ReadBuffers::new(Budget::new(4 * DEFAULT_BUFFER_BYTES), DEFAULT_BUFFER_BYTES);
    let mut group = c.benchmark_group("split");
    group.throughput(Throughput::Bytes(INPUT_LEN as u64));
    for (kind, make) in inputs::KINDS {
        let data = make(INPUT_LEN);
        group.bench_with_input(BenchmarkId::new("fastcdc", kind), &data, |b, data| {
            b.iter(|| cut_all(&mut FastCdc::new(&params, SEED), black_box(data)));
        });
        group.bench_with_input(BenchmarkId::new("fixed-8k", kind), &data, |b, data| {
            b.iter(|| cut_all(&mut Fixed::new(8192), black_box(data)));
        });
        group.bench_with_input(
            BenchmarkId::new("reader-fastcdc", kind),
            &data,
            |b, data| {
                b.iter(|| read_all(&mut FastCdc::new(&params, SEED), &buffers, black_box(data)));
            },
        );
        group.bench_with_input(
            BenchmarkId::new("reader-fixed-8k", kind),
            &data,
            |b, data| {
                b.iter(|| read_all(&mut Fixed::new(8192), &buffers, black_box(data)));
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = inputs::criterion();
    targets = split
}
criterion_main!(benches);

#[path = "inputs/mod.rs"]
mod inputs;
