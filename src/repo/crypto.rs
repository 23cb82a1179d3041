//! Keys, key derivation and authenticated encryption.
//!
//! One random 64-byte master secret per repository; everything else is derived from it
//! with blake3's `derive_key` and a fixed context string (listed in
//! `formats/REPOSITORY.md`), so adding a passphrase never re-encrypts data:
//!
//! ```text
//! master (64 random bytes, wrapped in keys/<id> by each passphrase)
//!   ├─ "stowage v1 blob id"       → 32-byte key for keyed-blake3 blob ids
//!   ├─ "stowage v1 data"          → 32-byte AEAD key for blobs, trailers, indexes, snapshots
//!   └─ "stowage v1 chunker seed"  → 8 bytes that perturb the chunker's gear table
//! ```
//!
//! Why keyed ids: a plain hash would let anyone holding the repository test whether it
//! contains a known file. Why a seeded chunker: cut points reveal file sizes otherwise.
//! Nonces are random per sealing (12 bytes for AES-256-GCM, 24 for XChaCha20-Poly1305);
//! the spec states the resulting bound on how much one key may seal.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::Aes256Gcm;
use chacha20poly1305::XChaCha20Poly1305;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::id::{BlobId, ID_LEN};

/// Length of the random master secret.
pub const MASTER_LEN: usize = 64;
/// Length of an AEAD tag (both ciphers).
pub const TAG_LEN: usize = 16;

const CONTEXT_BLOB_ID: &str = "stowage v1 blob id";
const CONTEXT_DATA: &str = "stowage v1 data";
const CONTEXT_CHUNKER: &str = "stowage v1 chunker seed";

/// The AEAD a repository seals its objects with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CipherKind {
    /// AES-256-GCM, 96-bit random nonces. Fastest where the CPU has AES and carry-less
    /// multiply instructions (every x86-64 and ARMv8 server of the last decade).
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
    /// XChaCha20-Poly1305, 192-bit random nonces: no practical limit on messages per key,
    /// and constant-time without AES hardware.
    #[serde(rename = "xchacha20-poly1305")]
    XChaCha20Poly1305,
}

impl CipherKind {
    pub fn nonce_len(self) -> usize {
        match self {
            CipherKind::Aes256Gcm => 12,
            CipherKind::XChaCha20Poly1305 => 24,
        }
    }

    /// Bytes a sealing adds to its plaintext.
    pub fn overhead(self) -> usize {
        self.nonce_len() + TAG_LEN
    }
}

/// Decryption failed: wrong key, or the bytes were changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed (wrong key or damaged bytes)")]
pub struct AuthError;

/// A ready-to-use AEAD with its key schedule expanded once.
#[derive(Clone)]
pub enum Cipher {
    Aes(Box<Aes256Gcm>),
    XChaCha(Box<XChaCha20Poly1305>),
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cipher::Aes(_) => "Cipher(aes-256-gcm)",
            Cipher::XChaCha(_) => "Cipher(xchacha20-poly1305)",
        })
    }
}

impl Cipher {
    pub fn new(kind: CipherKind, key: &[u8; 32]) -> Self {
        match kind {
            CipherKind::Aes256Gcm => Cipher::Aes(Box::new(Aes256Gcm::new(key.into()))),
            CipherKind::XChaCha20Poly1305 => {
                Cipher::XChaCha(Box::new(XChaCha20Poly1305::new(key.into())))
            }
        }
    }

    pub fn kind(&self) -> CipherKind {
        match self {
            Cipher::Aes(_) => CipherKind::Aes256Gcm,
            Cipher::XChaCha(_) => CipherKind::XChaCha20Poly1305,
        }
    }

    /// Encrypts in place: `buf` holds `nonce_len` bytes of room followed by the plaintext;
    /// on return it holds `nonce || ciphertext || tag`. No byte of the plaintext is copied.
    pub fn seal_in_place(&self, buf: &mut Vec<u8>, aad: &[u8]) {
        let nonce_len = self.kind().nonce_len();
        debug_assert!(buf.len() >= nonce_len);
        // getrandom fails only when the OS has no entropy source at all; sealing with a
        // predictable nonce would be worse than stopping, so this is the one panic here.
        #[allow(clippy::expect_used)]
        getrandom::getrandom(&mut buf[..nonce_len]).expect("operating system RNG unavailable");
        let (nonce, body) = buf.split_at_mut(nonce_len);
        // encrypt_in_place_detached only fails for plaintexts over the AEAD's limit
        // (64 GiB for GCM); blobs are capped far below that by the pack format.
        let tag = match self {
            Cipher::Aes(c) => c
                .encrypt_in_place_detached(aes_gcm::Nonce::from_slice(nonce), aad, body)
                .map(|t| t.to_vec()),
            Cipher::XChaCha(c) => c
                .encrypt_in_place_detached(chacha20poly1305::XNonce::from_slice(nonce), aad, body)
                .map(|t| t.to_vec()),
        };
        #[allow(clippy::expect_used)]
        buf.extend_from_slice(&tag.expect("plaintext within AEAD limits"));
    }

