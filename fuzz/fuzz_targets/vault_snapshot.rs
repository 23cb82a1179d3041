//! A Vault raft snapshot offered to `backup vault`: `vault::archive::read_archive`, and
//! the rebuild that restore writes. The property is `vault_snapshot` in
//! tests/fuzz_checks/vault.rs, shared with tests/fuzz_corpus.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_checks/vault.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::vault_snapshot(data));
