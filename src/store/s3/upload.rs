//! Writing objects: one PUT for small ones, a multipart upload for the rest.
//!
//! A multipart upload sends the parts of one object concurrently (up to
//! [`S3Options::parts_in_flight`](super::S3Options)); the parts are slices of the body the
//! caller already holds, so it costs no memory beyond what the pipeline has budgeted.
//! Until CompleteMultipartUpload returns, the object does not exist; if any part finally
//! fails, the upload is aborted so the parts do not linger (and bill).

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption as Sse,
    StorageClass,
};
use base64::Engine;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};

use super::errors::classify;
use super::options::{Checksum, ServerSideEncryption, MAX_PARTS};
use super::S3Store;
use crate::store::{ObjectKey, ObjectStore, PutMode, StoreError};

/// Prefix of the objects that take the configured storage class: pack files.
const PACK_PREFIX: &str = "data/";

/// What every write of one object carries, worked out once.
struct WriteHeaders {
    sse: Option<Sse>,
    kms_key: Option<String>,
    storage_class: Option<StorageClass>,
    checksum: Checksum,
    if_none_match: Option<String>,
}

impl WriteHeaders {
    fn new(store: &S3Store, key: &ObjectKey, mode: PutMode) -> Self {
        let (sse, kms_key) = match &store.options.sse {
            None => (None, None),
            Some(ServerSideEncryption::S3Managed) => (Some(Sse::Aes256), None),
            Some(ServerSideEncryption::Kms { key_id }) => (Some(Sse::AwsKms), key_id.clone()),
        };
        let storage_class = store
            .options
            .storage_class
            .as_deref()
            .filter(|_| key.as_str().starts_with(PACK_PREFIX))
            .map(StorageClass::from);
        let if_none_match =
            (mode == PutMode::Create && store.options.conditional_writes).then(|| "*".to_string());
        WriteHeaders {
            sse,
            kms_key,
            storage_class,
            checksum: store.options.checksum,
            if_none_match,
        }
    }

    /// Whether SigV4 should hash the body too. With a checksum the store verifies, that
    /// SHA-256 pass over every byte adds no protection (and the repository's own AEAD and
    /// blake3 ids already catch tampering), so it is skipped; without one it is the only
    /// transit check left.
    fn sign_payload(&self) -> bool {
        self.checksum == Checksum::None
    }

    fn algorithm(&self) -> Option<ChecksumAlgorithm> {
        (self.checksum == Checksum::Crc32c).then_some(ChecksumAlgorithm::Crc32C)
    }
}

/// The checksum header values of one body: (`Content-MD5`, `x-amz-checksum-crc32c`),
/// base64 as S3 wants them. MD5 runs off the async workers (8 MiB is ~15 ms of CPU);
/// CRC32C is hardware-assisted and cheap.
async fn body_checksums(checksum: Checksum, body: &Bytes) -> (Option<String>, Option<String>) {
    let b64 = |raw: &[u8]| base64::engine::general_purpose::STANDARD.encode(raw);
    match checksum {
        Checksum::None => (None, None),
        Checksum::Crc32c => (None, Some(b64(&crc32c::crc32c(body).to_be_bytes()))),
        Checksum::Md5 => {
            let body = body.clone();
            let digest = tokio::task::spawn_blocking(move || Md5::digest(&body)).await;
            (digest.ok().map(|d| b64(&d)), None)
        }
    }
}

/// The HTTP status of a failed request, when a response arrived.
fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// Whether the store refused a conditional write because the object exists.
fn precondition_failed<E>(err: &SdkError<E, HttpResponse>) -> bool {
    status(err) == Some(412)
}

/// Stores `body` under `key`: one PUT up to the part size, multipart beyond.
pub(super) async fn put(
    store: &S3Store,
    key: &ObjectKey,
    body: Bytes,
    mode: PutMode,
) -> Result<(), StoreError> {
    let headers = WriteHeaders::new(store, key, mode);
    if body.len() <= store.options.part_size {
        put_single(store, key, body, &headers).await
    } else {
        put_multipart(store, key, body, &headers).await
    }
}

async fn put_single(
    store: &S3Store,
    key: &ObjectKey,
    body: Bytes,
    headers: &WriteHeaders,
) -> Result<(), StoreError> {
    let (md5, crc) = body_checksums(headers.checksum, &body).await;
    let request = store
        .client
        .put_object()
        .bucket(&store.location.bucket)
        .key(store.full_key(key))
        .content_length(i64::try_from(body.len()).unwrap_or(i64::MAX))
        .body(ByteStream::from(body))
        .set_content_md5(md5)
        .set_checksum_crc32_c(crc)
        .set_server_side_encryption(headers.sse.clone())
        .set_ssekms_key_id(headers.kms_key.clone())
        .set_storage_class(headers.storage_class.clone())
        .set_if_none_match(headers.if_none_match.clone());
    let result = if headers.sign_payload() {
        request.send().await
    } else {
        request.customize().disable_payload_signing().send().await
    };
    match result {
        Ok(_) => Ok(()),
        Err(e) if precondition_failed(&e) => Err(StoreError::AlreadyExists { key: key.clone() }),
        Err(e) => Err(classify(e, &store.ctx("put", Some(key)))),
    }
}