    /// Seals a plaintext into a fresh buffer (`nonce || ciphertext || tag`).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(plaintext.len() + self.kind().overhead());
        buf.resize(self.kind().nonce_len(), 0);
        buf.extend_from_slice(plaintext);
        self.seal_in_place(&mut buf, aad);
        buf
    }

    /// Checks and decrypts `nonce || ciphertext || tag` into a new buffer.
    ///
    /// # Errors
    /// [`AuthError`] when the bytes are too short, were changed, or were sealed under
    /// another key or `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, AuthError> {
        let mut buf = sealed.to_vec();
        let len = self.open_in_place(&mut buf, aad)?.len();
        let start = self.kind().nonce_len();
        buf.truncate(start + len);
        buf.drain(..start);
        Ok(buf)
    }

    /// Checks and decrypts `nonce || ciphertext || tag` where it lies; returns the
    /// plaintext, a sub-slice of `sealed` starting after the nonce. No byte is copied.
    ///
    /// # Errors
    /// As [`Cipher::open`].
    pub fn open_in_place<'b>(
        &self,
        sealed: &'b mut [u8],
        aad: &[u8],
    ) -> Result<&'b mut [u8], AuthError> {
        let nonce_len = self.kind().nonce_len();
        if sealed.len() < nonce_len + TAG_LEN {
            return Err(AuthError);
        }
        let (nonce, rest) = sealed.split_at_mut(nonce_len);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let ok = match self {
            Cipher::Aes(c) => c.decrypt_in_place_detached(
                aes_gcm::Nonce::from_slice(nonce),
                aad,
                body,
                aes_gcm::Tag::from_slice(tag),
            ),
            Cipher::XChaCha(c) => c.decrypt_in_place_detached(
                chacha20poly1305::XNonce::from_slice(nonce),
                aad,
                body,
                chacha20poly1305::Tag::from_slice(tag),
            ),
        };
        ok.map(|()| body).map_err(|_| AuthError)
    }
}

/// The repository's master secret, as unwrapped from a key file.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; MASTER_LEN]>);

impl MasterKey {
    /// A fresh random master secret.
    ///
    /// # Errors
    /// When the operating system's random source fails.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut raw = Zeroizing::new([0u8; MASTER_LEN]);
        getrandom::getrandom(raw.as_mut())?;
        Ok(MasterKey(raw))
    }

    pub fn from_bytes(raw: [u8; MASTER_LEN]) -> Self {
        MasterKey(Zeroizing::new(raw))
    }

    pub fn as_bytes(&self) -> &[u8; MASTER_LEN] {
        &self.0
    }

    fn derive(&self, context: &str) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(context, self.0.as_ref()))
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Everything derived from a master key that the data path needs.
#[derive(Clone)]
pub struct Keys {
    id_key: Zeroizing<[u8; 32]>,
    cipher: Cipher,
    chunker_seed: u64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

impl Keys {
    pub fn derive(master: &MasterKey, cipher: CipherKind) -> Self {
        let data_key = master.derive(CONTEXT_DATA);
        let seed = master.derive(CONTEXT_CHUNKER);
        let mut seed8 = [0u8; 8];
        seed8.copy_from_slice(&seed[..8]);
        Keys {
            id_key: master.derive(CONTEXT_BLOB_ID),
            cipher: Cipher::new(cipher, &data_key),
            chunker_seed: u64::from_le_bytes(seed8),
        }
    }

    /// The id of a blob with this plaintext: keyed blake3.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        let mut hasher = blake3::Hasher::new_keyed(&self.id_key);
        // Large chunks hash faster with blake3's wide SIMD path; update() picks it.
        hasher.update(plaintext);
        BlobId(*hasher.finalize().as_bytes())
    }

    pub fn cipher(&self) -> &Cipher {
        &self.cipher
    }

    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }
}

const _: () = assert!(ID_LEN == 32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_both_ciphers() {
        let master = MasterKey::from_bytes([7; MASTER_LEN]);
        for kind in [CipherKind::Aes256Gcm, CipherKind::XChaCha20Poly1305] {
            let keys = Keys::derive(&master, kind);
            let sealed = keys.cipher().seal(b"hello", b"aad");
            assert_eq!(sealed.len(), 5 + kind.overhead());
            assert_eq!(keys.cipher().open(&sealed, b"aad").unwrap(), b"hello");
            assert!(keys.cipher().open(&sealed, b"other").is_err());
            let mut flipped = sealed.clone();
            flipped[kind.nonce_len()] ^= 1;
            assert!(keys.cipher().open(&flipped, b"aad").is_err());
            assert!(keys.cipher().open(&sealed[..10], b"aad").is_err());
        }
    }
}
