//! Raft snapshots made the way hashicorp/raft-snapshot makes them, without a Vault: a
//! `state.bin` shaped like Vault's FSM snapshot (storage entries in key order, each a
//! length-delimited protobuf `StorageEntry{key, value}` with a barrier-encrypted, so
//! random-looking, value), `meta.json` as Go's JSON encoder writes raft's `SnapshotMeta`,
//! `SHA256SUMS` in Go map order, all in a gzip-compressed ustar archive.
//!
//! Built with the `tar` and `flate2` crates directly, not with stowage's own writer, so
//! the tests check stowage against the format rather than against itself.
#![allow(dead_code)]

pub mod server;

use std::collections::BTreeMap;
use std::io::{Read, Write};

use sha2::{Digest, Sha256};

/// The time raft-snapshot stamps on every member (the time of the snapshot).
pub const MTIME: u64 = 1_764_115_200;

/// xorshift64*: deterministic bytes and choices.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// A Vault's storage: key → encrypted value.
pub struct VaultData {
    pub entries: BTreeMap<String, Vec<u8>>,
    rng: Rng,
    serial: u64,
}

/// Key prefixes of a Vault's storage, with how often each occurs.
const PREFIXES: [&str; 6] = [
    "logical/7f3c9a2e-4b1d-4e8a-9c6f-2d5b8e1a3c7f/secret/",
    "sys/expire/id/auth/token/create/",
    "sys/token/id/h",
    "sys/policy/",
    "core/",
    "logical/0b5e2d8c-9a4f-4c3b-8e1d-6f7a2c9b4e5d/kv/",
];

impl VaultData {
    /// About `bytes` of entries (values 100 B to 4 KiB, as secrets, leases and tokens).
    pub fn new(bytes: usize, seed: u64) -> VaultData {
        let mut data = VaultData {
            entries: BTreeMap::new(),
            rng: Rng::new(seed),
            serial: 0,
        };
        let mut total = 0;
        while total < bytes {
            total += data.insert();
        }
        data
    }

    fn insert(&mut self) -> usize {
        let prefix = PREFIXES[self.rng.below(PREFIXES.len() as u64) as usize];
        self.serial += 1;
        let key = format!("{prefix}{:016x}{}", self.rng.next(), self.serial);
        let len = 100 + self.rng.below(4000) as usize;
        let value = self.rng.bytes(len);
        let size = key.len() + len;
        self.entries.insert(key, value);
        size
    }

    /// A night of changes: `changed` entries rewritten (new ciphertext), `inserted` new ones
    /// and `deleted` gone, all at random places in the key space.
    pub fn churn(&mut self, changed: usize, inserted: usize, deleted: usize) {
        for _ in 0..changed {
            let at = self.rng.below(self.entries.len() as u64) as usize;
            let key = self.entries.keys().nth(at).cloned().unwrap();
            let len = self.entries[&key].len();
            let value = self.rng.bytes(len);
            self.entries.insert(key, value);
        }
        for _ in 0..inserted {
            self.insert();
        }
        for _ in 0..deleted {
            let at = self.rng.below(self.entries.len() as u64) as usize;
            let key = self.entries.keys().nth(at).cloned().unwrap();
            self.entries.remove(&key);
        }
    }