/// Part size for a body: the configured one, grown if the body would need more than
/// S3's 10 000 parts.
fn part_size(configured: usize, len: usize) -> usize {
    configured.max(len.div_ceil(MAX_PARTS))
}

async fn put_multipart(
    store: &S3Store,
    key: &ObjectKey,
    body: Bytes,
    headers: &WriteHeaders,
) -> Result<(), StoreError> {
    let full = store.full_key(key);
    let created = store
        .client
        .create_multipart_upload()
        .bucket(&store.location.bucket)
        .key(&full)
        .set_checksum_algorithm(headers.algorithm())
        .set_server_side_encryption(headers.sse.clone())
        .set_ssekms_key_id(headers.kms_key.clone())
        .set_storage_class(headers.storage_class.clone())
        .send()
        .await
        .map_err(|e| classify(e, &store.ctx("start multipart upload", Some(key))))?;
    let upload_id = created.upload_id().unwrap_or_default().to_string();
    if upload_id.is_empty() {
        return Err(StoreError::Remote {
            op: "start multipart upload",
            target: format!("{}/{key}", store.location),
            detail: "the store returned no upload id".into(),
            retryable: false,
        });
    }
    let result = send_parts(store, key, &full, &upload_id, body, headers).await;
    if result.is_err() {
        if let Err(e) = abort(store, &full, &upload_id).await {
            tracing::warn!(
                "could not abort multipart upload {upload_id} of {key}: {e}; `stowage gc` will"
            );
        }
    }
    result
}

async fn send_parts(
    store: &S3Store,
    key: &ObjectKey,
    full: &str,
    upload_id: &str,
    body: Bytes,
    headers: &WriteHeaders,
) -> Result<(), StoreError> {
    let size = part_size(store.options.part_size, body.len());
    let parts = (0..body.len().div_ceil(size)).map(|i| {
        let end = ((i + 1) * size).min(body.len());
        (i as i32 + 1, body.slice(i * size..end))
    });
    let mut completed: Vec<CompletedPart> = futures::stream::iter(parts)
        .map(|(number, part)| send_part(store, key, full, upload_id, number, part, headers))
        .buffer_unordered(store.options.parts_in_flight)
        .try_collect()
        .await?;
    completed.sort_by_key(|p| p.part_number());

    let result = store
        .client
        .complete_multipart_upload()
        .bucket(&store.location.bucket)
        .key(full)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .set_if_none_match(headers.if_none_match.clone())
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if precondition_failed(&e) => Err(StoreError::AlreadyExists { key: key.clone() }),
        Err(e) => {
            let err = classify(e, &store.ctx("complete multipart upload", Some(key)));
            // A completion whose answer was lost and retried finds the upload gone; the
            // object being there in full is the proof it went through.
            match store.head(key).await {
                Ok(meta) if meta.size == body.len() as u64 => Ok(()),
                _ => Err(err),
            }
        }
    }
}

async fn send_part(
    store: &S3Store,
    key: &ObjectKey,
    full: &str,
    upload_id: &str,
    number: i32,
    part: Bytes,
    headers: &WriteHeaders,
) -> Result<CompletedPart, StoreError> {
    let (md5, crc) = body_checksums(headers.checksum, &part).await;
    let request = store
        .client
        .upload_part()
        .bucket(&store.location.bucket)
        .key(full)
        .upload_id(upload_id)
        .part_number(number)
        .content_length(i64::try_from(part.len()).unwrap_or(i64::MAX))
        .body(ByteStream::from(part))
        .set_content_md5(md5)
        .set_checksum_crc32_c(crc.clone());
    let sent = if headers.sign_payload() {
        request.send().await
    } else {
        request.customize().disable_payload_signing().send().await
    };
    let output = sent.map_err(|e| classify(e, &store.ctx("upload part", Some(key))))?;
    Ok(CompletedPart::builder()
        .part_number(number)
        .set_e_tag(output.e_tag().map(str::to_string))
        .set_checksum_crc32_c(crc)
        .build())
}

/// Aborts a multipart upload; one already gone is not an error.
pub(super) async fn abort(store: &S3Store, full: &str, upload_id: &str) -> Result<(), StoreError> {
    let result = store
        .client
        .abort_multipart_upload()
        .bucket(&store.location.bucket)
        .key(full)
        .upload_id(upload_id)
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if status(&e) == Some(404) => Ok(()),
        Err(e) => Err(classify(e, &store.ctx("abort multipart upload", None))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_grows_past_ten_thousand_parts() {
        assert_eq!(part_size(8 << 20, 16 << 20), 8 << 20);
        let huge = 100 * 1024 * 1024 * 1024usize;
        assert!(huge.div_ceil(part_size(8 << 20, huge)) <= MAX_PARTS);
    }
}
