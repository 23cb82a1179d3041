//! Replays the fuzz corpus on the stable toolchain, through the fuzz targets' own checks.
//!
//! Every file under `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes through
//! the check in `tests/fuzz_checks/mod.rs` that `cargo fuzz run <target>` runs, so an input
//! the fuzzer once found interesting (or once crashed on) keeps being tested by plain
//! `cargo test`, without nightly or libFuzzer. Each target must replay at least one input.
//!
//! The seeds (valid objects made by the library's own writers) are built here too and
//! checked on every run; `STOWAGE_WRITE_SEEDS=1 cargo test --test fuzz_corpus` also writes
//! them to `fuzz/corpus/<target>/seed-*` (see `fuzz/README.md`).

#[path = "fuzz_checks/mod.rs"]
mod checks;
#[path = "fuzz_checks/pg_dump.rs"]
mod pg_dump_checks;
#[path = "fuzz_checks/sqlite.rs"]
mod sqlite_checks;
#[path = "fuzz_checks/vault.rs"]
mod vault_checks;
#[path = "fuzz_checks/wal.rs"]
mod wal_checks;

use std::path::{Path, PathBuf};

use stowage::repo::blob::{BlobKind, Sealer, COMPRESSION_NONE, COMPRESSION_ZSTD};
use stowage::repo::config::{ChunkerAlgorithm, ChunkerParams, Config, FORMAT_VERSION};
use stowage::repo::crypto::{CipherKind, MasterKey};
use stowage::repo::id::{BlobId, PackId, RepoId};
use stowage::repo::index::{encode_index, IndexPack};
use stowage::repo::keyfile::KeyFile;
use stowage::repo::pack::{encode_trailer, PackBuilder, PackEntry, ENTRY_LEN};
use stowage::repo::sealed::seal_file;
use stowage::repo::snapshot::{Snapshot, SnapshotStats, SNAPSHOT_VERSION};
use stowage::repo::tree::{Node, NodeKind, Tree};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Runs `check` on every file in `corpus/<target>` and `regressions/<target>`; returns how
/// many ran, or panics naming every file whose check failed.
fn replay(target: &str, check: checks::Check) -> usize {
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let dir = fuzz_dir().join(dir).join(target);
        let Ok(listing) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in listing {
            let path = entry.expect("readable corpus directory").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("readable corpus file");
            std::panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: checks failed on {failed:#?}");
    files.len()
}

macro_rules! replay_tests {
    ($($name:ident => $target:literal,)*) => {$(
        #[test]
        fn $name() {
            let check = checks::TARGETS
                .iter()
                .find(|(name, _)| *name == $target)
                .map(|(_, check)| *check)
                .expect("target is listed in fuzz_checks::TARGETS");
            let n = replay($target, check);
            assert!(n > 0, "fuzz/corpus/{} holds no input", $target);
        }
    )*};
}

replay_tests! {
    replay_pack_trailer => "pack_trailer",
    replay_index => "index",
    replay_sealed => "sealed",
    replay_snapshot => "snapshot",
    replay_config => "config",
    replay_key_file => "key_file",
}

/// The WAL targets' checks live in `fuzz_checks/wal.rs`. Their seeds are files (real
/// segments from PostgreSQL 15, written by `STOWAGE_WRITE_SEEDS=1 cargo test --lib
/// real_wal`, and text files), not built here.
fn replay_wal(target: &str) {
    let check = wal_checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, check)| *check)
        .expect("target is listed in fuzz_checks/wal.rs");
    let n = replay(target, check);
    assert!(n > 0, "fuzz/corpus/{target} holds no input");
}

#[test]
fn replay_wal_segment() {
    replay_wal("wal_segment");
}

#[test]
fn replay_wal_history() {
    replay_wal("wal_history");
}

/// The dump header's seeds are the first bytes of real pg_dump 15 output (`-Fc -Z0`,
/// `-Fc -Z6`, and `-Fp`, which must be refused), not built here.
#[test]
fn replay_pg_dump_header() {
    let (target, check) = pg_dump_checks::TARGETS[0];
    let n = replay(target, check);
    assert!(n > 0, "fuzz/corpus/{target} holds no input");
}

