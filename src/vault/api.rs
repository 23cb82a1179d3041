//! Vault's raft snapshot endpoints over HTTP(S):
//! `GET /v1/sys/storage/raft/snapshot` (take one) and `POST /v1/sys/storage/raft/snapshot`
//! or `…/snapshot-force` (restore one).
//!
//! Why hyper and rustls directly: the S3 client already links them, so talking to Vault
//! adds no TLS stack. Both directions stream: a download is read by the backup source as
//! it arrives ([`SnapshotDownload`], a bounded queue of body frames), an upload's body is
//! produced while it is sent.
//!
//! Rules, as the `vault` CLI has them:
//! 1. TLS is verified. `VAULT_CACERT` (a PEM file) or `VAULT_CAPATH` (a directory of them)
//!    replace the system's roots; nothing turns verification off.
//! 2. The token goes in `X-Vault-Token`, the namespace (when set) in `X-Vault-Namespace`.
//! 3. A standby answers with a redirect (307) to the active node; up to
//!    [`MAX_REDIRECTS`] are followed. A POST is redirected before its body matters, and
//!    the caller sends it again to the new address ([`PostOutcome::Redirect`]).
//! 4. Any other status than 2xx is an error naming the method, URL, status and the
//!    messages of Vault's `{"errors": […]}` body.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::http::uri::Uri;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

/// The snapshot endpoint.
pub const SNAPSHOT_PATH: &str = "/v1/sys/storage/raft/snapshot";
/// The restore endpoint that accepts a snapshot from another cluster (other keys).
pub const SNAPSHOT_FORCE_PATH: &str = "/v1/sys/storage/raft/snapshot-force";
/// The address the `vault` CLI uses when `VAULT_ADDR` is unset.
pub const DEFAULT_ADDRESS: &str = "https://127.0.0.1:8200";
/// Redirects followed (standby → active) before giving up.
pub const MAX_REDIRECTS: usize = 5;
/// Longest error body read for its messages.
const ERROR_BODY_MAX: usize = 64 * 1024;
/// Body frames queued between the network and the reading thread (frames are at most a
/// few tens of KiB, so this bounds a download's buffer to a few MiB).
const FRAMES_QUEUED: usize = 64;

/// The body of requests this client sends.
pub type RequestBody = UnsyncBoxBody<Bytes, io::Error>;

/// How to reach a Vault server, as `VAULT_*` variables and flags give it.
#[derive(Clone)]
pub struct VaultConfig {
    /// `VAULT_ADDR`: `https://host:8200` (or `http://` for a dev server).
    pub address: String,
    pub token: Zeroizing<String>,
    /// `VAULT_NAMESPACE` (Vault Enterprise).
    pub namespace: Option<String>,
    /// `VAULT_CACERT`.
    pub ca_cert: Option<PathBuf>,
    /// `VAULT_CAPATH`.
    pub ca_path: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum VaultApiError {
    #[error("Vault address {address:?}: {reason}")]
    BadAddress { address: String, reason: String },
    #[error("CA certificates {path}: {reason}")]
    CaCert { path: PathBuf, reason: String },
    #[error("setting up TLS")]
    Tls(#[source] rustls::Error),
    #[error("{method} {url}")]
    Request {
        method: Method,
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("{method} {url}: Vault answered {status}{}", messages(errors))]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        errors: Vec<String>,
    },
    #[error("{method} {url}: more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects { method: Method, url: String },
    #[error("{method} {url}: redirect without a usable Location")]
    BadRedirect { method: Method, url: String },
}

fn messages(errors: &[String]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!(": {}", errors.join("; "))
    }
}

/// A client for one Vault server.
pub struct VaultClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, RequestBody>,
    base: Uri,
    token: Zeroizing<String>,
    namespace: Option<String>,
}

/// What a POST came to.
#[derive(Debug)]
pub enum PostOutcome {
    /// Vault accepted the snapshot (2xx).
    Done,
    /// Send it again to this URL (a standby pointed at the active node).
    Redirect(Uri),
}

