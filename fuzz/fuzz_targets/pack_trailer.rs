//! Pack trailers: `decode_trailer` (round trip through `encode_trailer`) and `read_pack_trailer`.
//! The property is `checks::pack_trailer` (tests/fuzz_checks/mod.rs), shared with tests/fuzz_corpus.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::pack_trailer(data));
