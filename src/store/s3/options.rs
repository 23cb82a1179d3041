//! What an S3 repository needs to know beyond its `s3://bucket/prefix`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// S3 smallest allowed part (every part but the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// S3 largest allowed part.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// S3 most parts in one upload.
pub const MAX_PARTS: usize = 10_000;

/// `s3://bucket/prefix`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Empty, or a key prefix without leading or trailing `/`.
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket[/prefix]`.
    ///
    /// ```
    /// use stowage::store::s3::S3Location;
    ///
    /// let loc = S3Location::parse("s3://backups/pg/main/").unwrap();
    /// assert_eq!((loc.bucket.as_str(), loc.prefix.as_str()), ("backups", "pg/main"));
    /// assert!(S3Location::parse("s3:///nobucket").is_err());
    /// ```
    ///
    /// # Errors
    /// A message saying what is wrong with the location.
    pub fn parse(location: &str) -> Result<Self, String> {
        let rest = location
            .strip_prefix("s3://")
            .ok_or("an S3 location starts with s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err("no bucket name after s3://".into());
        }
        if !bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(format!("{bucket:?} is not a valid bucket name"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|seg| prefix.contains("//") || seg == "." || seg == "..")
        {
            return Err(format!("prefix {prefix:?} has an empty, . or .. segment"));
        }
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The full key of `key` under this location's prefix.
    pub fn key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// The part of a full key below the prefix, if it is below it.
    pub fn relative<'k>(&self, full: &'k str) -> Option<&'k str> {
        if self.prefix.is_empty() {
            Some(full)
        } else {
            full.strip_prefix(&self.prefix)?.strip_prefix('/')
        }
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// The integrity check every upload carries, which the store verifies before accepting it.
///
/// `crc32c` uses the `x-amz-checksum-crc32c` header (AWS, recent MinIO/Ceph); `md5` the
/// classic `Content-MD5`, which every S3-compatible store honours; `none` for stores that
/// reject both (the data is still authenticated end to end by the repository format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Checksum {
    #[default]
    Crc32c,
    Md5,
    None,
}

impl FromStr for Checksum {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "crc32c" => Ok(Checksum::Crc32c),
            "md5" => Ok(Checksum::Md5),
            "none" => Ok(Checksum::None),
            other => Err(format!("unknown checksum {other:?} (crc32c, md5 or none)")),
        }
    }
}

/// Server-side encryption asked of the store (on top of the repository's own encryption).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerSideEncryption {
    /// `AES256`: keys managed by S3.
    S3Managed,
    /// `aws:kms`, with a key id or the account's default key.
    Kms { key_id: Option<String> },
}

impl ServerSideEncryption {
    /// From `--sse` and `--sse-kms-key-id`.
    ///
    /// # Errors
    /// An unknown mode, or a KMS key id without `aws:kms`.
    pub fn from_parts(
        mode: Option<&str>,
        kms_key_id: Option<&str>,
    ) -> Result<Option<Self>, String> {
        match (mode, kms_key_id) {
            (None, None) => Ok(None),
            (Some("AES256"), None) => Ok(Some(ServerSideEncryption::S3Managed)),
            (Some("AES256"), Some(_)) => Err("--sse-kms-key-id needs --sse aws:kms".into()),
            (Some("aws:kms") | None, key) => Ok(Some(ServerSideEncryption::Kms {
                key_id: key.map(str::to_string),
            })),
            (Some(other), _) => Err(format!(
                "unknown server-side encryption {other:?} (AES256 or aws:kms)"
            )),
        }
    }
}

/// Tuning and behaviour of the S3 store. [`Default`] suits AWS and a 2-core host.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// Endpoint of an S3-compatible store (`AWS_ENDPOINT_URL` is read too).
    pub endpoint: Option<String>,
    /// Region; else the AWS chain (`AWS_REGION`, profile), else `us-east-1`.
    pub region: Option<String>,
    /// Path-style addressing (`host/bucket/key`); default: on when an endpoint is set.
    pub path_style: Option<bool>,
    /// Objects larger than this go up as multipart uploads of parts this size.
    pub part_size: usize,
    /// Parts of one object uploading at once.
    pub parts_in_flight: usize,
    pub checksum: Checksum,
    pub sse: Option<ServerSideEncryption>,
    /// Storage class for pack files (objects under `data/`); others stay `STANDARD`, as
    /// they are read by every command.
    pub storage_class: Option<String>,
    /// Send `If-None-Match: *` on create-only writes (besides the HEAD check). Off for
    /// stores that reject the header.
    pub conditional_writes: bool,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with full jitter, up to 20 s.
    pub initial_backoff: Duration,
    /// How long to wait to connect, and for a response to start.
    pub timeout: Duration,
    /// List the bucket once on connect, so a missing bucket or bad credentials fail
    /// before any work. Commands run once per WAL segment skip it: their first read
    /// reports the same faults, one round trip sooner.
    pub check_bucket: bool,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            endpoint: None,
            region: None,
            path_style: None,
            part_size: 8 * 1024 * 1024,
            parts_in_flight: 4,
            checksum: Checksum::default(),
            sse: None,
            storage_class: None,
            conditional_writes: true,
            max_attempts: 8,
            initial_backoff: Duration::from_millis(250),
            timeout: Duration::from_secs(60),
            check_bucket: true,
        }
    }
}

impl S3Options {
    /// Checks limits S3 itself imposes, so a bad setting fails before any upload.
    ///
    /// # Errors
    /// A message naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(format!(
                "part size {} is outside S3's 5 MiB..5 GiB",
                self.part_size
            ));
        }
        if self.parts_in_flight == 0 {
            return Err("parts in flight must be at least 1".into());
        }
        if self.max_attempts == 0 {
            return Err("max attempts must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let loc = S3Location::parse("s3://b").unwrap();
        assert_eq!(loc.key("config"), "config");
        assert_eq!(loc.to_string(), "s3://b");
        let loc = S3Location::parse("s3://b/x/y").unwrap();
        assert_eq!(loc.key("config"), "x/y/config");
        assert_eq!(loc.relative("x/y/data/ab"), Some("data/ab"));
        assert_eq!(loc.relative("x/yz/data"), None);
        for bad in [
            "s3://",
            "s3:///p",
            "s3://b/a//c",
            "s3://b/../c",
            "s3://b c/p",
        ] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sse_parts() {
        assert_eq!(ServerSideEncryption::from_parts(None, None), Ok(None));
        assert_eq!(
            ServerSideEncryption::from_parts(Some("aws:kms"), Some("k")),
            Ok(Some(ServerSideEncryption::Kms {
                key_id: Some("k".into())
            }))
        );
        assert!(ServerSideEncryption::from_parts(Some("AES256"), Some("k")).is_err());
        assert!(ServerSideEncryption::from_parts(Some("des"), None).is_err());
    }
}
