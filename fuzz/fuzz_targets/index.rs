//! Index files: `decode_index`, round trip through `encode_index`.
//! The property is `checks::index` (tests/fuzz_checks/mod.rs), shared with tests/fuzz_corpus.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::index(data));
