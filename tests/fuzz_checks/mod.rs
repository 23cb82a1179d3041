//! The property each fuzz target checks, one function per parser of stored bytes.
//!
//! This file is compiled twice: by every fuzz target (`fuzz/fuzz_targets/*.rs`, through
//! `#[path = "../../tests/fuzz_checks/mod.rs"] mod checks;`) and by the corpus replay
//! (`tests/fuzz_corpus.rs`), so what `cargo test` replays is exactly what the fuzzer ran.
//! It uses only `std` and `stowage`, so the fuzz workspace needs no other dependency.
//!
//! Each check takes arbitrary bytes and panics only when a property fails:
//! 1. No parser panics, whatever the input.
//! 2. Where a writer exists, whatever a parser accepts re-encodes to the same bytes (binary
//!    layouts) or decodes again to an equal value (JSON objects).
//! 3. Past the AEAD, the fuzzer's bytes still reach the code behind it: the checks seal the
//!    input themselves with the fixed test key, using the associated data the format
//!    specifies, and assert the seal is accepted. A failure there means the AAD in
//!    `formats/REPOSITORY.md` and in `src/repo/` have drifted from what is written here.
//!
//! Inputs that carry parameters read them from a fixed header (little-endian), documented
//! on each check; the seed generator in `tests/fuzz_corpus.rs` writes the same layout.

#![allow(dead_code)]

use std::cell::RefCell;
use std::sync::OnceLock;

use stowage::repo::blob::{self, BlobError, BlobKind, Sealer, COMPRESSION_NONE};
use stowage::repo::config::Config;
use stowage::repo::crypto::{CipherKind, Keys, MasterKey, MASTER_LEN};
use stowage::repo::id::{BlobId, RepoId, ID_LEN};
use stowage::repo::index;
use stowage::repo::keyfile::KeyFile;
use stowage::repo::pack::{self, LayoutError, PackEntry, PACK_MAGIC};
use stowage::repo::sealed::{self, SealedError};
use stowage::repo::snapshot::Snapshot;
use stowage::repo::tree::Tree;
use stowage::repo::wal;

/// A target's property: panics when `data` breaks it.
pub type Check = fn(data: &[u8]);

/// Every target, by the name of its corpus directory, with its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("pack_trailer", pack_trailer),
    ("index", index),
    ("sealed", sealed),
    ("snapshot", snapshot),
    ("config", config),
    ("key_file", key_file),
];

/// The master key every check seals and opens with.
pub const MASTER: [u8; MASTER_LEN] = [7; MASTER_LEN];
/// The passphrase key-file inputs are unwrapped with.
pub const PASSPHRASE: &[u8] = b"stowage fuzz passphrase";
/// The repository key-file inputs are checked against.
pub const REPO: RepoId = RepoId([0x5a; ID_LEN]);
/// The hash of the `config` object key-file inputs are checked against.
pub const CONFIG_HASH: [u8; ID_LEN] = [0xc0; ID_LEN];
/// Associated data of the sealed objects (`formats/REPOSITORY.md`).
pub const INDEX_LABEL: &[u8] = b"stowage index";
pub const SNAPSHOT_LABEL: &[u8] = b"stowage snapshot";
pub const TRAILER_AAD: &[u8] = b"stowage pack trailer";
pub const BLOB_AAD_PREFIX: &[u8] = b"stowage blob";
/// Largest `raw_len` a `sealed` input may ask `open_blob` for: it allocates that much
/// before decompressing, and the real value comes from an authenticated index.
pub const MAX_FUZZ_RAW_LEN: u32 = 1 << 20;
/// Largest blob area a `pack_trailer` input gets a real pack built around.
pub const MAX_FUZZ_PADDING: u32 = 1 << 16;
/// Key-file inputs are unwrapped only at or under this Argon2 cost, to stay fast.
pub const MAX_FUZZ_KDF_MEMORY_KIB: u32 = 64;
pub const MAX_FUZZ_KDF_ITERATIONS: u32 = 2;

/// The fixed keys (AES-256-GCM) derived from [`MASTER`].
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys::derive(&MasterKey::from_bytes(MASTER), CipherKind::Aes256Gcm))
}

thread_local! {
    static SEALER: RefCell<Sealer> = RefCell::new(
        Sealer::new(keys().clone(), 3).expect("zstd accepts level 3"),
    );
}

