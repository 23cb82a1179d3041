//! `s3-server`: the test suite's S3 server as a stand-alone process, for benchmarks and
//! for trying stowage against S3 by hand.
//!
//! It serves a real S3 API over HTTP with SigV4 authentication on a loopback port: the
//! `s3s` protocol implementation over `s3s-fs`, with the additions stowage relies on
//! (conditional writes, Content-MD5 checks, ListMultipartUploads), exactly as the
//! integration tests use it (the module is `tests/common/s3_server.rs`, included as is).
//! Objects are plain files at `ROOT/BUCKET/KEY`.
//!
//! ```text
//! cargo run --release --example s3-server -- --root /dev/shm/s3 --bucket bench --port 9000
//! ```
//!
//! Once it is listening it prints, on stdout, the environment a client needs (one
//! `NAME=VALUE` line each: endpoint, the fixed test credentials, region) and then, last,
//! `listening on http://127.0.0.1:PORT`. `--port 0` (the default) takes a free port; the
//! line gives the one chosen. It then serves until it is killed (SIGTERM, SIGINT).

#[path = "../tests/common/s3_server.rs"]
mod s3_server;
#[path = "../tests/common/serve.rs"]
mod serve;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: s3-server --root DIR --bucket NAME [--bucket NAME ...] [--port PORT]

Serves S3 (HTTP, SigV4, the test credentials) on 127.0.0.1:PORT from DIR: objects are files
at DIR/BUCKET/KEY. Each --bucket is created if missing. --port 0 (default) picks a free port.
Prints the client environment (NAME=VALUE lines) and then `listening on http://127.0.0.1:PORT`
on stdout, and serves until killed.";

struct Args {
    root: PathBuf,
    buckets: Vec<String>,
    port: u16,
}

/// The S3 bucket naming rules that clients check before sending anything.
fn valid_bucket(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&name.len())
        && name.chars().all(|c| alnum(c) || c == '.' || c == '-')
        && name.starts_with(alnum)
        && name.ends_with(alnum)
}

fn parse_args() -> Result<Args, String> {
    let mut root = None;
    let mut buckets = Vec::new();
    let mut port = 0u16;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        // `--flag value` and `--flag=value`
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--root" => root = Some(PathBuf::from(value()?)),
            "--bucket" => {
                let name = value()?;
                if !valid_bucket(&name) {
                    return Err(format!(
                        "bad bucket name '{name}': 3-63 of a-z 0-9 . -, starting and ending \
                         with a letter or digit (clients reject others)"
                    ));
                }
                buckets.push(name);
            }
            "--port" => {
                let v = value()?;
                port = v.parse().map_err(|_| format!("bad port '{v}'"))?;
            }
            _ => return Err(format!("unknown argument '{arg}'")),
        }
    }
    let root = root.ok_or("--root is required")?;
    if buckets.is_empty() {
        return Err("at least one --bucket is required".into());
    }
    Ok(Args {
        root,
        buckets,
        port,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("s3-server: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&args.root) {
        eprintln!("s3-server: cannot create {}: {e}", args.root.display());
        return ExitCode::FAILURE;
    }
    let buckets: Vec<&str> = args.buckets.iter().map(String::as_str).collect();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    // Binds before it returns; serves on its own thread until dropped (never, here).
    let server = s3_server::S3Server::start_on(&args.root, &buckets, addr);

    let mut ready = String::new();
    for (name, value) in s3_server::aws_env(&server.endpoint()) {
        ready.push_str(&format!("{name}={value}\n"));
    }
    ready.push_str(&format!("listening on {}\n", server.endpoint()));
    let mut out = std::io::stdout().lock();
    if out
        .write_all(ready.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);
    eprintln!(
        "s3-server: serving {} (buckets: {}) on {}",
        server.root.display(),
        buckets.join(", "),
        server.addr
    );

    // Nothing to clean up: objects are already files on disk. SIGTERM / SIGINT keep their
    // default action and end the process.
    loop {
        std::thread::park();
    }
}
