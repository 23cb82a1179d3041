//! The repository format in code: ids, keys, blobs, packs, indexes, trees, snapshots.
//!
//! `formats/REPOSITORY.md` is the normative description; the types here mirror its tables
//! (same field order, same tag values). This module reads and writes whole objects through
//! an [`ObjectStore`]; it knows nothing of where bytes come from (that is `source/`) or of
//! how a backup run is scheduled across threads (that is `pipeline/`).
//!
//! Write order (readers rely on it): packs, then the index naming them, then the snapshot
//! naming the trees. Every object is write-once.

pub mod blob;
pub mod config;
pub mod crypto;
pub mod id;
pub mod index;
pub mod key_cache;
pub mod keyfile;
pub mod layout;
pub mod master_index;
pub mod pack;
pub mod sealed;
pub mod snapshot;
pub mod tree;
pub mod wal;

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};

use blob::BlobKind;

use crate::store::{ObjectKey, ObjectStore, PutMode, StoreError};
use blob::BlobError;
use config::{ChunkerParams, Config, DEFAULT_PACK_TARGET_BYTES, FORMAT_VERSION};
use crypto::{CipherKind, Keys, MasterKey};
use id::{content_hash, BlobId, IndexId, KeyId, PackId, RepoId, SnapshotId};
use index::IndexPack;
use keyfile::{Kdf, KeyFile, KeyFileError};
use master_index::{BlobLocation, MasterIndex};
use snapshot::Snapshot;

const INDEX_LABEL: &[u8] = b"stowage index";
const SNAPSHOT_LABEL: &[u8] = b"stowage snapshot";
/// Metadata objects fetched at once when loading indexes or snapshots.
const LOAD_CONCURRENCY: usize = 16;

/// One blob as stored, fetched but not yet opened ([`Repository::fetch_blob_run`]).
#[derive(Debug, Clone)]
pub struct SealedBlob {
    pub id: BlobId,
    pub loc: BlobLocation,
    pub sealed: Bytes,
}

impl SealedBlob {
    /// Whether `other` is a member of the same stored group as `self` (same pack, offset
    /// and sealed length).
    pub fn same_group(&self, other: &SealedBlob) -> bool {
        self.loc.kind == BlobKind::Grouped
            && other.loc.kind == BlobKind::Grouped
            && self.loc.pack == other.loc.pack
            && self.loc.offset == other.loc.offset
            && self.loc.sealed_len == other.loc.sealed_len
    }
}

/// Groups opened lately, so that a file whose pages alternate between the groups of
/// several backups (an old page, a changed one, an old one…) decrypts and decompresses
/// each group once rather than once per page.
#[derive(Debug, Default)]
pub struct GroupCache {
    recent: std::sync::Mutex<std::collections::VecDeque<(GroupAt, Arc<blob::OpenedGroup>)>>,
}

/// Where a group lies: pack, offset and sealed length (all three name it, §7).
type GroupAt = (PackId, u32, u32);

impl GroupCache {
    /// Groups kept: at most 16 × 256 KiB of plaintext with the sizes stowage writes.
    const KEEP: usize = 16;

    fn get(&self, at: GroupAt) -> Option<Arc<blob::OpenedGroup>> {
        let recent = self.recent.lock().ok()?;
        recent
            .iter()
            .find(|(k, _)| *k == at)
            .map(|(_, g)| g.clone())
    }

    fn put(&self, at: GroupAt, group: Arc<blob::OpenedGroup>) {
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() >= Self::KEEP {
                recent.pop_front();
            }
            recent.push_back((at, group));
        }
    }
}

/// Opens one blob, or the members of one group with a single opening of the group.
fn open_unit(
    keys: &Keys,
    unit: Vec<SealedBlob>,
    groups: &GroupCache,
) -> Result<Vec<Bytes>, blob::BlobError> {
    match unit.as_slice() {
        [first, ..] if first.loc.kind == BlobKind::Grouped => {
            let at = (first.loc.pack, first.loc.offset, first.loc.sealed_len);
            let group = match groups.get(at) {
                Some(group) => group,
                None => {
                    let mut sealed = bytes::BytesMut::from(first.sealed.as_ref());
                    let group = Arc::new(blob::open_group(keys, &first.id, &mut sealed)?);
                    groups.put(at, group.clone());
                    group
                }
            };
            unit.iter()
                .map(|b| group.member(keys, &b.id, b.loc.raw_len as usize))
                .collect()
        }
        _ => unit
            .into_iter()
            .map(|b| {
                blob::open_blob_bytes(keys, b.loc.kind, &b.id, b.sealed, b.loc.raw_len as usize)
            })
            .collect(),
    }
}