/// The Vault snapshot's seeds are made by stowage's own snapshot writer (`SnapWriter`):
/// written with `STOWAGE_WRITE_SEEDS=1` by [`vault_seeds`], and checked on every run.
#[test]
fn replay_vault_snapshot() {
    let (target, check) = vault_checks::TARGETS[0];
    let n = replay(target, check);
    assert!(n > 0, "fuzz/corpus/{target} holds no input");
}

/// Small snapshots in raft's format: sealed and not, SHA256SUMS in either order, and two
/// that must be refused (a flipped state.bin byte, a stray member).
#[test]
fn vault_seeds() {
    use stowage::vault::rebuild::SnapWriter;
    use stowage::vault::sums::sha256;
    use stowage::vault::{Member, MemberName, Sha256Sums};
    let state = pattern(3000, 11);
    let meta = format!(
        "{{\"Version\":1,\"ID\":\"2-90-1764115200000\",\"Index\":90,\"Term\":2,\"Configuration\":{{\"Servers\":[{{\"Suffrage\":0,\"ID\":\"v0\",\"Address\":\"10.0.0.1:8201\"}}]}},\"ConfigurationIndex\":1,\"Size\":{}}}\n",
        state.len()
    )
    .into_bytes();
    let sums = Sha256Sums {
        meta: sha256(&meta),
        state: sha256(&state),
    };
    let member = |name, size: usize| Member {
        name,
        mode: 0o600,
        mtime: 1_764_115_200,
        size: size as u64,
    };
    let build = |sums_raw: &[u8], sealed: Option<&[u8]>| {
        let mut writer = SnapWriter::new(Vec::new(), sums.clone());
        let mut members: Vec<(Member, &[u8])> = vec![
            (member(MemberName::Meta, meta.len()), &meta),
            (member(MemberName::State, state.len()), &state),
            (member(MemberName::Sums, sums_raw.len()), sums_raw),
        ];
        if let Some(sealed) = sealed {
            members.push((member(MemberName::SealedSums, sealed.len()), sealed));
        }
        for (m, data) in members {
            writer.begin(&m).unwrap();
            writer.write(data).unwrap();
        }
        writer.finish().unwrap()
    };
    let plain = build(&sums.encode(), None);
    let reversed = format!(
        "{}  state.bin\n{}  meta.json\n",
        hex::encode(sums.state),
        hex::encode(sums.meta)
    );
    let sealed = build(reversed.as_bytes(), Some(&pattern(200, 5)));
    // A flipped byte deep in the compressed stream: the gzip CRC or SHA256SUMS refuses it.
    let mut flipped = plain.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x01;
    let seeds = [
        ("plain", plain),
        ("sealed-reversed-sums", sealed),
        ("flipped", flipped),
    ];
    let (target, check) = vault_checks::TARGETS[0];
    let write = std::env::var_os("STOWAGE_WRITE_SEEDS").is_some_and(|v| v == "1");
    for (name, data) in &seeds {
        let outcome = std::panic::catch_unwind(|| check(data));
        assert!(outcome.is_ok(), "{target}: seed {name} fails its check");
        if write {
            let dir = fuzz_dir().join("corpus").join(target);
            std::fs::create_dir_all(&dir).expect("corpus directory");
            std::fs::write(dir.join(format!("seed-{name}")), data).expect("seed written");
        }
    }
}

/// The SQLite header's seeds are the first bytes of databases made by the sqlite3 shell
/// (WAL mode with 4 KiB pages, rollback mode with 64 KiB pages) and a cut header.
#[test]
fn replay_sqlite_header() {
    let (target, check) = sqlite_checks::TARGETS[0];
    let n = replay(target, check);
    assert!(n > 0, "fuzz/corpus/{target} holds no input");
}

#[test]
fn replay_pg_backup_files() {
    replay_wal("pg_backup_files");
}

#[test]
fn every_target_has_a_replay_test_and_a_fuzz_target() {
    assert_eq!(
        pg_dump_checks::TARGETS.len(),
        1,
        "add a replay test for the new dump target"
    );
    assert_eq!(
        vault_checks::TARGETS.len(),
        1,
        "add a replay test for the new Vault target"
    );
    assert_eq!(
        sqlite_checks::TARGETS.len(),
        1,
        "add a replay test for the new SQLite target"
    );
    for (target, _) in wal_checks::TARGETS
        .iter()
        .chain(pg_dump_checks::TARGETS)
        .chain(vault_checks::TARGETS)
        .chain(sqlite_checks::TARGETS)
    {
        let source = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
        assert!(source.is_file(), "{} is missing", source.display());
    }
    assert_eq!(
        wal_checks::TARGETS.len(),
        3,
        "add a replay_wal test for the new WAL target"
    );
    for (target, _) in checks::TARGETS {
        let source = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
        assert!(source.is_file(), "{} is missing", source.display());
    }
    assert_eq!(
        checks::TARGETS.len(),
        6,
        "add a replay_tests! line for the new target"
    );
}

