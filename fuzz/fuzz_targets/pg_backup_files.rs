//! A base backup's `backup_label` and `backup_manifest`: `BackupLabel::parse`,
//! `Manifest::parse` and `Manifest::check`. The property is `pg_backup_files` in
//! tests/fuzz_checks/wal.rs, shared with tests/fuzz_corpus.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_checks/wal.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::pg_backup_files(data));
