//! The property the `pg_dump_header` fuzz target checks.
//!
//! Like `mod.rs` beside it, this file is compiled twice, by the fuzz target
//! (`fuzz/fuzz_targets/pg_dump_header.rs`, through `#[path]`) and by the corpus replay
//! (`tests/fuzz_corpus.rs`), so `cargo test` replays exactly what the fuzzer ran. It uses
//! only `std` and `stowage`.

#![allow(dead_code)]

use stowage::pg::dump::{parse_header, MAX_STRING_BYTES};

/// A target's property: panics when `data` breaks it.
pub type Check = fn(data: &[u8]);

/// The dump targets, by the name of their corpus directory.
pub const TARGETS: &[(&str, Check)] = &[("pg_dump_header", pg_dump_header)];

/// `pg_dump_header` input: the start of a stream offered as a custom-format archive
/// (`backup pg-dump`, `backup stdin --kind pg-dump`).
///
/// 1. `parse_header` never panics.
/// 2. An accepted header lies inside the input, its strings are bounded, and exactly its
///    own bytes parse to the same header.
/// 3. Every shorter prefix of an accepted header asks for more bytes: a stream is neither
///    refused nor accepted before its header is complete.
/// 4. A refusal stands whatever follows: more bytes give the same kind of error.
pub fn pg_dump_header(data: &[u8]) {
    match parse_header(data) {
        Ok(Some(header)) => {
            assert!(header.len <= data.len(), "header longer than the input");
            // Lossy UTF-8 turns one invalid byte into three.
            for text in [
                &header.database,
                &header.server_version,
                &header.pg_dump_version,
            ]
            .into_iter()
            .flatten()
            {
                assert!(text.len() <= 3 * MAX_STRING_BYTES, "unbounded string");
            }
            assert_eq!(
                parse_header(&data[..header.len]),
                Ok(Some(header.clone())),
                "its own bytes parse differently"
            );
            for cut in 0..header.len {
                assert_eq!(
                    parse_header(&data[..cut]),
                    Ok(None),
                    "prefix of {cut} bytes"
                );
            }
        }
        Ok(None) => {}
        Err(refused) => {
            let mut longer = data.to_vec();
            longer.extend_from_slice(&[0u8; 64]);
            let again = parse_header(&longer).expect_err("accepted once more bytes came");
            assert_eq!(
                std::mem::discriminant(&again),
                std::mem::discriminant(&refused),
                "{refused} became {again}"
            );
        }
    }
}