/// Seeds pass their own checks; with `STOWAGE_WRITE_SEEDS=1` they are written out too.
#[test]
fn seeds() {
    let write = std::env::var_os("STOWAGE_WRITE_SEEDS").is_some_and(|v| v == "1");
    for (target, check) in checks::TARGETS {
        let seeds = seeds_for(target);
        assert!(!seeds.is_empty(), "{target} has no seed");
        for (name, data) in &seeds {
            let outcome = std::panic::catch_unwind(|| check(data));
            assert!(outcome.is_ok(), "{target}: seed {name} fails its check");
        }
        if write {
            let dir = fuzz_dir().join("corpus").join(target);
            std::fs::create_dir_all(&dir).expect("corpus directory");
            for (name, data) in &seeds {
                std::fs::write(dir.join(format!("seed-{name}")), data).expect("seed written");
            }
        }
    }
}

fn seeds_for(target: &str) -> Vec<(&'static str, Vec<u8>)> {
    match target {
        "pack_trailer" => pack_trailer_seeds(),
        "index" => index_seeds(),
        "sealed" => sealed_seeds(),
        "snapshot" => snapshot_seeds(),
        "config" => config_seeds(),
        "key_file" => key_file_seeds(),
        other => panic!("no seeds for {other}"),
    }
}

/// Deterministic pseudo-random bytes (xorshift), so seeds do not depend on the clock.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn entries(n: usize, first_offset: u32) -> Vec<PackEntry> {
    let mut offset = first_offset;
    (0..n)
        .map(|i| {
            let sealed_len = 29 + i as u32 * 7;
            let entry = PackEntry {
                kind: if i % 2 == 0 {
                    BlobKind::Data
                } else {
                    BlobKind::Tree
                },
                id: BlobId(pattern(32, i as u64 + 1).try_into().expect("32 bytes")),
                offset,
                sealed_len,
                raw_len: sealed_len * 3,
            };
            offset += sealed_len;
            entry
        })
        .collect()
}

fn pack_trailer_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let keys = checks::keys();
    let with_area = |area: u32, trailer: Vec<u8>| {
        let mut out = area.to_le_bytes().to_vec();
        out.extend_from_slice(&trailer);
        out
    };
    let three = entries(3, 8);
    let area: u32 = three.iter().map(|e| e.sealed_len).sum();
    let mut sealer = Sealer::new(keys.clone(), 3).expect("zstd level 3");
    let mut builder = PackBuilder::new(1024);
    for (i, plain) in [b"hello".to_vec(), b"abc".repeat(300), pattern(200, 9)]
        .iter()
        .enumerate()
    {
        let kind = if i == 1 {
            BlobKind::Tree
        } else {
            BlobKind::Data
        };
        let id = keys.blob_id(plain);
        builder.add(kind, id, plain.len() as u32, &sealer.seal(kind, &id, plain));
    }
    let (pack, _) = builder.finish(keys);
    let (empty_pack, _) = PackBuilder::new(16).finish(keys);
    vec![
        ("empty-trailer", with_area(0, encode_trailer(&[]))),
        ("one-entry", with_area(100, encode_trailer(&entries(1, 8)))),
        (
            "three-entries-exact-area",
            with_area(area, encode_trailer(&three)),
        ),
        (
            "entry-one-past-area",
            with_area(area - 1, encode_trailer(&three)),
        ),
        ("pack", pack),
        ("empty-pack", empty_pack),
    ]
}

