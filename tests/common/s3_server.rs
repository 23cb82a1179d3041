//! A real S3 server over HTTP with SigV4 for tests and benchmarks: the `s3s` protocol
//! implementation over `s3s-fs`'s file-system backend, started on a loopback port.
//!
//! `s3s-fs` is a good backend but leaves out parts of S3 that stowage relies on, so a thin
//! layer here adds them the way AWS behaves:
//! - `If-None-Match: *` on PutObject and CompleteMultipartUpload (412 if the key exists);
//! - `Content-MD5` verification on PutObject and UploadPart (400 BadDigest);
//! - ListMultipartUploads (s3s-fs has none), from the uploads this server started;
//! - writes and reads without s3s-fs's MD5 ETags: it hashes the whole object on every PUT,
//!   part, completion and (ranged) GET, which made this server, not the client under test,
//!   the bottleneck of every benchmark. Objects are written here (temporary file, rename),
//!   parts are kept in memory until completion, and ETags are CRC32C (hardware-assisted).
//!
//! It also records the headers each write carried ([`WriteRecord`]), so tests can check
//! what stowage asked for (checksums, server-side encryption, storage class).
//!
//! Objects live as plain files at `<root>/<bucket>/<key>`, so tests can damage them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine;
use bytes::Bytes;
use futures::TryStreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use md5::{Digest, Md5};
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};

use super::serve::Serving;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

pub const ACCESS_KEY: &str = "stowage-test-access";
pub const SECRET_KEY: &str = "stowage-test-secret-key-0123456789";
pub const REGION: &str = "us-east-1";

/// One multipart upload this server started and has not finished.
#[derive(Debug, Clone)]
struct Upload {
    bucket: String,
    key: String,
    started: SystemTime,
    parts: BTreeMap<i32, Vec<Bytes>>,
}

/// What one write (PutObject, or the uploads of a multipart object) asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteRecord {
    pub sse: Option<String>,
    pub kms_key_id: Option<String>,
    pub storage_class: Option<String>,
    /// Every body (the object, or each part) carried a Content-MD5.
    pub md5: bool,
    /// Every body carried an x-amz-checksum-crc32c (header or trailer).
    pub crc32c: bool,
    /// Parts uploaded (0 for a single PUT).
    pub parts: usize,
}

/// The server's state; [`TestS3`] shares it between the service and [`S3Server`].
#[derive(Debug)]
struct Inner {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
    uploads: Mutex<BTreeMap<String, Upload>>,
    /// Keyed by object key (without bucket).
    writes: Mutex<BTreeMap<String, WriteRecord>>,
    /// Held from the existence check to the write of a conditional request, so that
    /// `If-None-Match: *` is atomic as on AWS.
    conditional: tokio::sync::Mutex<()>,
    /// Names temporary files.
    counter: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Clone)]
struct TestS3(Arc<Inner>);

impl std::ops::Deref for TestS3 {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Whether a request carried a CRC32C checksum, as a header or announced as a trailer.
fn has_crc32c(headers: &hyper::HeaderMap, field: Option<&String>) -> bool {
    field.is_some()
        || headers.contains_key("x-amz-checksum-crc32c")
        || headers
            .get("x-amz-trailer")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"x-amz-checksum-crc32c"))
}

impl TestS3 {
    fn object_path(&self, bucket: &str, key: &str) -> S3Result<PathBuf> {
        if key
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(s3_error!(InvalidArgument, "bad key"));
        }
        Ok(self.root.join(bucket).join(key))
    }
}

/// Reads a whole request body (as the chunks it arrived in: no copy) and checks it
/// against `Content-MD5` and `x-amz-checksum-crc32c`, when sent, as S3 does (400
/// BadDigest on a mismatch).
async fn checked_body(
    body: Option<StreamingBlob>,
    md5: Option<&str>,
    crc: Option<&str>,
) -> S3Result<Vec<Bytes>> {
    let Some(mut body) = body else {
        return Err(s3_error!(IncompleteBody));
    };
    let mut chunks = Vec::new();
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| s3_error!(IncompleteBody, "{e}"))?
    {
        chunks.push(chunk);
    }
    let b64 = |raw: &[u8]| base64::engine::general_purpose::STANDARD.encode(raw);
    if let Some(expected) = md5 {
        let mut hasher = Md5::new();
        chunks.iter().for_each(|c| hasher.update(c));
        if expected != b64(&hasher.finalize()) {
            return Err(s3_error!(BadDigest, "Content-MD5 mismatch"));
        }
    }
    if let Some(expected) = crc {
        let actual = chunks
            .iter()
            .fold(0, |crc, c| crc32c::crc32c_append(crc, c));
        if expected != b64(&actual.to_be_bytes()) {
            return Err(s3_error!(BadDigest, "x-amz-checksum-crc32c mismatch"));
        }
    }
    Ok(chunks)
}

