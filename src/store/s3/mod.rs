//! A repository in an S3 bucket (AWS, or any S3-compatible store over HTTP).
//!
//! The store keeps the [`ObjectStore`](crate::store::ObjectStore) invariants with what S3
//! guarantees: a PUT or a CompleteMultipartUpload is atomic and durable when it returns,
//! so an object is absent or whole, and nothing in the repository names an object before
//! that call returned (the repository writes packs, then the index, then the snapshot).
//!
//! Retries: the SDK retries every request (5xx, `SlowDown`, throttling, timeouts,
//! connection resets) with exponential backoff and full jitter, up to
//! [`S3Options::max_attempts`]. A response body cut short after its headers is beyond the
//! SDK's reach, so reads retry that themselves. A multipart upload that finally fails is
//! aborted; one whose process was killed is left for `stowage gc`
//! ([`ObjectStore::list_incomplete`]).
//!
//! Create-only writes send `If-None-Match: *`, which AWS and recent S3-compatible stores
//! enforce atomically; multipart ones check with HEAD first too (which saves uploading a
//! pack another backup already stored), and so do all of them when conditional writes
//! are off, where the HEAD check is what remains: safe for everything content-addressed;
//! two writers racing to create one WAL object could then both succeed, which only two
//! clusters archiving under one name could make differ, and that is refused earlier by
//! the cluster record.

mod errors;
mod options;
mod upload;

pub use options::{
    Checksum, S3Location, S3Options, ServerSideEncryption, MAX_PARTS, MAX_PART_SIZE, MIN_PART_SIZE,
};

use std::future::Future;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};

use self::errors::{body_error, classify, Ctx};
use super::{IncompleteUpload, ObjectKey, ObjectMeta, ObjectStore, PutMode, StoreError};

/// Upper bound of one retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// Times a read whose body was cut short is tried again (each try is itself retried by
/// the SDK up to `max_attempts` until headers arrive).
const BODY_ATTEMPTS: u32 = 4;

/// An [`ObjectStore`] over `s3://bucket/prefix`.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    location: S3Location,
    options: S3Options,
}

impl S3Store {
    /// Connects with the standard AWS credential chain (environment, profile, SSO,
    /// instance and IRSA roles) and checks that the bucket is there and reachable, so a
    /// missing bucket, rejected credentials or a wrong region are reported before any work.
    ///
    /// # Errors
    /// [`StoreError::BadLocation`] (bad location, no bucket, wrong region),
    /// [`StoreError::Denied`] (credentials), or [`StoreError::Remote`].
    pub async fn connect(location: &str, options: S3Options) -> Result<Self, StoreError> {
        let bad = |reason: String| StoreError::BadLocation {
            location: location.to_string(),
            reason,
        };
        let parsed = S3Location::parse(location).map_err(bad)?;
        options.validate().map_err(bad)?;

        let retry = RetryConfig::standard()
            .with_max_attempts(options.max_attempts)
            .with_initial_backoff(options.initial_backoff)
            .with_max_backoff(MAX_BACKOFF);
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(options.timeout)
            .read_timeout(options.timeout)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(retry)
            .timeout_config(timeouts);
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &options.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        let custom_endpoint = shared.endpoint_url().is_some();
        // Checksums are asked for explicitly per request (see `Checksum`); the SDK's
        // automatic ones would add headers some S3-compatible stores reject.
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .force_path_style(options.path_style.unwrap_or(custom_endpoint));
        if shared.region().is_none() {
            config = config.region(Region::from_static("us-east-1"));
        }
        let store = S3Store {
            client: Client::from_conf(config.build()),
            location: parsed,
            options,
        };
        if store.options.check_bucket {
            store.check_bucket().await?;
        }
        Ok(store)
    }

    /// One cheap listing: unlike HEAD, its error responses carry a code, which tells a
    /// missing bucket, a bad key id, a bad secret and a wrong region apart.
    async fn check_bucket(&self) -> Result<(), StoreError> {
        self.client
            .list_objects_v2()
            .bucket(&self.location.bucket)
            .prefix(self.location.key("config"))
            .max_keys(1)
            .send()
            .await
            .map(drop)
            .map_err(|e| classify(e, &self.ctx("open bucket", None)))
    }

