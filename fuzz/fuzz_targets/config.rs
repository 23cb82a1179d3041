//! The `config` object: `Config::decode`, round trip through `Config::encode`.
//! The property is `checks::config` (tests/fuzz_checks/mod.rs), shared with tests/fuzz_corpus.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::config(data));
