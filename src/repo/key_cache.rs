//! A host-local cache of the unwrapped master key, so that commands run once per WAL
//! segment do not pay Argon2id (≈0.2 s and 64 MiB) every time.
//!
//! The cache lives outside the repository (`$STOWAGE_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/stowage`, else `~/.cache/stowage`), one file per repository, mode 0600:
//!
//! ```text
//! "SKC1" | key id [32] | salt [16] | XChaCha20-Poly1305( master ) with AAD = repo id || config hash
//! wrapping key = blake3::derive_key("stowage v1 key cache", salt || passphrase)
//! ```
//! The master key is still sealed under the passphrase, but with a fast derivation: the
//! file is as sensitive as the password file that sits beside it on the same host (which
//! `wal-push` needs anyway), not as hard to attack as a key file in the repository. Each
//! use re-reads the key file it came from (`keys/<key id>`, whose name is its hash), so
//! removing a passphrase with `stowage key remove` also retires its cached copies, and a
//! changed config makes the entry fail to open. `key_cache = false` turns it off.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use super::crypto::{Cipher, CipherKind, Keys, MasterKey, MASTER_LEN};
use super::id::{content_hash, KeyId, ID_LEN};
use super::{layout, read_config, RepoError, Repository};
use crate::store::{ObjectStore, StoreError};

const MAGIC: &[u8; 4] = b"SKC1";
const CONTEXT: &str = "stowage v1 key cache";
const SALT_LEN: usize = 16;

/// The default cache directory, if the environment names a home for one.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("STOWAGE_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("stowage"));
    }
    std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(|home| PathBuf::from(home).join(".cache").join("stowage"))
}

fn wrapping_key(salt: &[u8], passphrase: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut hasher = blake3::Hasher::new_derive_key(CONTEXT);
    hasher.update(salt);
    hasher.update(passphrase);
    Zeroizing::new(*hasher.finalize().as_bytes())
}

fn aad(repo: &Repository) -> Vec<u8> {
    let mut aad = repo.config.id.0.to_vec();
    aad.extend_from_slice(&repo.config_hash);
    aad
}

impl Repository {
    /// Opens a repository like [`Repository::open`], using and refreshing the key cache
    /// in `cache_dir` when one is given. A missing, stale or unreadable cache entry only
    /// costs the slow path; it is never an error.
    ///
    /// # Errors
    /// As [`Repository::open`].
    pub async fn open_cached(
        store: Arc<dyn ObjectStore>,
        passphrase: &[u8],
        cache_dir: Option<&Path>,
    ) -> Result<Repository, RepoError> {
        let Some(dir) = cache_dir else {
            return Repository::open(store, passphrase).await;
        };
        let (config, config_hash) = read_config(&*store).await?;
        let path = dir.join("keys").join(config.id.to_string());
        if let Some(repo) = from_cache(&store, &path, passphrase, &config, config_hash).await? {
            return Ok(repo);
        }
        let repo = Repository::open(store, passphrase).await?;
        if let Err(e) = write_entry(&path, &repo, passphrase) {
            tracing::debug!("key cache {}: not written: {e}", path.display());
        }
        Ok(repo)
    }
}

async fn from_cache(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    passphrase: &[u8],
    config: &super::config::Config,
    config_hash: [u8; 32],
) -> Result<Option<Repository>, RepoError> {
    let Ok(raw) = std::fs::read(path) else {
        return Ok(None);
    };
    let head = 4 + ID_LEN + SALT_LEN;
    if raw.len() <= head || &raw[..4] != MAGIC {
        return Ok(None);
    }
    let mut key_id = [0u8; ID_LEN];
    key_id.copy_from_slice(&raw[4..4 + ID_LEN]);
    let key_id = KeyId(key_id);
    // The key file must still exist, unchanged (its name is its hash).
    match store.get(&layout::key_file(&key_id)).await {
        Ok(file) if content_hash(&file) == key_id.0 => {}
        Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let wrapping = wrapping_key(&raw[4 + ID_LEN..head], passphrase);
    let mut aad = config.id.0.to_vec();
    aad.extend_from_slice(&config_hash);
    let Ok(plain) = Cipher::new(CipherKind::XChaCha20Poly1305, &wrapping).open(&raw[head..], &aad)
    else {
        return Ok(None);
    };
    let plain = Zeroizing::new(plain);
    if plain.len() != MASTER_LEN {
        return Ok(None);
    }
    let mut master = [0u8; MASTER_LEN];
    master.copy_from_slice(&plain);
    let master = MasterKey::from_bytes(master);
    let keys = Keys::derive(&master, config.cipher);
    Ok(Some(Repository {
        store: store.clone(),
        config: config.clone(),
        config_hash,
        master,
        keys,
        key_id,
    }))
}

fn write_entry(path: &Path, repo: &Repository, passphrase: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    if let Some(root) = dir.parent() {
        // Backup tools that honour the convention (restic, borg, tar --exclude-caches)
        // skip the cache rather than copy key material around.
        let tag = root.join("CACHEDIR.TAG");
        if !tag.exists() {
            let _ = std::fs::write(
                tag,
                "Signature: 8a477f597d28d172789f06886806bc55\n# stowage key cache\n",
            );
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let mut salt = [0u8; SALT_LEN];
    getrandom::getrandom(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
    let wrapping = wrapping_key(&salt, passphrase);
    let sealed = Cipher::new(CipherKind::XChaCha20Poly1305, &wrapping)
        .seal(repo.master.as_bytes(), &aad(repo));
    let mut out = Vec::with_capacity(4 + ID_LEN + SALT_LEN + sealed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&repo.key_id.0);
    out.extend_from_slice(&salt);
    out.extend_from_slice(&sealed);
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(&out)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