    fn ctx<'a>(&'a self, op: &'static str, key: Option<&'a ObjectKey>) -> Ctx<'a> {
        Ctx {
            op,
            location: &self.location,
            key,
        }
    }

    fn full_key(&self, key: &ObjectKey) -> String {
        self.location.key(key.as_str())
    }

    /// Reads an object or a range of it, retrying a body cut short.
    async fn read(&self, key: &ObjectKey, range: Option<Range<u64>>) -> Result<Bytes, StoreError> {
        let ctx = self.ctx("get", Some(key));
        let full = self.full_key(key);
        retry_body(&self.options, || async {
            let mut request = self
                .client
                .get_object()
                .bucket(&self.location.bucket)
                .key(&full);
            if let Some(range) = &range {
                request = request.range(format!("bytes={}-{}", range.start, range.end - 1));
            }
            let output = match request.send().await {
                Ok(output) => output,
                Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(416) => {
                    return Err(Attempt::Final(self.out_of_range(key, range.clone()).await));
                }
                Err(e) => return Err(Attempt::Final(classify(e, &ctx))),
            };
            let expected = output
                .content_length()
                .and_then(|n| usize::try_from(n).ok());
            let mut buf = BytesMut::with_capacity(expected.unwrap_or(0));
            let mut body = output.body;
            while let Some(chunk) = body
                .try_next()
                .await
                .map_err(|e| Attempt::Again(body_error(&ctx, e)))?
            {
                buf.extend_from_slice(&chunk);
            }
            if expected.is_some_and(|n| n != buf.len()) {
                return Err(Attempt::Again(body_error(
                    &ctx,
                    "fewer bytes than announced",
                )));
            }
            if let Some(range) = &range {
                // S3 answers a range that runs past the end with the bytes it has.
                if buf.len() as u64 != range.end - range.start {
                    return Err(Attempt::Final(
                        self.out_of_range(key, Some(range.clone())).await,
                    ));
                }
            }
            Ok(buf.freeze())
        })
        .await
    }

    async fn out_of_range(&self, key: &ObjectKey, range: Option<Range<u64>>) -> StoreError {
        let range = range.unwrap_or(0..0);
        match self.head(key).await {
            Ok(meta) => StoreError::RangeOutOfBounds {
                key: key.clone(),
                start: range.start,
                end: range.end,
                size: meta.size,
            },
            Err(e) => e,
        }
    }
}

/// One try of a read: worth another, or the verdict.
enum Attempt {
    Again(StoreError),
    Final(StoreError),
}

/// Runs `attempt` until it succeeds, fails for good, or [`BODY_ATTEMPTS`] are spent.
async fn retry_body<T, F, Fut>(options: &S3Options, mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(Attempt::Final(e)) => return Err(e),
            Err(Attempt::Again(e)) if tries >= BODY_ATTEMPTS => return Err(e),
            Err(Attempt::Again(e)) => {
                tracing::warn!("{e}; trying again");
                tokio::time::sleep(backoff(options.initial_backoff, tries)).await;
                tries += 1;
            }
        }
    }
}

/// Exponential backoff with full jitter: a random delay in `[0, initial * 2^(try-1)]`.
fn backoff(initial: Duration, tries: u32) -> Duration {
    let cap = initial
        .saturating_mul(1u32 << tries.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let mut raw = [0u8; 4];
    let _ = getrandom::getrandom(&mut raw);
    cap.mul_f64(f64::from(u32::from_le_bytes(raw)) / f64::from(u32::MAX))
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &ObjectKey, body: Bytes, mode: PutMode) -> Result<(), StoreError> {
        // With `If-None-Match` a single PUT answers "already exists" by itself, so the HEAD
        // only pays where it can save an upload (a multipart pack) or is the only check.
        let head_first = !self.options.conditional_writes || body.len() > self.options.part_size;
        if mode == PutMode::Create && head_first {
            match self.head(key).await {
                Ok(_) => return Err(StoreError::AlreadyExists { key: key.clone() }),
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        upload::put(self, key, body, mode).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StoreError> {
        self.read(key, None).await
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        if range.start >= range.end {
            // S3 has no empty range; check the bounds and answer locally.
            let size = self.head(key).await?.size;
            if range.start > range.end || range.end > size {
                return Err(StoreError::RangeOutOfBounds {
                    key: key.clone(),
                    start: range.start,
                    end: range.end,
                    size,
                });
            }
            return Ok(Bytes::new());
        }
        self.read(key, Some(range)).await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        let output = self
            .client
            .head_object()
            .bucket(&self.location.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| classify(e, &self.ctx("head", Some(key))))?;
        Ok(ObjectMeta {
            key: key.clone(),
            size: output
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let ctx = self.ctx("list", None);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.location.bucket)
            .prefix(self.location.key(prefix))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(e, &ctx))?;
            for object in page.contents() {
                let Some(rel) = object.key().and_then(|k| self.location.relative(k)) else {
                    continue;
                };
                // Keys the repository could not have written are not its objects.
                let Ok(key) = ObjectKey::new(rel) else {
                    continue;
                };
                let size = object
                    .size()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0);
                out.push(ObjectMeta { key, size });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        match self
            .client
            .delete_object()
            .bucket(&self.location.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match classify(e, &self.ctx("delete", Some(key))) {
                StoreError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn list_incomplete(&self) -> Result<Vec<IncompleteUpload>, StoreError> {
        let ctx = self.ctx("list multipart uploads", None);
        let prefix = self.location.key("");
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.location.bucket)
                .prefix(&prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| classify(e, &ctx))?;
            for upload in page.uploads() {
                let (Some(full), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let Some(rel) = self.location.relative(full) else {
                    continue;
                };
                out.push(IncompleteUpload {
                    key: rel.to_string(),
                    id: id.to_string(),
                    started: upload
                        .initiated()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                });
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn abort_incomplete(&self, upload: &IncompleteUpload) -> Result<(), StoreError> {
        upload::abort(self, &self.location.key(&upload.key), &upload.id).await
    }

    fn location(&self) -> String {
        self.location.to_string()
    }
}
