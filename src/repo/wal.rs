//! WAL archive objects: one sealed object per archived file, a sealed summary beside
//! each segment, and one record per cluster naming its system identifier.
//!
//! ```text
//! clusters/<cluster>                         ClusterRecord (sealed JSON)
//! wal/<cluster>/<TLI>/<file name>            WalObject
//! wal-index/<cluster>/<TLI>/<segment name>   SegmentSummary (sealed JSON)
//!
//! WalObject = Nonce || AEAD( Header || Body ) || Tag    AAD = "stowage wal" 0x00 <cluster>/<file name>
//! Header    = "SWAL" | version u8 = 1 | compression u8 (0 none, 1 zstd) | 0u16 | raw_len u64 LE | id [32]
//! Body      = the file, raw or as one or more concatenated zstd frames
//! ```
//! WAL is unique data, so it is not chunked or deduplicated: whole-object storage keeps
//! `wal-fetch` to one GET. The AAD binds an object to its cluster and name, so a segment
//! copied to another name fails authentication instead of replaying as the wrong WAL. `id`
//! is the keyed blake3 of the file; it is checked after decompression and is what a
//! repeated push compares, without decompressing the stored copy.
//! `formats/REPOSITORY.md` ("WAL archive") is the normative description.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::blob::{COMPRESSION_NONE, COMPRESSION_ZSTD};
use super::crypto::{AuthError, Keys};
use super::id::BlobId;
use super::{corrupt, layout, sealed, RepoError, Repository};
use crate::pg::wal::{SegmentSummary, WalFileName};
use crate::store::{ObjectKey, ObjectMeta, PutMode, StoreError};

const MAGIC: &[u8; 4] = b"SWAL";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 48;
/// Largest WAL file accepted (PostgreSQL's largest segment size).
pub const MAX_WAL_FILE_LEN: u64 = 1 << 30;
/// Below this, splitting the file across threads costs more than it saves.
const MIN_PART: usize = 2 << 20;

/// The identity a cluster name is bound to by its first push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub name: String,
    /// `pg_control`'s system identifier (also in every segment's long page header).
    pub system_identifier: u64,
    pub pg_major: u32,
    pub seg_size: u32,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    pub host: String,
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalPut {
    /// Written now; the stored object's size.
    Stored { stored_len: u64 },
    /// The same content was already stored under this name (a retry after a crash).
    AlreadyStored,
}

/// Why a stored WAL object could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum WalObjectError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("not a stowage WAL object (bad header)")]
    Header,
    #[error("unknown compression tag {0}")]
    Compression(u8),
    #[error("decompression failed: {0}")]
    Decompress(std::io::Error),
    #[error("content is {found} bytes, the header says {expected}")]
    Length { expected: u64, found: u64 },
    #[error("content does not hash to the id in its header")]
    Hash,
}

/// The cores this process may use, asked once (the answer comes from cgroup files, which
/// costs more than a millisecond, on the latency path of every push).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A cluster name as it appears in object keys: short, and safe in a path.
///
/// # Errors
/// A message naming the rule broken.
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "cluster name {name:?}: use 1–64 letters, digits, '-', '_' or '.', not starting with '.'"
        ))
    }
}

fn aad(label: &str, cluster: &str, name: &str) -> Vec<u8> {
    format!("stowage {label}\0{cluster}/{name}").into_bytes()
}

/// Compresses and seals one WAL file. CPU-bound: run it on a blocking thread.
///
/// Large files are cut into parts compressed on separate threads as separate zstd frames
/// (a zstd stream decoder reads concatenated frames as one), which is what keeps a single
/// `wal-push` fast: it is a latency path, paid once per 16 MiB for as long as the
/// cluster lives.
pub fn seal_wal(keys: &Keys, level: i32, cluster: &str, name: &str, raw: &[u8]) -> Vec<u8> {
    // The id hashes the whole file on a thread of its own while the parts compress.
    let (id, frames) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| keys.blob_id(raw));
        let frames = compress_parts(raw, level);
        (hashing.join().ok(), frames)
    });
    let id = id.unwrap_or_else(|| keys.blob_id(raw));
    let nonce_len = keys.cipher().kind().nonce_len();
    let mut buf = Vec::with_capacity(nonce_len + HEADER_LEN + raw.len() / 4);
    buf.resize(nonce_len, 0);
    buf.extend_from_slice(MAGIC);
    buf.push(VERSION);
    let tag_at = buf.len();
    buf.extend_from_slice(&[COMPRESSION_ZSTD, 0, 0]);
    buf.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    buf.extend_from_slice(id.as_bytes());
    let body_at = buf.len();
    match frames {
        Some(frames) if frames.iter().map(Vec::len).sum::<usize>() < raw.len() => {
            frames.iter().for_each(|f| buf.extend_from_slice(f));
        }
        _ => {
            buf[tag_at] = COMPRESSION_NONE;
            buf.truncate(body_at);
            buf.extend_from_slice(raw);
        }
    }
    keys.cipher()
        .seal_in_place(&mut buf, &aad("wal", cluster, name));
    buf
}

