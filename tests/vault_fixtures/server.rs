//! A Vault server in the test process that speaks the raft snapshot endpoints over real
//! HTTP: `GET /v1/sys/storage/raft/snapshot` serves a `.snap`, `POST …/snapshot` and
//! `…/snapshot-force` take one (checked as raft-snapshot would), `X-Vault-Token` and
//! `X-Vault-Namespace` are checked as Vault does (a missing token 401 here, a wrong one
//! or a wrong namespace 403, with Vault's `{"errors": […]}` bodies). A standby answers
//! every request with a 307 to the active node.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::common::serve::Serving;

use super::verify_like_raft;

#[derive(Default)]
struct State {
    token: String,
    namespace: Option<String>,
    snapshot: Vec<u8>,
    /// Set on a standby: the active node's address.
    active: Option<String>,
    /// Every accepted restore: (path, body).
    restored: Vec<(String, Vec<u8>)>,
    /// Every request: (method, path).
    seen: Vec<(String, String)>,
}

pub struct VaultServer {
    state: Arc<Mutex<State>>,
    serving: Serving,
}

fn json(status: StatusCode, errors: &[&str]) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "errors": errors }).to_string();
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().to_string();
    let (token, namespace, active) = {
        let mut s = state.lock().unwrap();
        s.seen.push((method.clone(), path.clone()));
        (s.token.clone(), s.namespace.clone(), s.active.clone())
    };
    if let Some(active) = active {
        return Ok(Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header("Location", format!("{active}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    match header("X-Vault-Token") {
        None => return Ok(json(StatusCode::UNAUTHORIZED, &["missing client token"])),
        Some(t) if t != token => return Ok(json(StatusCode::FORBIDDEN, &["permission denied"])),
        Some(_) => {}
    }
    if header("X-Vault-Namespace") != namespace {
        return Ok(json(
            StatusCode::FORBIDDEN,
            &[
                "permission denied",
                "no handler for route in this namespace",
            ],
        ));
    }
    match (method.as_str(), path.as_str()) {
        ("GET", "/v1/sys/storage/raft/snapshot") => {
            let snapshot = state.lock().unwrap().snapshot.clone();
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header("Content-Type", "application/gzip")
                .body(Full::new(Bytes::from(snapshot)))
                .unwrap())
        }
        ("POST", "/v1/sys/storage/raft/snapshot" | "/v1/sys/storage/raft/snapshot-force") => {
            let body = match req.into_body().collect().await {
                Ok(body) => body.to_bytes().to_vec(),
                // An aborted upload: nothing to restore.
                Err(_) => return Ok(json(StatusCode::BAD_REQUEST, &["request body incomplete"])),
            };
            match std::panic::catch_unwind(|| verify_like_raft(&body)) {
                Ok(Ok(_)) => {
                    state.lock().unwrap().restored.push((path, body));
                    Ok(Response::builder()
                        .status(StatusCode::NO_CONTENT)
                        .body(Full::new(Bytes::new()))
                        .unwrap())
                }
                Ok(Err(e)) => Ok(json(StatusCode::BAD_REQUEST, &[&e])),
                Err(_) => Ok(json(
                    StatusCode::BAD_REQUEST,
                    &["failed to read snapshot file"],
                )),
            }
        }
        _ => Ok(json(StatusCode::NOT_FOUND, &[])),
    }
}

impl VaultServer {
    /// An active node serving `snapshot`, wanting `token` (and `namespace`, when given).
    pub fn start(token: &str, namespace: Option<&str>, snapshot: Vec<u8>) -> VaultServer {
        let state = Arc::new(Mutex::new(State {
            token: token.into(),
            namespace: namespace.map(str::to_owned),
            snapshot,
            ..State::default()
        }));
        VaultServer::serve(state)
    }

    /// A standby that redirects everything to `active`.
    pub fn standby(active: &VaultServer) -> VaultServer {
        let state = Arc::new(Mutex::new(State {
            active: Some(active.address()),
            ..State::default()
        }));
        VaultServer::serve(state)
    }

    fn serve(state: Arc<Mutex<State>>) -> VaultServer {
        let shared = state.clone();
        let serving = Serving::start("127.0.0.1:0".parse().unwrap(), move |socket| {
            let state = shared.clone();
            let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
            async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            }
        });
        VaultServer { state, serving }
    }

    /// `http://127.0.0.1:PORT`, for VAULT_ADDR.
    pub fn address(&self) -> String {
        format!("http://{}", self.serving.addr)
    }

    pub fn set_snapshot(&self, snapshot: Vec<u8>) {
        self.state.lock().unwrap().snapshot = snapshot;
    }

    /// The restores accepted so far: (path, body).
    pub fn restored(&self) -> Vec<(String, Vec<u8>)> {
        self.state.lock().unwrap().restored.clone()
    }

    /// Every request seen: (method, path).
    pub fn seen(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().seen.clone()
    }
}
