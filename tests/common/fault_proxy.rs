//! An HTTP proxy that sits between stowage and the S3 server and misbehaves on purpose:
//! error statuses, connections reset in the middle of a body, slow answers. Requests pass
//! through unchanged (the SigV4 signature covers the Host header, which is kept), so the
//! server checks the same signatures it would see directly.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::serve::Serving;

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Which requests a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Any,
    /// PUT of a whole object (no `uploadId`).
    PutObject,
    /// UploadPart with this part number (or any part).
    UploadPart(Option<u32>),
    CompleteUpload,
    /// GET of an object.
    GetObject,
}

/// What to do to a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and an S3 error body, without forwarding.
    Status(u16),
    /// Forward, then send only half the response body and reset the connection.
    CutResponse,
    /// Read half the request body, then reset the connection without answering.
    CutRequest,
    /// Wait this long before forwarding.
    Delay(Duration),
    /// Flip one byte in the middle of the request body, then forward it.
    CorruptRequest,
    /// Answer 301 PermanentRedirect naming another region, as S3 does for a wrong region.
    WrongRegion,
}

#[derive(Debug, Clone)]
struct Rule {
    target: Target,
    fault: Fault,
    /// Matching requests to let through untouched before the fault starts.
    skip: usize,
    /// How many times to apply it (`usize::MAX`: always).
    times: usize,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    /// (method, path?query) of every request seen, in order.
    seen: Vec<(String, String)>,
    faults_applied: usize,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _serving: Serving,
}

fn matches(target: Target, method: &str, uri: &hyper::Uri) -> bool {
    let query = uri.query().unwrap_or("");
    let part = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("partNumber="))
        .and_then(|n| n.parse::<u32>().ok());
    let has_upload = query.contains("uploadId=");
    match target {
        Target::Any => true,
        Target::PutObject => method == "PUT" && !has_upload,
        Target::UploadPart(want) => {
            method == "PUT" && has_upload && part.is_some() && (want.is_none() || want == part)
        }
        Target::CompleteUpload => method == "POST" && has_upload,
        Target::GetObject => {
            method == "GET" && !query.contains("list-type") && !query.contains("uploads")
        }
    }
}

fn s3_error(status: u16) -> Response<Body> {
    let code = match status {
        503 => "SlowDown",
        500 => "InternalError",
        301 => "PermanentRedirect",
        _ => "InjectedFault",
    };
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
         <Message>injected by the test proxy</Message></Error>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(Full::new(Bytes::from(xml)).map_err(|e| match e {}).boxed())
        .unwrap()
}

/// A client for requests whose body the proxy rebuilt.
fn corrupt_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn boxed_error(msg: &str) -> Box<dyn std::error::Error + Send + Sync> {
    msg.to_string().into()
}

impl FaultProxy {
    /// Proxies to `upstream` from a free loopback port.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build_http();
        let serving = Serving::start("127.0.0.1:0".parse().unwrap(), move |socket| {
            let (state, client) = (shared.clone(), client.clone());
            let service = hyper::service::service_fn(move |req| {
                handle(req, upstream, client.clone(), state.clone())
            });
            async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            }
        });
        FaultProxy {
            addr: serving.addr,
            state,
            _serving: serving,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies `fault` to the matching requests after the first `skip`, `times` times.
    pub fn inject(&self, target: Target, fault: Fault, skip: usize, times: usize) {
        self.state.lock().unwrap().rules.push(Rule {
            target,
            fault,
            skip,
            times,
        });
    }

    /// Removes every rule.
    pub fn heal(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// How many requests were sabotaged so far.
    pub fn faults_applied(&self) -> usize {
        self.state.lock().unwrap().faults_applied
    }

    /// Every request seen so far: (method, path and query).
    pub fn seen(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().seen.clone()
    }

    /// How many requests matching `target` went through the proxy.
    pub fn count(&self, target: Target) -> usize {
        self.state
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|(m, pq)| matches(target, m, &pq.parse().unwrap()))
            .count()
    }
}

/// Decides this request's fault, if any, and records it.
fn decide(state: &Mutex<State>, method: &str, uri: &hyper::Uri) -> Option<Fault> {
    let mut state = state.lock().unwrap();
    let pq = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    state.seen.push((method.to_string(), pq));
    let mut chosen = None;
    for rule in state.rules.iter_mut() {
        if !matches(rule.target, method, uri) || rule.times == 0 {
            continue;
        }
        if rule.skip > 0 {
            rule.skip -= 1;
            continue;
        }
        rule.times = rule.times.saturating_sub(1);
        chosen = Some(rule.fault);
        break;
    }
    if chosen.is_some() {
        state.faults_applied += 1;
    }
    chosen
}

async fn handle(
    req: Request<Incoming>,
    upstream: SocketAddr,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Incoming>,
    state: Arc<Mutex<State>>,
) -> Result<Response<Body>, Box<dyn std::error::Error + Send + Sync>> {
    let method = req.method().to_string();
    let fault = decide(&state, &method, req.uri());
    match fault {
        Some(Fault::Status(status)) => {
            // Drain the request so the connection stays usable, as a real server would.
            let _ = req.into_body().collect().await;
            return Ok(s3_error(status));
        }
        Some(Fault::CutRequest) => {
            let mut body = req.into_body();
            let mut read = 0usize;
            while let Some(frame) = body.frame().await {
                read += frame
                    .ok()
                    .and_then(|f| f.into_data().ok())
                    .map_or(0, |d| d.len());
                if read > 64 * 1024 {
                    break;
                }
            }
            return Err(boxed_error("connection reset by the test proxy"));
        }
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::WrongRegion) => {
            let _ = req.into_body().collect().await;
            let mut response = s3_error(301);
            response
                .headers_mut()
                .insert("x-amz-bucket-region", "eu-north-1".parse()?);
            return Ok(response);
        }
        _ => {}
    }
    let (mut parts, body) = req.into_parts();
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("http://{upstream}{pq}").parse()?;
    let response = if fault == Some(Fault::CorruptRequest) {
        let mut bytes = body.collect().await?.to_bytes().to_vec();
        let middle = bytes.len() / 2;
        if let Some(b) = bytes.get_mut(middle) {
            *b ^= 0x20;
        }
        let body = Full::new(Bytes::from(bytes))
            .map_err(|e| match e {})
            .boxed();
        corrupt_client()
            .request(Request::from_parts(parts, body))
            .await?
    } else {
        client.request(Request::from_parts(parts, body)).await?
    };
    if fault == Some(Fault::CutResponse) {
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await?.to_bytes();
        let half = bytes.slice(..bytes.len() / 2);
        let frames = futures::stream::iter(vec![
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(half)),
            Err(boxed_error("connection reset by the test proxy")),
        ]);
        return Ok(Response::from_parts(
            parts,
            BodyExt::boxed(StreamBody::new(frames)),
        ));
    }
    Ok(response.map(|b| {
        b.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
            .boxed()
    }))
}