fn index_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let pack = |n: usize, len: u64, fill: u8| IndexPack {
        id: PackId([fill; 32]),
        len,
        entries: entries(n, 8),
    };
    let full = pack(4, 4096, 1);
    let exact_len = full
        .entries
        .last()
        .map(|e| u64::from(e.offset + e.sealed_len))
        .unwrap_or(0);
    vec![
        ("no-packs", encode_index(&[])),
        ("one-pack-no-entries", encode_index(&[pack(0, 12, 2)])),
        ("two-packs", encode_index(&[full.clone(), pack(1, 100, 3)])),
        ("pack-len-exact", encode_index(&[pack(4, exact_len, 4)])),
        (
            "pack-len-one-short",
            encode_index(&[pack(4, exact_len - 1, 5)]),
        ),
        ("bad-version", {
            let mut raw = encode_index(&[full]);
            raw[0] = 2;
            raw
        }),
    ]
}

fn sealed_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let keys = checks::keys();
    let mut sealer = Sealer::new(keys.clone(), 3).expect("zstd level 3");
    let small_index = encode_index(&[IndexPack {
        id: PackId([1; 32]),
        len: 1000,
        entries: entries(3, 8),
    }]);
    let big_index = encode_index(&[IndexPack {
        id: PackId([2; 32]),
        len: 1 << 20,
        entries: entries(120, 8),
    }]);
    let snapshot = snapshot_value().encode();
    // A stored blob as read from a pack: header || sealed blob.
    let stored_blob = |kind: BlobKind, plain: &[u8], sealer: &mut Sealer| {
        let id = keys.blob_id(plain);
        let mut out = checks::BlobInput::header(kind, &id, plain.len() as u32);
        out.extend_from_slice(&sealer.seal(kind, &id, plain));
        out
    };
    // header || envelope: the check seals the envelope itself, so this reaches zstd.
    let envelope_blob = |kind: BlobKind, plain: &[u8], compress: bool| {
        let id = keys.blob_id(plain);
        let mut out = checks::BlobInput::header(kind, &id, plain.len() as u32);
        if compress {
            out.push(COMPRESSION_ZSTD);
            out.extend_from_slice(&zstd::bulk::compress(plain, 3).expect("zstd compresses"));
        } else {
            out.push(COMPRESSION_NONE);
            out.extend_from_slice(plain);
        }
        out
    };
    let text = b"stowage fuzz seed ".repeat(100);
    let mut zstd_envelope = vec![COMPRESSION_ZSTD];
    zstd_envelope.extend_from_slice(&zstd::bulk::compress(&big_index, 3).expect("zstd compresses"));
    vec![
        (
            "index-file",
            seal_file(keys, checks::INDEX_LABEL, &small_index),
        ),
        (
            "index-file-zstd",
            seal_file(keys, checks::INDEX_LABEL, &big_index),
        ),
        (
            "snapshot-file",
            seal_file(keys, checks::SNAPSHOT_LABEL, &snapshot),
        ),
        ("envelope-zstd", zstd_envelope),
        (
            "blob-data",
            stored_blob(BlobKind::Data, &pattern(300, 3), &mut sealer),
        ),
        (
            "blob-tree-zstd",
            stored_blob(BlobKind::Tree, &tree_value().encode(), &mut sealer),
        ),
        ("blob-empty", stored_blob(BlobKind::Data, b"", &mut sealer)),
        (
            "envelope-blob-none",
            envelope_blob(BlobKind::Data, &pattern(64, 4), false),
        ),
        (
            "envelope-blob-zstd",
            envelope_blob(BlobKind::Tree, &text, true),
        ),
    ]
}

fn time(secs: i64, nanos: u32) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(secs, nanos).expect("valid timestamp")
}

fn snapshot_value() -> Snapshot {
    let source = serde_json::json!({
        "start_lsn": "0/2000028",
        "timeline": 1,
        "ratio": 0.25,
        "nested": { "list": [1, -2, "three", null, true] },
    });
    Snapshot {
        version: SNAPSHOT_VERSION,
        kind: "files".into(),
        name: "/srv/data".into(),
        host: "db1".into(),
        user: "postgres".into(),
        tags: vec!["nightly".into(), "ünïcode".into()],
        paths: vec!["/srv/data".into(), "/etc/stowage".into()],
        start: time(1_700_000_000, 123_456_789),
        end: time(1_700_000_060, 0),
        tree: BlobId([0xab; 32]),
        stats: SnapshotStats {
            files: 10,
            dirs: 2,
            symlinks: 1,
            skipped: 0,
            bytes_read: 1 << 20,
            bytes_new: 4096,
            bytes_stored: 2048,
            blobs: 12,
            blobs_new: 3,
        },
        source: source.as_object().cloned().expect("an object"),
    }
}