fn compress_parts(raw: &[u8], level: i32) -> Option<Vec<Vec<u8>>> {
    // Two parts per core: the parts share the cores with the hashing thread and with the
    // caller's validation, and smaller parts even out the finishing times.
    let parts = (raw.len() / MIN_PART).clamp(1, (2 * cores()).min(8));
    let part_len = raw.len().div_ceil(parts).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = raw
            .chunks(part_len)
            .map(|part| scope.spawn(move || zstd::bulk::compress(part, level).ok()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect()
    })
}

/// Authenticates a stored WAL object and returns its header's id and length, and its body.
fn open_header(
    keys: &Keys,
    cluster: &str,
    name: &str,
    stored: &[u8],
) -> Result<(BlobId, u64, u8, Vec<u8>), WalObjectError> {
    let envelope = keys.cipher().open(stored, &aad("wal", cluster, name))?;
    if envelope.len() < HEADER_LEN || &envelope[..4] != MAGIC || envelope[4] != VERSION {
        return Err(WalObjectError::Header);
    }
    let tag = envelope[5];
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&envelope[8..16]);
    let raw_len = u64::from_le_bytes(len8);
    let mut id = [0u8; 32];
    id.copy_from_slice(&envelope[16..48]);
    if raw_len > MAX_WAL_FILE_LEN {
        return Err(WalObjectError::Header);
    }
    Ok((BlobId(id), raw_len, tag, envelope))
}

/// Opens a stored WAL object, proving the content is what was pushed under this name.
///
/// # Errors
/// [`WalObjectError`] for anything but an intact object.
pub fn open_wal(
    keys: &Keys,
    cluster: &str,
    name: &str,
    stored: &[u8],
) -> Result<Vec<u8>, WalObjectError> {
    let (id, raw_len, tag, envelope) = open_header(keys, cluster, name, stored)?;
    let body = &envelope[HEADER_LEN..];
    let raw = match tag {
        COMPRESSION_NONE => body.to_vec(),
        COMPRESSION_ZSTD => {
            let mut out = Vec::with_capacity(raw_len as usize);
            let decoder =
                zstd::stream::read::Decoder::new(body).map_err(WalObjectError::Decompress)?;
            std::io::Read::read_to_end(&mut std::io::Read::take(decoder, raw_len + 1), &mut out)
                .map_err(WalObjectError::Decompress)?;
            out
        }
        other => return Err(WalObjectError::Compression(other)),
    };
    if raw.len() as u64 != raw_len {
        return Err(WalObjectError::Length {
            expected: raw_len,
            found: raw.len() as u64,
        });
    }
    if keys.blob_id(&raw) != id {
        return Err(WalObjectError::Hash);
    }
    Ok(raw)
}

impl Repository {
    /// Seals one WAL file for [`Repository::put_wal`] on a blocking thread (it is the
    /// CPU-heavy half of a push, so callers run it beside their own checks).
    ///
    /// # Errors
    /// Only if the blocking thread could not run.
    pub async fn seal_wal(
        &self,
        cluster: &str,
        name: &WalFileName,
        raw: Bytes,
        level: i32,
    ) -> Result<Vec<u8>, RepoError> {
        let keys = self.keys.clone();
        let (cluster, text) = (cluster.to_string(), name.to_string());
        let key = layout::wal(&cluster, name.timeline(), &text);
        tokio::task::spawn_blocking(move || seal_wal(&keys, level, &cluster, &text, &raw))
            .await
            .map_err(|e| corrupt(key, e))
    }