/// Certificates from one PEM file.
fn pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, VaultApiError> {
    let failed = |reason: String| VaultApiError::CaCert {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| failed(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(e.to_string()))?;
    if certs.is_empty() {
        return Err(failed("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// The roots TLS trusts: the given CA file or directory, else the system's.
fn root_store(config: &VaultConfig) -> Result<rustls::RootCertStore, VaultApiError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut given = Vec::new();
    if let Some(file) = &config.ca_cert {
        given.extend(pem_certs(file)?);
    }
    if let Some(dir) = &config.ca_path {
        let listing = std::fs::read_dir(dir).map_err(|e| VaultApiError::CaCert {
            path: dir.clone(),
            reason: e.to_string(),
        })?;
        for entry in listing.flatten() {
            let path = entry.path();
            if path.is_file() {
                // A directory of CAs may hold other files (hash links, READMEs).
                given.extend(pem_certs(&path).unwrap_or_default());
            }
        }
    }
    if config.ca_cert.is_some() || config.ca_path.is_some() {
        for cert in given {
            roots.add(cert).map_err(VaultApiError::Tls)?;
        }
    } else {
        // Unreadable system certificates are skipped, as every rustls client does.
        let _ = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    Ok(roots)
}

impl VaultClient {
    /// A client for `config.address`.
    ///
    /// # Errors
    /// A malformed address, an unreadable CA file, or no usable TLS setup.
    pub fn new(config: &VaultConfig) -> Result<VaultClient, VaultApiError> {
        let address = config.address.trim_end_matches('/');
        let base: Uri = address.parse().map_err(|e: hyper::http::uri::InvalidUri| {
            VaultApiError::BadAddress {
                address: config.address.clone(),
                reason: e.to_string(),
            }
        })?;
        if !matches!(base.scheme_str(), Some("http" | "https")) || base.host().is_none() {
            return Err(VaultApiError::BadAddress {
                address: config.address.clone(),
                reason: "not an http:// or https:// URL with a host".into(),
            });
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(VaultApiError::Tls)?
            .with_root_certificates(root_store(config)?)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(30)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(VaultClient {
            client: Client::builder(TokioExecutor::new()).build(https),
            base,
            token: config.token.clone(),
            namespace: config.namespace.clone().filter(|ns| !ns.is_empty()),
        })
    }

    /// The URL of `path` on this server (keeping a path prefix of the address, as behind a
    /// proxy).
    pub fn url(&self, path: &str) -> Uri {
        let prefix = self.base.path().trim_end_matches('/');
        let mut parts = self.base.clone().into_parts();
        parts.path_and_query = format!("{prefix}{path}").parse().ok();
        Uri::from_parts(parts).unwrap_or_else(|_| self.base.clone())
    }

    async fn send(
        &self,
        method: Method,
        url: &Uri,
        body: RequestBody,
    ) -> Result<Response<Incoming>, VaultApiError> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(url.clone())
            .header("X-Vault-Request", "true");
        if !self.token.is_empty() {
            request = request.header("X-Vault-Token", self.token.as_str());
        }
        if let Some(ns) = &self.namespace {
            request = request.header("X-Vault-Namespace", ns.as_str());
        }
        let request = request.body(body).map_err(|e| VaultApiError::BadAddress {
            address: url.to_string(),
            reason: e.to_string(),
        })?;
        self.client
            .request(request)
            .await
            .map_err(|source| VaultApiError::Request {
                method,
                url: url.to_string(),
                source,
            })
    }

    /// Asks for a snapshot. Returns once Vault has answered 200 and its body starts to
    /// flow; the body is read through the returned [`SnapshotDownload`].
    ///
    /// # Errors
    /// The request failing, a non-2xx status (with Vault's messages), or too many redirects.
    pub async fn get_snapshot(&self) -> Result<SnapshotDownload, VaultApiError> {
        let mut url = self.url(SNAPSHOT_PATH);
        for _ in 0..=MAX_REDIRECTS {
            let response = self.send(Method::GET, &url, empty_body()).await?;
            if let Some(next) = redirect(&Method::GET, &url, &response)? {
                url = next;
                continue;
            }
            let response = check_status(Method::GET, &url, response).await?;
            return Ok(SnapshotDownload::start(
                url.to_string(),
                response.into_body(),
            ));
        }
        Err(VaultApiError::TooManyRedirects {
            method: Method::GET,
            url: url.to_string(),
        })
    }

    /// Sends one snapshot to `url` (from [`VaultClient::url`] with [`SNAPSHOT_PATH`] or
    /// [`SNAPSHOT_FORCE_PATH`], or a redirect's target).
    ///
    /// # Errors
    /// The request failing (including the body's own error), or a non-2xx status.
    pub async fn post_snapshot(
        &self,
        url: &Uri,
        body: RequestBody,
    ) -> Result<PostOutcome, VaultApiError> {
        let response = self.send(Method::POST, url, body).await?;
        if let Some(next) = redirect(&Method::POST, url, &response)? {
            return Ok(PostOutcome::Redirect(next));
        }
        check_status(Method::POST, url, response).await?;
        Ok(PostOutcome::Done)
    }
}

fn empty_body() -> RequestBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The target of a redirect response, resolved against `url`; `None` for other responses.
fn redirect(
    method: &Method,
    url: &Uri,
    response: &Response<Incoming>,
) -> Result<Option<Uri>, VaultApiError> {
    if !matches!(
        response.status(),
        StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
    ) {
        return Ok(None);
    }
    let bad = || VaultApiError::BadRedirect {
        method: method.clone(),
        url: url.to_string(),
    };
    let location = response
        .headers()
        .get(hyper::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(bad)?;
    let target: Uri = location.parse().map_err(|_| bad())?;
    if target.scheme().is_some() {
        return Ok(Some(target));
    }
    // A relative Location: same scheme and authority.
    let mut parts = url.clone().into_parts();
    parts.path_and_query = target.path_and_query().cloned();
    Uri::from_parts(parts).map(Some).map_err(|_| bad())
}

/// Passes a 2xx response through; turns any other into [`VaultApiError::Status`] with the
/// messages of its `errors` body.
async fn check_status(
    method: Method,
    url: &Uri,
    response: Response<Incoming>,
) -> Result<Response<Incoming>, VaultApiError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let mut body = response.into_body();
    let mut raw = Vec::new();
    while raw.len() < ERROR_BODY_MAX {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    raw.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    Err(VaultApiError::Status {
        method,
        url: url.to_string(),
        status,
        errors: error_messages(&raw),
    })
}

/// The messages of a Vault error body (`{"errors": ["…"]}`), or its text when it is not
/// that shape.
fn error_messages(raw: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<serde_json::Value>,
    }
    match serde_json::from_slice::<Errors>(raw) {
        Ok(parsed) => parsed
            .errors
            .into_iter()
            .map(|e| match e {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })
            .collect(),
        Err(_) => {
            let text = String::from_utf8_lossy(raw);
            let text = text.trim();
            if text.is_empty() {
                Vec::new()
            } else {
                vec![text.chars().take(500).collect()]
            }
        }
    }
}

/// A snapshot's body as a blocking [`Read`]: a tokio task moves body frames into a
/// bounded queue that `read` drains, so the network and the reading thread overlap and
/// at most [`FRAMES_QUEUED`] frames wait in memory.
///
/// `read` must not be called on an async worker thread (it blocks).
pub struct SnapshotDownload {
    url: String,
    frames: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    task: tokio::task::JoinHandle<()>,
}

impl SnapshotDownload {
    fn start(url: String, mut body: Incoming) -> SnapshotDownload {
        let (tx, frames) = mpsc::channel(FRAMES_QUEUED);
        let task = Handle::current().spawn(async move {
            loop {
                let item = match body.frame().await {
                    None => break,
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) if data.is_empty() => continue,
                        Ok(data) => Ok(data),
                        Err(_) => continue,
                    },
                    Some(Err(e)) => Err(io::Error::other(e)),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        SnapshotDownload {
            url,
            frames,
            current: Bytes::new(),
            task,
        }
    }

    /// The URL the snapshot came from (after redirects).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Read for SnapshotDownload {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.frames.blocking_recv() {
                Some(Ok(data)) => self.current = data,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

impl Drop for SnapshotDownload {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request body fed from a blocking thread: what the thread writes to the
/// [`BodyWriter`] is sent as it is produced. The body ends only through
/// [`BodyWriter::finish`]; a writer dropped without it (its producer failed) aborts the
/// request, so the server never sees a complete body.
pub fn streamed_body(queued_frames: usize) -> (BodyWriter, RequestBody) {
    let (tx, rx) = mpsc::channel::<Bytes>(queued_frames.max(1));
    let finished = Arc::new(AtomicBool::new(false));
    let state = (rx, finished.clone(), false);
    let stream = futures::stream::unfold(state, |(mut rx, finished, ended)| async move {
        if ended {
            return None;
        }
        match rx.recv().await {
            Some(data) => Some((Ok(hyper::body::Frame::data(data)), (rx, finished, false))),
            None if finished.load(Ordering::Acquire) => None,
            None => Some((
                Err(io::Error::other(
                    "the snapshot being sent failed before its end; request aborted",
                )),
                (rx, finished, true),
            )),
        }
    });
    let body = http_body_util::StreamBody::new(stream).boxed_unsync();
    (
        BodyWriter {
            tx,
            pending: Vec::with_capacity(BODY_FRAME_BYTES),
            finished,
        },
        body,
    )
}

/// Bytes per frame of a streamed body.
const BODY_FRAME_BYTES: usize = 256 * 1024;

/// The writing end of [`streamed_body`]; `write` blocks while the body queue is full, so
/// it must not be used on an async worker thread.
pub struct BodyWriter {
    tx: mpsc::Sender<Bytes>,
    pending: Vec<u8>,
    finished: Arc<AtomicBool>,
}

impl BodyWriter {
    /// Sends what is pending and ends the body.
    ///
    /// # Errors
    /// When the request no longer reads its body.
    pub fn finish(mut self) -> io::Result<()> {
        io::Write::flush(&mut self)?;
        self.finished.store(true, Ordering::Release);
        Ok(())
    }
}

impl io::Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= BODY_FRAME_BYTES {
            self.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let frame = Bytes::from(std::mem::replace(
            &mut self.pending,
            Vec::with_capacity(BODY_FRAME_BYTES),
        ));
        self.tx.blocking_send(frame).map_err(|_| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the request body was abandoned")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_give_their_messages() {
        assert_eq!(
            error_messages(br#"{"errors":["permission denied"]}"#),
            vec!["permission denied".to_string()]
        );
        assert_eq!(error_messages(b"  \n"), Vec::<String>::new());
        assert_eq!(
            error_messages(b"bad gateway"),
            vec!["bad gateway".to_string()]
        );
    }
}
