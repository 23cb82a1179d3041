//! Sealed metadata files and blobs: `open_file` and `open_blob`, before and past the AEAD.
//! The property is `checks::sealed` (tests/fuzz_checks/mod.rs), shared with tests/fuzz_corpus.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::sealed(data));
