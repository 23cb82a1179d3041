//! The `config` object: what every reader must know before reading anything else.
//!
//! Plain JSON (not sealed) so that `version` can be checked before a key is at hand. It
//! holds no secret: the chunker seed and all keys are derived from the master key.

use serde::{Deserialize, Serialize};

use super::crypto::CipherKind;
use super::id::RepoId;

/// The repository format this code writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Content-defined chunking parameters (FastCDC 2020, normalization level 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    pub algorithm: ChunkerAlgorithm,
    pub min_bytes: u32,
    pub avg_bytes: u32,
    pub max_bytes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkerAlgorithm {
    #[serde(rename = "fastcdc-2020")]
    FastCdc2020,
}

impl Default for ChunkerParams {
    /// 1 MiB average: small enough that a one-byte change rewrites about 1 MiB, large
    /// enough that the index of a 1 TB repository stays near 50 MB. The minimum is half the
    /// average (restic's proportion too): the chunker skips the first `min` bytes of every
    /// chunk, so a larger minimum means fewer bytes scanned per byte stored.
    fn default() -> Self {
        ChunkerParams {
            algorithm: ChunkerAlgorithm::FastCdc2020,
            min_bytes: 512 * 1024,
            avg_bytes: 1024 * 1024,
            max_bytes: 4 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Checks the bounds the chunker accepts (see `formats/REPOSITORY.md`).
    pub fn validate(&self) -> Result<(), String> {
        let ChunkerParams {
            min_bytes: min,
            avg_bytes: avg,
            max_bytes: max,
            ..
        } = *self;
        let in_range = (64..=1 << 20).contains(&min)
            && (256..=1 << 22).contains(&avg)
            && (1024..=1 << 24).contains(&max)
            && min < avg
            && avg < max
            && avg.is_power_of_two()
            && min % 2 == 0;
        if !in_range {
            return Err(format!(
                "chunker sizes min {min}, avg {avg}, max {max} are out of range \
                 (64 ≤ min < avg < max, min even, avg a power of two ≤ 4 MiB, max ≤ 16 MiB)"
            ));
        }
        Ok(())
    }
}

/// The `config` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub version: u32,
    pub id: RepoId,
    pub created: chrono::DateTime<chrono::Utc>,
    pub cipher: CipherKind,
    pub chunker: ChunkerParams,
    /// zstd level new blobs are compressed with unless a command says otherwise.
    pub compression_level: i32,
    /// Packs are sealed once they reach this size.
    pub pack_target_bytes: u32,
}

/// Default pack size: large enough for few objects and efficient S3 multipart, small
/// enough that a restore of one file reads little it does not need.
pub const DEFAULT_PACK_TARGET_BYTES: u32 = 16 * 1024 * 1024;

impl Config {
    /// Parses and checks a `config` object.
    pub fn decode(raw: &[u8]) -> Result<Config, String> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let v: VersionOnly =
            serde_json::from_slice(raw).map_err(|e| format!("not a stowage config: {e}"))?;
        if v.version != FORMAT_VERSION {
            return Err(format!(
                "repository format version {} is not supported (this stowage reads version {FORMAT_VERSION})",
                v.version
            ));
        }
        let config: Config =
            serde_json::from_slice(raw).map_err(|e| format!("malformed config: {e}"))?;
        config.chunker.validate()?;
        if !(1..=22).contains(&config.compression_level) {
            return Err(format!(
                "compression level {} out of range 1..=22",
                config.compression_level
            ));
        }
        if config.pack_target_bytes < 1024 * 1024 || u64::from(config.pack_target_bytes) > 1 << 30 {
            return Err(format!(
                "pack target {} bytes out of range (1 MiB to 1 GiB)",
                config.pack_target_bytes
            ));
        }
        Ok(config)
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data to a Vec cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}
