//! Timeline history and backup history files: `check_history`, `check_backup_file`, and
//! file names and LSNs line by line. The property is `wal_history` in
//! tests/fuzz_checks/wal.rs, shared with tests/fuzz_corpus.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_checks/wal.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::wal_history(data));