/// Errors reading or writing a repository. Each names the object at fault.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{location} is not a stowage repository (no config object; run `stowage init`)")]
    NotARepository { location: String },
    #[error("{location} already holds a repository")]
    AlreadyExists { location: String },
    #[error("{key}: {reason}")]
    Config { key: ObjectKey, reason: String },
    #[error("{location}: no key file; the repository cannot be opened")]
    NoKeys { location: String },
    #[error("wrong passphrase for repository {location} (tried {tried} key file(s))")]
    WrongPassphrase { location: String, tried: usize },
    #[error("{key}: {source}")]
    KeyFile {
        key: ObjectKey,
        #[source]
        source: KeyFileError,
    },
    #[error("{key} is damaged: {reason}")]
    Corrupt { key: ObjectKey, reason: String },
    #[error("{pack}: {source}")]
    Blob {
        pack: ObjectKey,
        #[source]
        source: BlobError,
    },
    #[error("blob {blob} is not in any index")]
    BlobNotIndexed { blob: BlobId },
    #[error("no snapshot matches {spec:?}")]
    SnapshotNotFound { spec: String },
    #[error("{spec:?} matches several snapshots; give more digits")]
    AmbiguousSnapshot { spec: String },
    #[error(
        "key {key} is the one in use; open the repository with another passphrase to remove it"
    )]
    KeyInUse { key: KeyId },
    #[error("cannot remove key {key}: it is the last one and the repository would be unreadable")]
    LastKey { key: KeyId },
    #[error("{key} already holds different content; refusing to overwrite an archived WAL file (two clusters archiving under one name, or a cluster restored without a new timeline?)")]
    WalConflict { key: ObjectKey },
    #[error("invalid repository parameters: {0}")]
    Parameters(String),
}

/// Choices made once, at `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub cipher: CipherKind,
    pub chunker: ChunkerParams,
    pub compression_level: i32,
    pub pack_target_bytes: u32,
    pub kdf: KdfCost,
}

/// Argon2id cost for wrapping a passphrase.
#[derive(Debug, Clone, Copy)]
pub struct KdfCost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl Default for KdfCost {
    fn default() -> Self {
        KdfCost {
            memory_kib: Kdf::DEFAULT_MEMORY_KIB,
            iterations: Kdf::DEFAULT_ITERATIONS,
        }
    }
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            cipher: CipherKind::Aes256Gcm,
            chunker: ChunkerParams::default(),
            compression_level: 3,
            pack_target_bytes: DEFAULT_PACK_TARGET_BYTES,
            kdf: KdfCost::default(),
        }
    }
}

/// An open repository: its store, config and derived keys.
#[derive(Debug, Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    config: Config,
    /// blake3 of the stored config bytes, sealed into every key file.
    config_hash: [u8; 32],
    master: MasterKey,
    keys: Keys,
    key_id: KeyId,
}

fn corrupt(key: ObjectKey, reason: impl ToString) -> RepoError {
    RepoError::Corrupt {
        key,
        reason: reason.to_string(),
    }
}

