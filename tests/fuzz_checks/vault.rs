//! The property the `vault_snapshot` fuzz target checks.
//!
//! Like `mod.rs` beside it, this file is compiled twice, by the fuzz target
//! (`fuzz/fuzz_targets/vault_snapshot.rs`, through `#[path]`) and by the corpus replay
//! (`tests/fuzz_corpus.rs`), so `cargo test` replays exactly what the fuzzer ran. It uses
//! only `std` and `stowage`.

#![allow(dead_code)]

use std::io::Read;

use stowage::vault::archive::{read_archive, MemberSink};
use stowage::vault::rebuild::SnapWriter;
use stowage::vault::{Member, MemberName, RaftMeta, Sha256Sums, VaultSnapshotError};

/// A target's property: panics when `data` breaks it.
pub type Check = fn(data: &[u8]);

/// The Vault targets, by the name of their corpus directory.
pub const TARGETS: &[(&str, Check)] = &[("vault_snapshot", vault_snapshot)];

/// Keeps every member (fuzz inputs are small).
#[derive(Default)]
struct Collect(Vec<(Member, Vec<u8>)>);

impl MemberSink for Collect {
    type Error = VaultSnapshotError;

    fn small(&mut self, member: &Member, data: &[u8]) -> Result<(), VaultSnapshotError> {
        self.0.push((member.clone(), data.to_vec()));
        Ok(())
    }

    fn state(&mut self, member: &Member, data: &mut dyn Read) -> Result<(), VaultSnapshotError> {
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes)
            .map_err(|source| VaultSnapshotError::Read {
                member: member.name,
                source,
            })?;
        self.0.push((member.clone(), bytes));
        Ok(())
    }
}

/// `vault_snapshot` input: a `.snap` stream offered to `backup vault`.
///
/// 1. `read_archive`, `Sha256Sums::parse` and `RaftMeta::parse` never panic.
/// 2. An accepted snapshot has meta.json, state.bin and SHA256SUMS, each once, state.bin
///    as long as meta.json's Size, and both hashes as SHA256SUMS lists them.
/// 3. Rebuilt in raft's member order with `SnapWriter` (what restore writes), it reads
///    back to the same members, bytes, modes and times.
pub fn vault_snapshot(data: &[u8]) {
    let _ = Sha256Sums::parse(data);
    let _ = RaftMeta::parse(data);
    let mut collected = Collect::default();
    let Ok(summary) = read_archive(data, &mut collected) else {
        return;
    };
    let mut members = collected.0;
    for required in [MemberName::Meta, MemberName::State, MemberName::Sums] {
        assert_eq!(
            members.iter().filter(|(m, _)| m.name == required).count(),
            1,
            "{required} not exactly once"
        );
    }
    let state = members
        .iter()
        .find(|(m, _)| m.name == MemberName::State)
        .map(|(_, d)| d.len() as u64);
    assert_eq!(state, Some(summary.meta.size), "state.bin length vs Size");
    members.sort_by_key(|(m, _)| m.name);
    let mut writer = SnapWriter::new(Vec::new(), summary.sums.clone());
    for (member, bytes) in &members {
        writer.begin(member).expect("accepted members begin");
        writer.write(bytes).expect("accepted members write");
    }
    let rebuilt = writer.finish().expect("an accepted snapshot rebuilds");
    let mut again = Collect::default();
    let summary_again = read_archive(&rebuilt[..], &mut again).expect("the rebuilt snapshot reads");
    again.0.sort_by_key(|(m, _)| m.name);
    assert_eq!(again.0, members, "members changed through a rebuild");
    assert_eq!(summary_again.meta, summary.meta);
}