fn etag(chunks: &[Bytes]) -> String {
    let crc = chunks
        .iter()
        .fold(0, |crc, chunk| crc32c::crc32c_append(crc, chunk));
    format!("\"{crc:08x}-{}\"", chunks.len())
}

impl TestS3 {
    /// Writes `chunks` as the object at `path`: a temporary file, then a rename, so readers
    /// see all or nothing.
    async fn write_object(&self, path: PathBuf, chunks: Vec<Bytes>) -> S3Result<()> {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.root.join(".tmp").join(n.to_string());
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let dir = path
                .parent()
                .ok_or_else(|| std::io::Error::other("no parent"))?;
            std::fs::create_dir_all(dir)?;
            std::fs::create_dir_all(tmp.parent().unwrap_or(dir))?;
            let mut file = std::fs::File::create(&tmp)?;
            for chunk in &chunks {
                file.write_all(chunk)?;
            }
            drop(file);
            std::fs::rename(&tmp, &path)
        })
        .await
        .map_err(|e| s3_error!(InternalError, "{e}"))?
        .map_err(|e| s3_error!(InternalError, "{e}"))
    }
}

#[async_trait::async_trait]
impl S3 for TestS3 {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.fs.create_bucket(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let path = self.object_path(&req.input.bucket, &req.input.key)?;
        if !path.is_file() {
            return Err(s3_error!(NoSuchKey));
        }
        self.fs.head_object(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let path = self.object_path(&input.bucket, &input.key)?;
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|_| s3_error!(NoSuchKey))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| s3_error!(InternalError, "{e}"))?
            .len();
        let (start, end) = match input.range {
            None => (0, size),
            Some(range) => {
                let r = range.check(size)?;
                (r.start, r.end)
            }
        };
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| s3_error!(InternalError, "{e}"))?;
        let len = usize::try_from(end - start).map_err(|_| s3_error!(InvalidRange))?;
        let mut buf = vec![0u8; len];
        file.read_exact(&mut buf)
            .await
            .map_err(|e| s3_error!(InternalError, "{e}"))?;
        let output = GetObjectOutput {
            body: Some(StreamingBlob::from(s3s::Body::from(Bytes::from(buf)))),
            content_length: Some(len as i64),
            content_range: input
                .range
                .map(|_| format!("bytes {start}-{}/{size}", end.saturating_sub(1))),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let path = self.object_path(&req.input.bucket, &req.input.key)?;
        let record = WriteRecord {
            sse: req
                .input
                .server_side_encryption
                .as_ref()
                .map(|v| v.as_str().to_string()),
            kms_key_id: req.input.ssekms_key_id.clone(),
            storage_class: req
                .input
                .storage_class
                .as_ref()
                .map(|v| v.as_str().to_string()),
            md5: req.input.content_md5.is_some(),
            crc32c: has_crc32c(&req.headers, req.input.checksum_crc32c.as_ref()),
            parts: 0,
        };
        let key = req.input.key.clone();
        let body = checked_body(
            req.input.body,
            req.input.content_md5.as_deref(),
            req.input.checksum_crc32c.as_deref(),
        )
        .await?;
        let _guard = match req.input.if_none_match {
            Some(_) => Some(self.conditional.lock().await),
            None => None,
        };
        if _guard.is_some() && path.exists() {
            return Err(s3_error!(PreconditionFailed));
        }
        let e_tag = etag(&body);
        self.write_object(path, body).await?;
        self.writes.lock().unwrap().insert(key, record);
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(e_tag),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.fs.delete_object(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.fs.list_objects_v2(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let record = WriteRecord {
            sse: req
                .input
                .server_side_encryption
                .as_ref()
                .map(|v| v.as_str().to_string()),
            kms_key_id: req.input.ssekms_key_id.clone(),
            storage_class: req
                .input
                .storage_class
                .as_ref()
                .map(|v| v.as_str().to_string()),
            md5: true,
            crc32c: true,
            parts: 0,
        };
        self.writes.lock().unwrap().insert(key.clone(), record);
        let id = format!(
            "upload-{}",
            self.counter
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        self.uploads.lock().unwrap().insert(
            id.clone(),
            Upload {
                bucket: bucket.clone(),
                key: key.clone(),
                started: SystemTime::now(),
                parts: BTreeMap::new(),
            },
        );
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(bucket),
            key: Some(key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let (md5, crc32c) = (
            req.input.content_md5.is_some(),
            has_crc32c(&req.headers, req.input.checksum_crc32c.as_ref()),
        );
        let input = req.input;
        let body = checked_body(
            input.body,
            input.content_md5.as_deref(),
            input.checksum_crc32c.as_deref(),
        )
        .await?;
        let e_tag = etag(&body);
        {
            let mut uploads = self.uploads.lock().unwrap();
            let Some(upload) = uploads.get_mut(&input.upload_id) else {
                return Err(s3_error!(NoSuchUpload));
            };
            upload.parts.insert(input.part_number, body);
        }
        if let Some(record) = self.writes.lock().unwrap().get_mut(&input.key) {
            record.md5 &= md5;
            record.crc32c &= crc32c;
            record.parts += 1;
        }
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(e_tag),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let path = self.object_path(&input.bucket, &input.key)?;
        let _guard = match input.if_none_match {
            Some(_) => Some(self.conditional.lock().await),
            None => None,
        };
        if _guard.is_some() && path.exists() {
            return Err(s3_error!(PreconditionFailed));
        }
        let wanted: Vec<i32> = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .iter()
            .map(|p| p.part_number.unwrap_or(0))
            .collect();
        let chunks = {
            let uploads = self.uploads.lock().unwrap();
            let Some(upload) = uploads.get(&input.upload_id) else {
                return Err(s3_error!(NoSuchUpload));
            };
            if wanted.is_empty() || wanted.windows(2).any(|w| w[0] >= w[1]) {
                return Err(s3_error!(InvalidPartOrder));
            }
            wanted
                .iter()
                .map(|n| {
                    upload
                        .parts
                        .get(n)
                        .cloned()
                        .ok_or_else(|| s3_error!(InvalidPart))
                })
                .collect::<S3Result<Vec<Vec<Bytes>>>>()?
                .concat()
        };
        let e_tag = etag(&chunks);
        self.write_object(path, chunks).await?;
        self.uploads.lock().unwrap().remove(&input.upload_id);
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(e_tag),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        match self.uploads.lock().unwrap().remove(&req.input.upload_id) {
            Some(_) => Ok(S3Response::new(AbortMultipartUploadOutput::default())),
            None => Err(s3_error!(NoSuchUpload)),
        }
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let uploads: Vec<MultipartUpload> = self
            .uploads
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, u)| u.bucket == input.bucket && u.key.starts_with(&prefix))
            .map(|(id, u)| MultipartUpload {
                key: Some(u.key.clone()),
                upload_id: Some(id.clone()),
                initiated: Some(Timestamp::from(u.started)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            uploads: Some(uploads),
            is_truncated: Some(false),
            ..Default::default()
        }))
    }
}

/// A running server; stops when dropped.
pub struct S3Server {
    pub addr: SocketAddr,
    pub root: PathBuf,
    state: TestS3,
    _serving: Serving,
}

impl S3Server {
    /// Serves `root` (created if missing) on a free loopback port, with `buckets` made.
    pub fn start(root: &Path, buckets: &[&str]) -> S3Server {
        Self::start_on(root, buckets, "127.0.0.1:0".parse().unwrap())
    }

    pub fn start_on(root: &Path, buckets: &[&str], addr: SocketAddr) -> S3Server {
        for bucket in buckets {
            std::fs::create_dir_all(root.join(bucket)).unwrap();
        }
        let root = root.canonicalize().unwrap();
        let state = TestS3(Arc::new(Inner {
            fs: s3s_fs::FileSystem::new(&root).unwrap(),
            root: root.clone(),
            uploads: Mutex::new(BTreeMap::new()),
            writes: Mutex::new(BTreeMap::new()),
            conditional: tokio::sync::Mutex::new(()),
            counter: std::sync::atomic::AtomicU64::new(0),
        }));
        let mut builder = S3ServiceBuilder::new(state.clone());
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build().into_shared();
        let http = ConnBuilder::new(TokioExecutor::new());
        let serving = Serving::start(addr, move |socket| {
            let conn = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            async move {
                let _ = conn.await;
            }
        });
        S3Server {
            addr: serving.addr,
            root,
            state,
            _serving: serving,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        self.state.uploads.lock().unwrap().len()
    }

    /// What the last write of each object key asked for (keys include the prefix).
    pub fn writes(&self) -> BTreeMap<String, WriteRecord> {
        self.state.writes.lock().unwrap().clone()
    }

    /// Environment for a process that should use this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        aws_env(&self.endpoint())
    }
}

/// AWS variables pointing a client at `endpoint` with the test credentials, and nothing
/// from the host's own AWS set-up.
pub fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
        ("AWS_REGION", REGION.to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("AWS_CONFIG_FILE", "/dev/null".to_string()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_string()),
    ]
}