/// Associated data of a sealed blob: "stowage blob" || Kind || BlobId.
pub fn blob_aad(kind: BlobKind, id: &BlobId) -> Vec<u8> {
    let mut aad = BLOB_AAD_PREFIX.to_vec();
    aad.push(kind as u8);
    aad.extend_from_slice(id.as_bytes());
    aad
}

/// Splits a leading little-endian u32 off `data` (missing bytes read as zero).
pub fn split_u32(data: &[u8]) -> (u32, &[u8]) {
    let mut head = [0u8; 4];
    let n = data.len().min(4);
    head[..n].copy_from_slice(&data[..n]);
    (u32::from_le_bytes(head), &data[n..])
}

/// `pack_trailer` input: `BlobArea (u32 LE) || Trailer`, and the whole input as a pack.
///
/// 1. The whole input through `read_pack_trailer`, as a pack read from the store.
/// 2. `Trailer` through `decode_trailer(Trailer, BlobArea)`: accepted entries lie inside
///    the area and re-encode to `Trailer`.
/// 3. A pack built around `Trailer` (magic, `min(BlobArea, 64 KiB)` zero bytes, the trailer
///    sealed with the fixed key) reads back as `decode_trailer` says it should.
pub fn pack_trailer(data: &[u8]) {
    let keys = keys();
    if let Ok(entries) = pack::read_pack_trailer(keys, data) {
        let blob_end = (data.len() - 4) as u64;
        assert_entries_inside(&entries, PACK_MAGIC.len() as u64, blob_end);
    }

    let (area, trailer) = split_u32(data);
    if let Ok(entries) = pack::decode_trailer(trailer, u64::from(area)) {
        let end = PACK_MAGIC.len() as u64 + u64::from(area);
        assert_entries_inside(&entries, PACK_MAGIC.len() as u64, end);
        assert_eq!(
            pack::encode_trailer(&entries),
            trailer,
            "trailer does not re-encode"
        );
        assert_eq!(
            pack::decode_trailer(&pack::encode_trailer(&entries), u64::from(area)),
            Ok(entries)
        );
    }

    let padding = area.min(MAX_FUZZ_PADDING);
    let mut built = PACK_MAGIC.to_vec();
    built.resize(PACK_MAGIC.len() + padding as usize, 0);
    let sealed_trailer = keys.cipher().seal(trailer, TRAILER_AAD);
    built.extend_from_slice(&sealed_trailer);
    built.extend_from_slice(&(sealed_trailer.len() as u32).to_le_bytes());
    let read = pack::read_pack_trailer(keys, &built);
    assert!(
        !matches!(read, Err(LayoutError::Auth(_))),
        "a trailer sealed with AAD {TRAILER_AAD:?} was refused: has the format changed?"
    );
    assert_eq!(read, pack::decode_trailer(trailer, u64::from(padding)));
}

fn assert_entries_inside(entries: &[PackEntry], start: u64, end: u64) {
    for e in entries {
        let offset = u64::from(e.offset);
        assert!(
            offset >= start && offset + u64::from(e.sealed_len) <= end,
            "accepted entry {e:?} lies outside {start}..{end}"
        );
    }
}

/// `index` input: the plaintext of an index file. Whatever `decode_index` accepts
/// re-encodes to the same bytes and has every entry inside its pack.
pub fn index(data: &[u8]) {
    if let Ok(packs) = index::decode_index(data) {
        for p in &packs {
            assert_entries_inside(&p.entries, 0, p.len);
        }
        assert_eq!(
            index::encode_index(&packs),
            data,
            "index does not re-encode"
        );
    }
}

/// One `sealed` input read as a blob: `Kind (u8) || BlobId (32) || RawLen (u32 LE) || Rest`.
/// Short inputs leave `Rest` empty; `Kind` is taken modulo 2, and `RawLen` modulo
/// [`MAX_FUZZ_RAW_LEN`] + 1.
pub struct BlobInput<'a> {
    pub kind: BlobKind,
    pub id: BlobId,
    pub raw_len: usize,
    pub rest: &'a [u8],
}

pub const BLOB_HEADER_LEN: usize = 1 + ID_LEN + 4;