impl Repository {
    /// Creates a repository: config first, then the first key file.
    ///
    /// # Errors
    /// [`RepoError::AlreadyExists`] when the location already has a config.
    pub async fn init(
        store: Arc<dyn ObjectStore>,
        passphrase: &[u8],
        options: &InitOptions,
    ) -> Result<Repository, RepoError> {
        options.chunker.validate().map_err(RepoError::Parameters)?;
        let mut raw_id = [0u8; 32];
        getrandom::getrandom(&mut raw_id).map_err(|e| RepoError::Parameters(e.to_string()))?;
        let config = Config {
            version: FORMAT_VERSION,
            id: RepoId(raw_id),
            created: chrono::Utc::now(),
            cipher: options.cipher,
            chunker: options.chunker,
            compression_level: options.compression_level,
            pack_target_bytes: options.pack_target_bytes,
        };
        let config_bytes = config.encode();
        Config::decode(&config_bytes).map_err(RepoError::Parameters)?;
        let config_hash = content_hash(&config_bytes);
        let master = MasterKey::generate().map_err(|e| RepoError::Parameters(e.to_string()))?;
        // The key goes first: a config without a key is an unreadable repository, while a
        // key without a config is an empty directory `init` can be run on again.
        let key_id = write_key(
            &store,
            &master,
            config.id,
            config_hash,
            passphrase,
            options.kdf,
        )
        .await?;
        match store
            .put(
                &layout::config(),
                Bytes::from(config_bytes),
                PutMode::Create,
            )
            .await
        {
            Ok(()) => {}
            Err(StoreError::AlreadyExists { .. }) => {
                let _ = store.delete(&layout::key_file(&key_id)).await;
                return Err(RepoError::AlreadyExists {
                    location: store.location(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        let keys = Keys::derive(&master, config.cipher);
        Ok(Repository {
            store,
            config,
            config_hash,
            master,
            keys,
            key_id,
        })
    }

    /// Opens a repository with one of its passphrases.
    ///
    /// # Errors
    /// [`RepoError::NotARepository`], [`RepoError::WrongPassphrase`], or the config's
    /// problem (an unsupported version, say).
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        passphrase: &[u8],
    ) -> Result<Repository, RepoError> {
        let (config, config_hash) = read_config(&*store).await?;
        let key_files = read_key_files(&*store).await?;
        if key_files.is_empty() {
            return Err(RepoError::NoKeys {
                location: store.location(),
            });
        }
        for (key, key_id, file) in &key_files {
            let unwrapped = file
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|file| file.unwrap_key(passphrase, config.id, config_hash));
            match unwrapped {
                Ok(master) => {
                    let keys = Keys::derive(&master, config.cipher);
                    return Ok(Repository {
                        store,
                        config,
                        config_hash,
                        master,
                        keys,
                        key_id: *key_id,
                    });
                }
                Err(KeyFileError::WrongPassphrase) => continue,
                // A key left by an interrupted `init`, or a file that is not a key at all,
                // must not lock the owner out: skip it, say so, try the others.
                Err(e @ (KeyFileError::ForeignRepository { .. } | KeyFileError::Malformed(_))) => {
                    tracing::warn!("{key}: skipped: {e}");
                    continue;
                }
                Err(source @ KeyFileError::ConfigModified) => {
                    return Err(RepoError::KeyFile {
                        key: layout::config(),
                        source,
                    })
                }
            }
        }
        Err(RepoError::WrongPassphrase {
            location: store.location(),
            tried: key_files.len(),
        })
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The key file this repository was opened with.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    pub fn location(&self) -> String {
        self.store.location()
    }

    /// Adds a passphrase (a new key file wrapping the same master key).
    ///
    /// # Errors
    /// Store errors.
    pub async fn add_key(&self, passphrase: &[u8], kdf: KdfCost) -> Result<KeyId, RepoError> {
        write_key(
            &self.store,
            &self.master,
            self.config.id,
            self.config_hash,
            passphrase,
            kdf,
        )
        .await
    }

    /// Every key file with its metadata.
    ///
    /// # Errors
    /// Store errors and malformed key files.
    pub async fn list_keys(&self) -> Result<Vec<(KeyId, KeyFile)>, RepoError> {
        let mut out = Vec::new();
        for (key, id, file) in read_key_files(&*self.store).await? {
            match file {
                Ok(file) => out.push((id, file)),
                // Reported, not fatal: as on open, a stray file must not block key management.
                Err(e) => tracing::warn!("{key}: skipped: {e}"),
            }
        }
        Ok(out)
    }

    /// Removes a key file; never the one in use, never the last one.
    ///
    /// # Errors
    /// [`RepoError::KeyInUse`], [`RepoError::LastKey`], or not found.
    pub async fn remove_key(&self, id: KeyId) -> Result<(), RepoError> {
        if id == self.key_id {
            return Err(RepoError::KeyInUse { key: id });
        }
        let keys = self.list_keys().await?;
        if !keys.iter().any(|(k, _)| *k == id) {
            return Err(StoreError::NotFound {
                key: layout::key_file(&id),
            }
            .into());
        }
        if keys.len() <= 1 {
            return Err(RepoError::LastKey { key: id });
        }
        self.store.delete(&layout::key_file(&id)).await?;
        Ok(())
    }

    /// Stores a finished pack (write-once) under `id`, the blake3 hash of `bytes`.
    ///
    /// # Errors
    /// Store errors. A pack that already exists has the same bytes (its name is their
    /// hash), so that case is success.
    pub async fn put_pack(&self, id: PackId, bytes: Bytes) -> Result<(), RepoError> {
        self.put_content_addressed(&layout::pack(&id), bytes).await
    }

    /// Writes an object whose name is the hash of its bytes, create-only. Finding the name
    /// taken means the same bytes are stored (written by another backup, or by this write
    /// when a retried request's first answer was lost), so that is success.
    async fn put_content_addressed(&self, key: &ObjectKey, bytes: Bytes) -> Result<(), RepoError> {
        match self.store.put(key, bytes, PutMode::Create).await {
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes one index file naming `packs`, which must all be durable already.
    ///
    /// # Errors
    /// Store errors.
    pub async fn put_index(&self, packs: &[IndexPack]) -> Result<(IndexId, u64), RepoError> {
        let stored = sealed::seal_file(&self.keys, INDEX_LABEL, &index::encode_index(packs));
        let id = IndexId(content_hash(&stored));
        let len = stored.len() as u64;
        self.put_content_addressed(&layout::index(&id), Bytes::from(stored))
            .await?;
        Ok((id, len))
    }

    /// Reads and checks one index file.
    ///
    /// # Errors
    /// [`RepoError::Corrupt`] naming the file when its hash, seal or layout is wrong.
    pub async fn read_index(&self, id: IndexId) -> Result<Vec<IndexPack>, RepoError> {
        let key = layout::index(&id);
        let plain = self.read_sealed(&key, &id.0, INDEX_LABEL).await?;
        index::decode_index(&plain).map_err(|e| corrupt(key, e))
    }

    /// Ids of every index file.
    ///
    /// # Errors
    /// Store errors; a file under `index/` whose name is not an id is reported as corrupt.
    pub async fn list_index_ids(&self) -> Result<Vec<IndexId>, RepoError> {
        list_ids(&*self.store, layout::INDEX).await
    }

    /// Loads every index file into one lookup table.
    ///
    /// # Errors
    /// The first index file that cannot be read, named.
    pub async fn load_index(&self) -> Result<MasterIndex, RepoError> {
        let ids = self.list_index_ids().await?;
        let loaded: Vec<(IndexId, Vec<IndexPack>)> = stream::iter(ids)
            .map(|id| async move { self.read_index(id).await.map(|packs| (id, packs)) })
            .buffer_unordered(LOAD_CONCURRENCY)
            .try_collect()
            .await?;
        let mut master = MasterIndex::default();
        for (id, packs) in loaded {
            master.add(id, packs);
        }
        Ok(master)
    }

    /// Fetches and opens one blob, proving its content matches its id.
    ///
    /// # Errors
    /// [`RepoError::BlobNotIndexed`], store errors, or [`RepoError::Blob`] naming the pack.
    pub async fn read_blob(&self, index: &MasterIndex, id: &BlobId) -> Result<Bytes, RepoError> {
        let loc = *index
            .get(id)
            .ok_or(RepoError::BlobNotIndexed { blob: *id })?;
        let key = layout::pack(&loc.pack);
        let start = u64::from(loc.offset);
        let sealed = self
            .store
            .get_range(&key, start..start + u64::from(loc.sealed_len))
            .await?;
        let keys = self.keys.clone();
        let id = *id;
        let opened = tokio::task::spawn_blocking(move || {
            blob::open_blob_bytes(&keys, loc.kind, &id, sealed, loc.raw_len as usize)
        })
        .await
        .map_err(|e| corrupt(key.clone(), e))?;
        opened.map_err(|source| RepoError::Blob { pack: key, source })
    }

    /// Fetches blobs stored one after another in one pack with a single ranged read (one
    /// request instead of one per blob, which is what makes restores from S3 fast). Each
    /// comes back still sealed, to be opened by [`Repository::open_sealed`], so that
    /// opening can run on several threads while the next run is fetched. `ids` must come
    /// from [`crate::restore::runs`] or otherwise lie in one pack in ascending order.
    ///
    /// # Errors
    /// [`RepoError::BlobNotIndexed`], store errors, [`RepoError::Corrupt`] if `ids` do not
    /// form a run.
    pub async fn fetch_blob_run(
        &self,
        index: &MasterIndex,
        ids: &[BlobId],
    ) -> Result<Vec<SealedBlob>, RepoError> {
        let locs: Vec<(BlobId, BlobLocation)> = ids
            .iter()
            .map(|id| {
                index
                    .get(id)
                    .map(|loc| (*id, *loc))
                    .ok_or(RepoError::BlobNotIndexed { blob: *id })
            })
            .collect::<Result<_, _>>()?;
        let (Some((_, first)), Some((_, last))) = (locs.first(), locs.last()) else {
            return Ok(Vec::new());
        };
        let key = layout::pack(&first.pack);
        let start = u64::from(first.offset);
        let end = u64::from(last.offset) + u64::from(last.sealed_len);
        let outside = |l: &BlobLocation| {
            l.pack != first.pack
                || u64::from(l.offset) < start
                || u64::from(l.offset) + u64::from(l.sealed_len) > end
        };
        if locs.iter().any(|(_, l)| outside(l)) {
            return Err(corrupt(key, "blobs of a run are not in one pack in order"));
        }
        let span = self.store.get_range(&key, start..end).await?;
        Ok(locs
            .into_iter()
            .map(|(id, loc)| {
                let from = (u64::from(loc.offset) - start) as usize;
                SealedBlob {
                    id,
                    loc,
                    sealed: span.slice(from..from + loc.sealed_len as usize),
                }
            })
            .collect())
    }

    /// Opens blobs fetched by [`Repository::fetch_blob_run`] on a blocking thread,
    /// proving each content matches its id. `unit` is one blob, or members of one group
    /// (same pack and offset, see [`SealedBlob::same_group`]), which are opened together:
    /// one decryption and decompression for all of them.
    ///
    /// # Errors
    /// [`RepoError::Blob`] naming the pack.
    pub async fn open_sealed(
        &self,
        unit: Vec<SealedBlob>,
        groups: &Arc<GroupCache>,
    ) -> Result<Vec<Bytes>, RepoError> {
        let keys = self.keys.clone();
        let Some(first) = unit.first() else {
            return Ok(Vec::new());
        };
        let key = layout::pack(&first.loc.pack);
        let groups = groups.clone();
        let opened = tokio::task::spawn_blocking(move || open_unit(&keys, unit, &groups))
            .await
            .map_err(|e| corrupt(key.clone(), e))?;
        opened.map_err(|source| RepoError::Blob { pack: key, source })
    }

    /// Writes a snapshot. Call only once everything it names is durable.
    ///
    /// # Errors
    /// Store errors.
    pub async fn put_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId, RepoError> {
        let stored = sealed::seal_file(&self.keys, SNAPSHOT_LABEL, &snapshot.encode());
        let id = SnapshotId(content_hash(&stored));
        self.put_content_addressed(&layout::snapshot(&id), Bytes::from(stored))
            .await?;
        Ok(id)
    }

    /// Reads and checks one snapshot.
    ///
    /// # Errors
    /// [`RepoError::Corrupt`] naming the snapshot file.
    pub async fn read_snapshot(&self, id: SnapshotId) -> Result<Snapshot, RepoError> {
        let key = layout::snapshot(&id);
        let plain = self.read_sealed(&key, &id.0, SNAPSHOT_LABEL).await?;
        Snapshot::decode(&plain).map_err(|e| corrupt(key, e))
    }

    /// Reads a sealed metadata file, checks it is what its name says, and opens it.
    async fn read_sealed(
        &self,
        key: &ObjectKey,
        name: &[u8; 32],
        label: &[u8],
    ) -> Result<Vec<u8>, RepoError> {
        let stored = self.store.get(key).await?;
        if content_hash(&stored) != *name {
            return Err(corrupt(
                key.clone(),
                "content does not match its name (hash mismatch)",
            ));
        }
        sealed::open_file(&self.keys, label, &stored).map_err(|e| corrupt(key.clone(), e))
    }

    /// Ids of every snapshot.
    ///
    /// # Errors
    /// Store errors, or a misnamed file under `snapshots/`.
    pub async fn list_snapshot_ids(&self) -> Result<Vec<SnapshotId>, RepoError> {
        list_ids(&*self.store, layout::SNAPSHOTS).await
    }

    /// Every snapshot, oldest first. One unreadable snapshot fails the whole listing, with
    /// its name, since hiding it would hide a broken backup.
    ///
    /// # Errors
    /// The first snapshot that cannot be read.
    pub async fn load_snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>, RepoError> {
        let ids = self.list_snapshot_ids().await?;
        let mut all: Vec<(SnapshotId, Snapshot)> = stream::iter(ids)
            .map(|id| async move { self.read_snapshot(id).await.map(|s| (id, s)) })
            .buffer_unordered(LOAD_CONCURRENCY)
            .try_collect()
            .await?;
        all.sort_by(|a, b| a.1.end.cmp(&b.1.end).then(a.0.cmp(&b.0)));
        Ok(all)
    }

    /// Resolves `latest`, a full id, or a unique prefix of at least 4 hex digits.
    /// `latest` can be narrowed by `filter`.
    ///
    /// # Errors
    /// [`RepoError::SnapshotNotFound`] or [`RepoError::AmbiguousSnapshot`].
    pub async fn find_snapshot(
        &self,
        spec: &str,
        filter: impl Fn(&Snapshot) -> bool,
    ) -> Result<(SnapshotId, Snapshot), RepoError> {
        let not_found = || RepoError::SnapshotNotFound { spec: spec.into() };
        if spec == "latest" {
            return self
                .load_snapshots()
                .await?
                .into_iter()
                .rev()
                .find(|(_, s)| filter(s))
                .ok_or_else(not_found);
        }
        if let Ok(id) = spec.parse::<SnapshotId>() {
            return match self.read_snapshot(id).await {
                Err(RepoError::Store(StoreError::NotFound { .. })) => Err(not_found()),
                other => other.map(|s| (id, s)),
            };
        }
        if spec.len() < 4 || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let spec_lower = spec.to_ascii_lowercase();
        let matches: Vec<SnapshotId> = self
            .list_snapshot_ids()
            .await?
            .into_iter()
            .filter(|id| id.to_string().starts_with(&spec_lower))
            .collect();
        match matches.as_slice() {
            [id] => Ok((*id, self.read_snapshot(*id).await?)),
            [] => Err(not_found()),
            _ => Err(RepoError::AmbiguousSnapshot { spec: spec.into() }),
        }
    }
}

/// The config and the blake3 hash of its stored bytes.
async fn read_config(store: &dyn ObjectStore) -> Result<(Config, [u8; 32]), RepoError> {
    let key = layout::config();
    let raw = match store.get(&key).await {
        Ok(raw) => raw,
        Err(StoreError::NotFound { .. }) => {
            return Err(RepoError::NotARepository {
                location: store.location(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let config = Config::decode(&raw).map_err(|reason| RepoError::Config { key, reason })?;
    Ok((config, content_hash(&raw)))
}

/// Every object under `keys/`, its id, and what decoding it gave.
async fn read_key_files(
    store: &dyn ObjectStore,
) -> Result<Vec<(ObjectKey, KeyId, Result<KeyFile, KeyFileError>)>, RepoError> {
    let mut out = Vec::new();
    for meta in store.list(layout::KEYS).await? {
        let raw = store.get(&meta.key).await?;
        out.push((meta.key, KeyId(content_hash(&raw)), KeyFile::decode(&raw)));
    }
    Ok(out)
}

async fn write_key(
    store: &Arc<dyn ObjectStore>,
    master: &MasterKey,
    repo: RepoId,
    config_hash: [u8; 32],
    passphrase: &[u8],
    kdf: KdfCost,
) -> Result<KeyId, RepoError> {
    let file = KeyFile::wrap(
        master,
        repo,
        config_hash,
        passphrase,
        kdf.memory_kib,
        kdf.iterations,
    )
    .map_err(|source| RepoError::KeyFile {
        key: ObjectKey::new(layout::KEYS.trim_end_matches('/'))
            .unwrap_or_else(|_| layout::config()),
        source,
    })?;
    let raw = file.encode();
    let id = KeyId(content_hash(&raw));
    store
        .put(&layout::key_file(&id), Bytes::from(raw), PutMode::Create)
        .await?;
    Ok(id)
}

async fn list_ids<T: std::str::FromStr>(
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<Vec<T>, RepoError> {
    store
        .list(prefix)
        .await?
        .into_iter()
        .map(|meta| {
            meta.key
                .name()
                .parse::<T>()
                .map_err(|_| corrupt(meta.key.clone(), "file name is not an id"))
        })
        .collect()
}
