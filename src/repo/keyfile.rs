//! Key files (`keys/<id>`): the master key wrapped by one passphrase.
//!
//! ```json
//! { "version": 1, "created": "…", "host": "db1", "user": "postgres",
//!   "kdf": { "algorithm": "argon2id", "memory_kib": 65536, "iterations": 3,
//!            "parallelism": 1, "salt": "<32 hex>" },
//!   "data": "<hex of Nonce(24) || XChaCha20-Poly1305(Master(64) || RepoId(32) || ConfigHash(32)) || Tag(16)>" }
//! ```
//! The wrapping cipher is always XChaCha20-Poly1305 (AAD "stowage key"), whatever the
//! repository's data cipher, so a key file is readable without the config's help. The
//! sealed data also holds the repository id and the blake3 hash of the `config` object's
//! bytes: a key file from another repository is refused even when its passphrase is right,
//! and a `config` changed after `init` (it is plaintext) is detected before it is used.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::crypto::{Cipher, CipherKind, MasterKey, MASTER_LEN};
use super::id::{RepoId, ID_LEN};

const KEY_AAD: &[u8] = b"stowage key";

/// Argon2id cost parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kdf {
    pub algorithm: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub salt: String,
}

impl Kdf {
    /// OWASP's first Argon2id recommendation is 46 MiB, t=1; we spend a little more since a
    /// passphrase is unwrapped once per command, not per request.
    pub const DEFAULT_MEMORY_KIB: u32 = 64 * 1024;
    pub const DEFAULT_ITERATIONS: u32 = 3;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    pub created: chrono::DateTime<chrono::Utc>,
    pub host: String,
    pub user: String,
    pub kdf: Kdf,
    pub data: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyFileError {
    #[error("not a stowage key file: {0}")]
    Malformed(String),
    #[error("wrong passphrase")]
    WrongPassphrase,
    #[error("key belongs to repository {found}, not {expected}")]
    ForeignRepository { expected: RepoId, found: RepoId },
    #[error("the config object is not the one this key was made with: it was modified after init")]
    ConfigModified,
}

fn derive_wrapping_key(passphrase: &[u8], kdf: &Kdf) -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
    if kdf.algorithm != "argon2id" {
        return Err(KeyFileError::Malformed(format!(
            "unknown kdf {:?}",
            kdf.algorithm
        )));
    }
    // Refuse costs that would let a hostile key file exhaust memory or time.
    if kdf.memory_kib > 4 * 1024 * 1024 || kdf.iterations > 100 || kdf.parallelism > 64 {
        return Err(KeyFileError::Malformed("kdf parameters too large".into()));
    }
    let salt = hex::decode(&kdf.salt).map_err(|e| KeyFileError::Malformed(format!("salt: {e}")))?;
    let params = argon2::Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|e| KeyFileError::Malformed(format!("kdf parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, &salt, out.as_mut())
        .map_err(|e| KeyFileError::Malformed(format!("kdf: {e}")))?;
    Ok(out)
}

impl KeyFile {
    /// Wraps `master` (of repository `repo`, whose stored config hashes to `config_hash`)
    /// with `passphrase`.
    ///
    /// # Errors
    /// When the random source fails or the parameters are invalid.
    pub fn wrap(
        master: &MasterKey,
        repo: RepoId,
        config_hash: [u8; ID_LEN],
        passphrase: &[u8],
        memory_kib: u32,
        iterations: u32,
    ) -> Result<KeyFile, KeyFileError> {
        let mut salt = [0u8; 16];
        getrandom::getrandom(&mut salt).map_err(|e| KeyFileError::Malformed(e.to_string()))?;
        let kdf = Kdf {
            algorithm: "argon2id".into(),
            memory_kib,
            iterations,
            parallelism: 1,
            salt: hex::encode(salt),
        };
        let wrapping = derive_wrapping_key(passphrase, &kdf)?;
        let mut plain = Zeroizing::new(Vec::with_capacity(MASTER_LEN + 2 * ID_LEN));
        plain.extend_from_slice(master.as_bytes());
        plain.extend_from_slice(repo.as_bytes());
        plain.extend_from_slice(&config_hash);
        let sealed = Cipher::new(CipherKind::XChaCha20Poly1305, &wrapping).seal(&plain, KEY_AAD);
        Ok(KeyFile {
            version: 1,
            created: chrono::Utc::now(),
            host: crate::host::hostname(),
            user: crate::host::username(),
            kdf,
            data: hex::encode(sealed),
        })
    }

    /// Unwraps the master key with `passphrase` and checks it belongs to `repo` and to the
    /// config whose stored bytes hash to `config_hash`.
    ///
    /// # Errors
    /// [`KeyFileError::WrongPassphrase`] when authentication fails.
    pub fn unwrap_key(
        &self,
        passphrase: &[u8],
        repo: RepoId,
        config_hash: [u8; ID_LEN],
    ) -> Result<MasterKey, KeyFileError> {
        let wrapping = derive_wrapping_key(passphrase, &self.kdf)?;
        let sealed =
            hex::decode(&self.data).map_err(|e| KeyFileError::Malformed(format!("data: {e}")))?;
        let plain = Zeroizing::new(
            Cipher::new(CipherKind::XChaCha20Poly1305, &wrapping)
                .open(&sealed, KEY_AAD)
                .map_err(|_| KeyFileError::WrongPassphrase)?,
        );
        if plain.len() != MASTER_LEN + 2 * ID_LEN {
            return Err(KeyFileError::Malformed(
                "wrapped key has the wrong length".into(),
            ));
        }
        let mut master = [0u8; MASTER_LEN];
        master.copy_from_slice(&plain[..MASTER_LEN]);
        let mut found = [0u8; ID_LEN];
        found.copy_from_slice(&plain[MASTER_LEN..MASTER_LEN + ID_LEN]);
        let found = RepoId(found);
        if found != repo {
            return Err(KeyFileError::ForeignRepository {
                expected: repo,
                found,
            });
        }
        if plain[MASTER_LEN + ID_LEN..] != config_hash {
            return Err(KeyFileError::ConfigModified);
        }
        Ok(MasterKey::from_bytes(master))
    }

    pub fn decode(raw: &[u8]) -> Result<KeyFile, KeyFileError> {
        let key: KeyFile =
            serde_json::from_slice(raw).map_err(|e| KeyFileError::Malformed(e.to_string()))?;
        if key.version != 1 {
            return Err(KeyFileError::Malformed(format!(
                "unsupported key file version {}",
                key.version
            )));
        }
        Ok(key)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}
