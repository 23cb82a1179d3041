//! Key files: `KeyFile::decode` (round trip) and, at low Argon2 cost, `unwrap_key`.
//! The property is `checks::key_file` (tests/fuzz_checks/mod.rs), shared with tests/fuzz_corpus.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::key_file(data));