    /// Stores one WAL file sealed by [`Repository::seal_wal`] from `raw`, create-only,
    /// then (for a segment or `.partial` file) its summary.
    ///
    /// The summary goes second and is written only by a push that stored or matched the
    /// segment, so it always describes the stored bytes; a crash in between leaves a
    /// segment without a summary (listed as unsummarized) until the retry writes it.
    ///
    /// # Errors
    /// [`RepoError::WalConflict`] when the name holds different content; store errors.
    pub async fn put_wal(
        &self,
        cluster: &str,
        name: &WalFileName,
        raw: &Bytes,
        sealed: Vec<u8>,
        summary: Option<&SegmentSummary>,
    ) -> Result<WalPut, RepoError> {
        let text = name.to_string();
        let key = layout::wal(cluster, name.timeline(), &text);
        let stored_len = sealed.len() as u64;
        let put = match self
            .store
            .put(&key, Bytes::from(sealed), PutMode::Create)
            .await
        {
            Ok(()) => WalPut::Stored { stored_len },
            Err(StoreError::AlreadyExists { .. }) => {
                let stored = self.store.get(&key).await?;
                let (id, raw_len, _, _) = open_header(&self.keys, cluster, &text, &stored)
                    .map_err(|e| corrupt(key.clone(), e))?;
                if id != self.keys.blob_id(raw) || raw_len != raw.len() as u64 {
                    return Err(RepoError::WalConflict { key });
                }
                WalPut::AlreadyStored
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(summary) = summary {
            self.put_summary(cluster, name, summary).await?;
        }
        Ok(put)
    }

    async fn put_summary(
        &self,
        cluster: &str,
        name: &WalFileName,
        summary: &SegmentSummary,
    ) -> Result<(), RepoError> {
        let tli = name.timeline();
        let name = name.to_string();
        let key = layout::wal_summary(cluster, tli, &name);
        let json = serde_json::to_vec(summary).map_err(|e| corrupt(key.clone(), e))?;
        let stored = sealed::seal_file(&self.keys, &aad("wal summary", cluster, &name), &json);
        match self
            .store
            .put(&key, Bytes::from(stored), PutMode::Create)
            .await
        {
            // Written only after the segment was stored or matched: an existing summary
            // describes these same bytes.
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Fetches and verifies one archived WAL file.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] (inside [`RepoError::Store`]) when it is not archived;
    /// [`RepoError::Corrupt`] naming the object when it fails verification.
    pub async fn get_wal(&self, cluster: &str, name: &WalFileName) -> Result<Vec<u8>, RepoError> {
        let text = name.to_string();
        let key = layout::wal(cluster, name.timeline(), &text);
        let stored = self.store.get(&key).await?;
        let keys = self.keys.clone();
        let cluster = cluster.to_string();
        let opened =
            tokio::task::spawn_blocking(move || open_wal(&keys, &cluster, &text, &stored)).await;
        match opened {
            Ok(Ok(raw)) => Ok(raw),
            Ok(Err(e)) => Err(corrupt(key, e)),
            Err(e) => Err(corrupt(key, e)),
        }
    }

    /// Whether a WAL file is archived for `cluster` (without reading it).
    ///
    /// # Errors
    /// Store errors other than "not found".
    pub async fn has_wal(&self, cluster: &str, name: &WalFileName) -> Result<bool, RepoError> {
        let key = layout::wal(cluster, name.timeline(), &name.to_string());
        match self.store.head(&key).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Every archived WAL object of a cluster, in key order.
    ///
    /// # Errors
    /// Store errors.
    pub async fn list_wal(&self, cluster: &str) -> Result<Vec<ObjectMeta>, RepoError> {
        let mut all = self.store.list(&layout::wal_prefix(cluster)).await?;
        all.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(all)
    }

    /// Reads the summaries of a cluster's segments (those whose segment is also stored are
    /// for the caller to pick), concurrently.
    ///
    /// # Errors
    /// The first summary that cannot be read, named.
    pub async fn read_wal_summaries(
        &self,
        cluster: &str,
    ) -> Result<Vec<(ObjectKey, SegmentSummary)>, RepoError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let metas = self
            .store
            .list(&layout::wal_summary_prefix(cluster))
            .await?;
        stream::iter(metas)
            .map(|meta| async move {
                let key = meta.key;
                let name = key.name().to_string();
                let stored = self.store.get(&key).await?;
                let plain =
                    sealed::open_file(&self.keys, &aad("wal summary", cluster, &name), &stored)
                        .map_err(|e| corrupt(key.clone(), e))?;
                let summary: SegmentSummary =
                    serde_json::from_slice(&plain).map_err(|e| corrupt(key.clone(), e))?;
                Ok::<_, RepoError>((key, summary))
            })
            .buffered(32)
            .try_collect()
            .await
    }

    /// The record binding `name` to a cluster, if one was made.
    ///
    /// # Errors
    /// Store errors; [`RepoError::Corrupt`] for a record that fails to open.
    pub async fn read_cluster(&self, name: &str) -> Result<Option<ClusterRecord>, RepoError> {
        let key = layout::cluster(name);
        let stored = match self.store.get(&key).await {
            Ok(stored) => stored,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let plain = sealed::open_file(&self.keys, &aad("cluster", name, ""), &stored)
            .map_err(|e| corrupt(key.clone(), e))?;
        let record: ClusterRecord =
            serde_json::from_slice(&plain).map_err(|e| corrupt(key.clone(), e))?;
        if record.name != name {
            return Err(corrupt(
                key,
                format!("record is for cluster {:?}", record.name),
            ));
        }
        Ok(Some(record))
    }

    /// Records a cluster's identity, create-only; returns the record that holds afterwards
    /// (another host's, when it won the race to be first).
    ///
    /// # Errors
    /// Store errors.
    pub async fn record_cluster(&self, record: &ClusterRecord) -> Result<ClusterRecord, RepoError> {
        let key = layout::cluster(&record.name);
        let json = serde_json::to_vec(record).map_err(|e| corrupt(key.clone(), e))?;
        let stored = sealed::seal_file(&self.keys, &aad("cluster", &record.name, ""), &json);
        match self
            .store
            .put(&key, Bytes::from(stored), PutMode::Create)
            .await
        {
            Ok(()) => Ok(record.clone()),
            Err(StoreError::AlreadyExists { .. }) => self
                .read_cluster(&record.name)
                .await?
                .ok_or_else(|| corrupt(key, "vanished right after it was found")),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::crypto::{CipherKind, MasterKey};

    fn keys() -> Keys {
        Keys::derive(&MasterKey::from_bytes([3; 64]), CipherKind::Aes256Gcm)
    }

    #[test]
    fn seal_open_round_trip_in_parts() {
        let raw: Vec<u8> = (0..(5 << 20) as u32).map(|i| (i / 7 % 251) as u8).collect();
        let keys = keys();
        let sealed = seal_wal(&keys, 1, "main", "000000010000000000000001", &raw);
        assert!(sealed.len() < raw.len() / 4);
        let opened = open_wal(&keys, "main", "000000010000000000000001", &sealed).unwrap();
        assert_eq!(opened, raw);
    }

    #[test]
    fn object_is_bound_to_its_name_and_cluster() {
        let keys = keys();
        let sealed = seal_wal(&keys, 1, "main", "000000010000000000000001", b"abc");
        assert!(open_wal(&keys, "main", "000000010000000000000002", &sealed).is_err());
        assert!(open_wal(&keys, "other", "000000010000000000000001", &sealed).is_err());
    }

    #[test]
    fn incompressible_is_stored_raw() {
        let keys = keys();
        let mut raw = vec![0u8; 4096];
        getrandom::getrandom(&mut raw).unwrap();
        let sealed = seal_wal(&keys, 1, "c", "n", &raw);
        assert!(sealed.len() <= raw.len() + HEADER_LEN + 64);
        assert_eq!(open_wal(&keys, "c", "n", &sealed).unwrap(), raw);
    }

    #[test]
    fn cluster_names() {
        assert!(check_cluster_name("main").is_ok());
        assert!(check_cluster_name("pg-15.prod_1").is_ok());
        for bad in ["", ".hidden", "a/b", "..", "x y", &"x".repeat(65)] {
            assert!(check_cluster_name(bad).is_err(), "{bad}");
        }
    }
}
