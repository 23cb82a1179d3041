//! The header of an SQLite database: `sqlite::header::Header::parse`. The property is
//! `sqlite_header` in tests/fuzz_checks/sqlite.rs, shared with tests/fuzz_corpus.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_checks/sqlite.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::sqlite_header(data));