impl<'a> BlobInput<'a> {
    pub fn parse(data: &'a [u8]) -> Self {
        let mut header = [0u8; BLOB_HEADER_LEN];
        let n = data.len().min(BLOB_HEADER_LEN);
        header[..n].copy_from_slice(&data[..n]);
        let kind = if header[0] & 1 == 0 {
            BlobKind::Data
        } else {
            BlobKind::Tree
        };
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&header[1..1 + ID_LEN]);
        let (raw_len, _) = split_u32(&header[1 + ID_LEN..]);
        BlobInput {
            kind,
            id: BlobId(id),
            raw_len: (raw_len % (MAX_FUZZ_RAW_LEN + 1)) as usize,
            rest: &data[n..],
        }
    }

    /// The header for `kind`, `id` and `raw_len`, to be followed by `Rest`.
    pub fn header(kind: BlobKind, id: &BlobId, raw_len: u32) -> Vec<u8> {
        let mut out = vec![kind as u8];
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&raw_len.to_le_bytes());
        out
    }
}

/// `sealed` input: a stored metadata file, and a stored blob as laid out in [`BlobInput`].
///
/// 1. The whole input through `open_file` (index and snapshot labels), `Rest` through
///    `open_blob` and `open_blob_bytes`: never a panic, and the two agree.
/// 2. The input (for `open_file`) and `Rest` (for `open_blob`) as the envelope behind a
///    seal made here, so the compression tag, zstd and the length and id checks see them.
/// 3. Round trips through the writers: `seal_file` then `open_file`, `Sealer::seal` then
///    `open_blob`, give the input back, and the wrong label or kind is refused.
pub fn sealed(data: &[u8]) {
    let keys = keys();
    for label in [INDEX_LABEL, SNAPSHOT_LABEL] {
        let _ = sealed::open_file(keys, label, data);
    }
    let blob = BlobInput::parse(data);
    let _ = open_blob(blob.kind, &blob.id, blob.rest, blob.raw_len);

    let envelope = keys.cipher().seal(data, INDEX_LABEL);
    match sealed::open_file(keys, INDEX_LABEL, &envelope) {
        Err(SealedError::Auth(_)) => panic!("a file sealed with AAD {INDEX_LABEL:?} was refused"),
        Ok(plain) if data.first() == Some(&COMPRESSION_NONE) => assert_eq!(plain, data[1..]),
        Ok(_) | Err(_) => {}
    }
    let envelope = keys
        .cipher()
        .seal(blob.rest, &blob_aad(blob.kind, &blob.id));
    match open_blob(blob.kind, &blob.id, &envelope, blob.raw_len) {
        Err(BlobError::Auth { .. }) => {
            panic!("a blob sealed with AAD {BLOB_AAD_PREFIX:?} || kind || id was refused")
        }
        Ok(plain) => {
            assert_eq!(plain.len(), blob.raw_len);
            assert_eq!(keys.blob_id(&plain), blob.id);
        }
        Err(_) => {}
    }

    let stored = sealed::seal_file(keys, SNAPSHOT_LABEL, data);
    assert_eq!(
        sealed::open_file(keys, SNAPSHOT_LABEL, &stored).expect("own seal opens"),
        data
    );
    assert!(sealed::open_file(keys, INDEX_LABEL, &stored).is_err());
    let id = keys.blob_id(data);
    let stored = SEALER.with(|s| s.borrow_mut().seal(blob.kind, &id, data));
    assert_eq!(
        open_blob(blob.kind, &id, &stored, data.len()).expect("own blob opens"),
        data
    );
    let other = if blob.kind == BlobKind::Data {
        BlobKind::Tree
    } else {
        BlobKind::Data
    };
    assert!(open_blob(other, &id, &stored, data.len()).is_err());
    group(keys, data);
    wal_object(keys, data);
}

/// Groups (`formats/REPOSITORY.md` §7): the input as a sealed group and as a group's
/// plaintext behind the right AAD (so the member table parser sees fuzzer bytes), and
/// `seal_group` of the input cut into members round trips, member by member.
fn group(keys: &Keys, data: &[u8]) {
    let asked = BlobId([1; ID_LEN]);
    let mut raw = data.to_vec();
    let _ = blob::open_group(keys, &asked, &mut raw);
    let mut envelope = keys.cipher().seal(data, b"stowage group");
    match blob::open_group(keys, &asked, &mut envelope) {
        Err(BlobError::Auth { .. }) => {
            panic!("a group sealed with AAD \"stowage group\" was refused")
        }
        Ok(group) => {
            for id in group.ids().copied().collect::<Vec<_>>() {
                let _ = group.member(keys, &id, 8192);
            }
        }
        Err(_) => {}
    }
    let members: Vec<(BlobId, &[u8])> = data
        .chunks(1 + data.len() / 4)
        .map(|c| (keys.blob_id(c), c))
        .collect();
    if members.is_empty() {
        return;
    }
    let mut sealed = SEALER.with(|s| s.borrow_mut().seal_group(&members));
    let opened = blob::open_group(keys, &members[0].0, &mut sealed).expect("own group opens");
    for (id, bytes) in &members {
        let member = opened
            .member(keys, id, bytes.len())
            .expect("own member opens");
        assert_eq!(member, *bytes);
    }
}