fn tree_value() -> Tree {
    let node = |name: &str, kind: NodeKind| Node {
        mode: 0o644,
        mtime_ns: 1_700_000_000_123_456_789,
        uid: 1000,
        gid: 1000,
        ..Node::new(name.as_bytes(), kind)
    };
    let (lossy, hex) = stowage::repo::tree::text_and_hex(b"caf\xe9".to_vec());
    Tree {
        nodes: vec![
            Node {
                size: 5000,
                content: vec![BlobId([1; 32]), BlobId([2; 32])],
                ..node("a.txt", NodeKind::File)
            },
            Node {
                name_hex: hex,
                ..node(&lossy, NodeKind::File)
            },
            Node {
                mode: 0o755,
                subtree: Some(BlobId([3; 32])),
                ..node("dir", NodeKind::Dir)
            },
            Node {
                target: Some("../a.txt".into()),
                ..node("link", NodeKind::Symlink)
            },
        ],
    }
}

fn snapshot_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut minimal = snapshot_value();
    minimal.source.clear();
    minimal.tags.clear();
    minimal.paths.clear();
    vec![
        ("snapshot", snapshot_value().encode()),
        ("snapshot-minimal", minimal.encode()),
        ("tree", tree_value().encode()),
        ("tree-empty", Tree::default().encode()),
    ]
}

fn config_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let config = Config {
        version: FORMAT_VERSION,
        id: RepoId([0x11; 32]),
        created: time(1_700_000_000, 5),
        cipher: CipherKind::Aes256Gcm,
        chunker: ChunkerParams::default(),
        compression_level: 3,
        pack_target_bytes: 16 << 20,
    };
    let edges = Config {
        cipher: CipherKind::XChaCha20Poly1305,
        chunker: ChunkerParams {
            algorithm: ChunkerAlgorithm::FastCdc2020,
            min_bytes: 64,
            avg_bytes: 256,
            max_bytes: 1024,
        },
        compression_level: 22,
        pack_target_bytes: 1 << 30,
        ..config.clone()
    };
    let compact = serde_json::to_vec(&config).expect("config serializes");
    vec![
        ("default", config.encode()),
        ("edges", edges.encode()),
        ("compact", compact),
        ("version-only", br#"{"version":1}"#.to_vec()),
    ]
}

fn key_file_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let master = MasterKey::from_bytes(checks::MASTER);
    let wrap = |repo: RepoId, config_hash: [u8; 32], passphrase: &[u8], memory_kib, iterations| {
        let file = KeyFile::wrap(
            &master,
            repo,
            config_hash,
            passphrase,
            memory_kib,
            iterations,
        )
        .expect("key wraps");
        // Not this machine's names: seeds are committed.
        KeyFile {
            created: time(1_700_000_000, 0),
            host: "db1".into(),
            user: "postgres".into(),
            ..file
        }
        .encode()
    };
    let (repo, hash, passphrase) = (checks::REPO, checks::CONFIG_HASH, checks::PASSPHRASE);
    vec![
        ("opens", wrap(repo, hash, passphrase, 64, 1)),
        ("two-iterations", wrap(repo, hash, passphrase, 8, 2)),
        (
            "foreign-repository",
            wrap(RepoId([1; 32]), hash, passphrase, 16, 1),
        ),
        ("config-modified", wrap(repo, [0; 32], passphrase, 16, 1)),
        (
            "wrong-passphrase",
            wrap(repo, hash, b"another passphrase", 64, 1),
        ),
        ("too-costly-to-open", wrap(repo, hash, passphrase, 128, 3)),
    ]
}

#[test]
fn seed_layouts_are_what_the_checks_read() {
    let id = BlobId([9; 32]);
    let mut raw = checks::BlobInput::header(BlobKind::Tree, &id, 77);
    raw.extend_from_slice(b"rest");
    let parsed = checks::BlobInput::parse(&raw);
    assert_eq!(
        (parsed.kind, parsed.id, parsed.raw_len, parsed.rest),
        (BlobKind::Tree, id, 77, &b"rest"[..])
    );
    assert_eq!(encode_trailer(&entries(2, 8)).len(), 4 + 2 * ENTRY_LEN);
}
