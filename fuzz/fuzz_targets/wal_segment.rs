//! WAL segments: `check_segment` on arbitrary bytes, complete and `.partial`, as is and
//! padded to a 1 MiB segment. The property is `wal_segment` in
//! tests/fuzz_checks/wal.rs, shared with tests/fuzz_corpus.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_checks/wal.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::wal_segment(data));
