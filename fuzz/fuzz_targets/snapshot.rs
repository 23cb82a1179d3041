//! Snapshots and trees: `Snapshot::decode` and `Tree::decode`, round trips through their encoders.
//! The property is `checks::snapshot` (tests/fuzz_checks/mod.rs), shared with tests/fuzz_corpus.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::snapshot(data));