    /// The FSM snapshot: length-delimited `StorageEntry{1: key, 2: value}` in key order.
    pub fn state_bin(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (key, value) in &self.entries {
            let mut entry = Vec::with_capacity(key.len() + value.len() + 8);
            entry.push(0x0a);
            varint(&mut entry, key.len() as u64);
            entry.extend_from_slice(key.as_bytes());
            entry.push(0x12);
            varint(&mut entry, value.len() as u64);
            entry.extend_from_slice(value);
            varint(&mut out, entry.len() as u64);
            out.extend_from_slice(&entry);
        }
        out
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The members of one raft snapshot, as bytes; tamper with them after [`Snap::new`] to
/// make a snapshot whose SHA256SUMS no longer matches.
#[derive(Clone)]
pub struct Snap {
    pub meta: Vec<u8>,
    pub state: Vec<u8>,
    pub sums: Vec<u8>,
    pub sealed: Option<Vec<u8>>,
    /// Members raft-snapshot never writes (to test refusal).
    pub extra: Vec<(String, Vec<u8>)>,
}

impl Snap {
    pub fn new(state: Vec<u8>, index: u64, term: u64) -> Snap {
        let meta = format!(
            "{{\"Version\":1,\"ID\":\"{term}-{index}-1764115200000\",\"Index\":{index},\"Term\":{term},\
             \"Peers\":\"ka5wMTI3LjAuMC4xOjgyMDE=\",\"Configuration\":{{\"Servers\":[{{\"Suffrage\":0,\
             \"ID\":\"vault-0\",\"Address\":\"vault-0.vault-internal:8201\"}},{{\"Suffrage\":0,\
             \"ID\":\"vault-1\",\"Address\":\"vault-1.vault-internal:8201\"}}]}},\
             \"ConfigurationIndex\":42,\"Size\":{}}}\n",
            state.len()
        )
        .into_bytes();
        // Go map order: here state.bin first, unlike stowage's own encoder.
        let sums = format!(
            "{}  state.bin\n{}  meta.json\n",
            sha256_hex(&state),
            sha256_hex(&meta)
        )
        .into_bytes();
        Snap {
            meta,
            state,
            sums,
            sealed: None,
            extra: Vec::new(),
        }
    }

    /// With a `SHA256SUMS.sealed` (opaque bytes; only Vault's seal could open them).
    pub fn sealed(mut self) -> Snap {
        let mut sealed = b"\x0a\x20".to_vec();
        sealed.extend_from_slice(&Sha256::digest(&self.sums));
        sealed.extend_from_slice(&Rng::new(7).bytes(300));
        self.sealed = Some(sealed);
        self
    }

    /// The members in archive order, as (name, bytes).
    pub fn members(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = vec![
            ("meta.json".to_string(), self.meta.clone()),
            ("state.bin".to_string(), self.state.clone()),
            ("SHA256SUMS".to_string(), self.sums.clone()),
        ];
        if let Some(sealed) = &self.sealed {
            out.push(("SHA256SUMS.sealed".to_string(), sealed.clone()));
        }
        out.extend(self.extra.iter().cloned());
        out
    }

    /// The `.snap` file: gzip of a ustar archive, 0600 members stamped [`MTIME`].
    pub fn encode(&self) -> Vec<u8> {
        encode_members(&self.members())
    }
}

/// A `.snap` of the given members, in the given order.
pub fn encode_members(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    {
        let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gzip);
        for (name, data) in members {
            let mut header = tar::Header::new_ustar();
            header.set_path(name).unwrap();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_mtime(MTIME);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            tar.append(&header, &data[..]).unwrap();
        }
        let mut gzip = tar.into_inner().unwrap();
        gzip.flush().unwrap();
        gzip.finish().unwrap()
    }
}

/// A member of a `.snap` as read back with the `tar` crate.
#[derive(Debug, PartialEq, Eq)]
pub struct ReadMember {
    pub name: String,
    pub mode: u32,
    pub mtime: u64,
    pub data: Vec<u8>,
}

/// Unpacks a `.snap` (gzip, then tar) into its members in archive order.
pub fn decode(snap: &[u8]) -> Vec<ReadMember> {
    let gzip = flate2::read::MultiGzDecoder::new(snap);
    let mut archive = tar::Archive::new(gzip);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        assert_eq!(entry.header().entry_type(), tar::EntryType::Regular);
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push(ReadMember {
            name: String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
            mode: entry.header().mode().unwrap(),
            mtime: entry.header().mtime().unwrap(),
            data,
        });
    }
    out
}

/// Checks a `.snap` as raft-snapshot's reader does: every member known, SHA256SUMS lists
/// meta.json and state.bin with their true hashes. Returns the members.
pub fn verify_like_raft(snap: &[u8]) -> Result<Vec<ReadMember>, String> {
    let members = decode(snap);
    let mut hashes = BTreeMap::new();
    let mut sums = None;
    for m in &members {
        match m.name.as_str() {
            "meta.json" | "state.bin" => {
                hashes.insert(m.name.clone(), sha256_hex(&m.data));
            }
            "SHA256SUMS" => sums = Some(String::from_utf8(m.data.clone()).unwrap()),
            "SHA256SUMS.sealed" => {}
            other => return Err(format!("unexpected file {other:?} in snapshot")),
        }
    }
    let sums = sums.ok_or("no SHA256SUMS")?;
    let mut seen = 0;
    for line in sums.lines() {
        let (hash, name) = line.split_once("  ").ok_or("bad line")?;
        if hashes.get(name).map(String::as_str) != Some(hash) {
            return Err(format!("hash check failed for {name:?}"));
        }
        seen += 1;
    }
    if seen != 2 {
        return Err("file missing".into());
    }
    Ok(members)
}
