//! The header of a pg_dump custom-format archive: `pg::dump::parse_header`. The property is
//! `pg_dump_header` in tests/fuzz_checks/pg_dump.rs, shared with tests/fuzz_corpus.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_checks/pg_dump.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::pg_dump_header(data));