/// WAL objects (`formats/REPOSITORY.md` §21): `open_wal` on the raw input and on the
/// input sealed with the right AAD (so the header and body checks see fuzzer bytes), and
/// `seal_wal` round trips, bound to its cluster and name.
fn wal_object(keys: &Keys, data: &[u8]) {
    const CLUSTER: &str = "main";
    const NAME: &str = "000000010000000000000003";
    let _ = wal::open_wal(keys, CLUSTER, NAME, data);
    let envelope = keys
        .cipher()
        .seal(data, format!("stowage wal\0{CLUSTER}/{NAME}").as_bytes());
    if let Ok(raw) = wal::open_wal(keys, CLUSTER, NAME, &envelope) {
        assert!(raw.len() as u64 <= wal::MAX_WAL_FILE_LEN);
    }
    let stored = wal::seal_wal(keys, 1, CLUSTER, NAME, data);
    assert_eq!(
        wal::open_wal(keys, CLUSTER, NAME, &stored).expect("own WAL object opens"),
        data
    );
    assert!(wal::open_wal(keys, CLUSTER, "000000010000000000000004", &stored).is_err());
}

/// `open_blob` and `open_blob_bytes` (both over `open_blob_in_place`) on the same bytes:
/// they agree, byte for byte or error for error. Returns `open_blob`'s answer.
fn open_blob(
    kind: BlobKind,
    id: &BlobId,
    stored: &[u8],
    raw_len: usize,
) -> Result<Vec<u8>, BlobError> {
    let keys = keys();
    let copied = blob::open_blob(keys, kind, id, stored, raw_len);
    let owned = blob::open_blob_bytes(keys, kind, id, stored.to_vec().into(), raw_len);
    match (&copied, &owned) {
        (Ok(a), Ok(b)) => assert_eq!(a[..], b[..], "open_blob and open_blob_bytes disagree"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("open_blob gave {copied:?}, open_blob_bytes {owned:?}"),
    }
    copied
}

/// `snapshot` input: JSON for `Snapshot::decode` and `Tree::decode`. Whatever either
/// accepts decodes again, from its own encoding, to an equal value.
pub fn snapshot(data: &[u8]) {
    if let Ok(snap) = Snapshot::decode(data) {
        let again = Snapshot::decode(&snap.encode()).expect("re-encoded snapshot decodes");
        assert_eq!(again, snap);
    }
    if let Ok(tree) = Tree::decode(data) {
        for node in &tree.nodes {
            let _ = node.os_name();
            let _ = node.os_target();
        }
        let again = Tree::decode(&tree.encode()).expect("re-encoded tree decodes");
        assert_eq!(again, tree);
    }
}

/// `config` input: the `config` object. Whatever `Config::decode` accepts decodes again,
/// from its own encoding, to an equal value.
pub fn config(data: &[u8]) {
    if let Ok(config) = Config::decode(data) {
        assert_eq!(Config::decode(&config.encode()), Ok(config));
    }
}

/// `key_file` input: a key file. Whatever `KeyFile::decode` accepts decodes again, from
/// its own encoding, to an equal value; cheap ones are unwrapped with [`PASSPHRASE`]
/// for [`REPO`] and [`CONFIG_HASH`] (never a panic; success only with the fixed master key).
pub fn key_file(data: &[u8]) {
    let Ok(file) = KeyFile::decode(data) else {
        return;
    };
    let again = KeyFile::decode(&file.encode()).expect("re-encoded key file decodes");
    assert_eq!(again, file);
    if file.kdf.memory_kib <= MAX_FUZZ_KDF_MEMORY_KIB
        && file.kdf.iterations <= MAX_FUZZ_KDF_ITERATIONS
    {
        if let Ok(master) = file.unwrap_key(PASSPHRASE, REPO, CONFIG_HASH) {
            assert_eq!(
                master.as_bytes(),
                &MASTER,
                "unwrapped a master key no seed wrapped"
            );
        }
    }
}
