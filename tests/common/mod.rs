//! Shared set-up for integration tests: a scratch repository and a `stowage` command
//! builder for the real binary. Everything is cleaned up on drop.
#![allow(dead_code)]

pub mod fault_proxy;
pub mod pg;
pub mod s3_server;
pub mod serve;

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};

pub const PASSWORD: &str = "correct horse battery staple";

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Text-like bytes that compress well.
pub fn compressible(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "{i},customer-{},{}.{:02},2026-11-25\n",
                i % 977,
                i * 7 % 10000,
                i % 100
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// Where a test repository lives. The suites that matter run on both (see
/// [`on_every_store!`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A directory.
    Local,
    /// A bucket on a real S3 server over loopback HTTP ([`s3_server`]).
    S3,
    /// The same S3 server reached through a [`fault_proxy::FaultProxy`].
    S3ViaProxy,
}

/// The test bucket and the repository's prefix in it.
pub const BUCKET: &str = "stowage-test";
const PREFIX: &str = "repo";

/// A temp directory holding a repository (`repo/`, or an S3 bucket whose objects are
/// files under `s3/`) and room for restores.
pub struct TestRepo {
    pub backend: Backend,
    pub proxy: Option<fault_proxy::FaultProxy>,
    pub server: Option<s3_server::S3Server>,
    /// Declared last: dropped after the servers above stop.
    pub dir: tempfile::TempDir,
}

impl TestRepo {
    /// A new, initialized local repository with cheap key derivation.
    pub fn new() -> TestRepo {
        TestRepo::on(Backend::Local)
    }

    /// A new, initialized repository on `backend`.
    pub fn on(backend: Backend) -> TestRepo {
        let repo = TestRepo::empty_on(backend);
        let out = repo
            .cmd(&["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        repo
    }

    /// A temp directory with no repository yet.
    pub fn empty() -> TestRepo {
        TestRepo::empty_on(Backend::Local)
    }

    /// No repository yet, on `backend` (for S3: the server runs, the bucket exists).
    pub fn empty_on(backend: Backend) -> TestRepo {
        let dir = tempfile::tempdir().unwrap();
        let (server, proxy) = match backend {
            Backend::Local => (None, None),
            Backend::S3 | Backend::S3ViaProxy => {
                let server = s3_server::S3Server::start(&dir.path().join("s3"), &[BUCKET]);
                let proxy = (backend == Backend::S3ViaProxy)
                    .then(|| fault_proxy::FaultProxy::start(server.addr));
                // Quick retries and timeouts, so fault tests take seconds, not minutes.
                std::fs::write(
                    dir.path().join("stowage.toml"),
                    "[s3]\ninitial_backoff_ms = 20\nmax_attempts = 6\ntimeout_secs = 5\npart_size_mib = 5\n",
                )
                .unwrap();
                (Some(server), proxy)
            }
        };
        TestRepo {
            backend,
            proxy,
            server,
            dir,
        }
    }

    /// The directory holding the repository's objects (for S3: the bucket's files).
    pub fn path(&self) -> PathBuf {
        match &self.server {
            None => self.dir.path().join("repo"),
            Some(server) => server.root.join(BUCKET).join(PREFIX),
        }
    }

    /// What `--repo` says for this repository.
    pub fn location(&self) -> String {
        match self.backend {
            Backend::Local => self.path().display().to_string(),
            _ => format!("s3://{BUCKET}/{PREFIX}"),
        }
    }

    /// A scratch path inside the test directory.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `stowage ARGS` against this repository, with the test passphrase.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = stowage();
        cmd.env("STOWAGE_REPO", self.location())
            .env("STOWAGE_PASSWORD", PASSWORD)
            .env("STOWAGE_CACHE_DIR", self.dir.path().join("cache"))
            .args(args);
        self.add_store_env(&mut cmd);
        cmd
    }

    /// The environment that points a `stowage` process at this repository's store.
    pub fn add_store_env(&self, cmd: &mut Command) {
        if let Some(server) = &self.server {
            let endpoint = match &self.proxy {
                Some(proxy) => proxy.endpoint(),
                None => server.endpoint(),
            };
            cmd.envs(s3_server::aws_env(&endpoint))
                .env("STOWAGE_CONFIG", self.dir.path().join("stowage.toml"));
        }
    }

    /// Starts `stowage backup stdin --name NAME` and writes `input` to it, leaving stdin
    /// open: the backup is still running, waiting for more, when this returns (for kill
    /// tests). Drop the returned stdin to let it end.
    pub fn spawn_backup(&self, name: &str, input: &[u8]) -> (Child, ChildStdin) {
        use std::io::Write;
        let mut child = self
            .cmd(&["backup", "stdin", "--name", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
        stdin.flush().unwrap();
        (child, stdin)
    }

    /// Runs `stowage ARGS` with `input` on stdin.
    pub fn run_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        run_with_input(self.cmd(args), input)
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert_success(&out, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and parses `--json` output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Backs up `input` from stdin; returns the `--json` result.
    pub fn backup_stdin(&self, name: &str, input: &[u8]) -> serde_json::Value {
        let out = self.run_with_input(&["--json", "backup", "stdin", "--name", name], input);
        assert_success(&out, &["backup", "stdin"]);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `stowage cat SNAPSHOT [PATH]` bytes.
    pub fn cat(&self, args: &[&str]) -> Vec<u8> {
        let mut all = vec!["cat"];
        all.extend_from_slice(args);
        let out = self.cmd(&all).output().unwrap();
        assert_success(&out, &all);
        out.stdout
    }

    /// Adds a passphrase (a second key file).
    pub fn add_key(&self, passphrase: &str) {
        let out = self
            .cmd(&["key", "add"])
            .env("STOWAGE_NEW_PASSWORD", passphrase)
            .output()
            .unwrap();
        assert_success(&out, &["key add"]);
    }

    /// The id of the key file in use (`current`) or of another one, from `key list`.
    pub fn key_id(&self, current: bool) -> String {
        let keys = self.json(&["key", "list"]);
        keys.as_array()
            .unwrap()
            .iter()
            .find(|k| k["current"] == current)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Every object file under a repository directory (e.g. `data`), sorted.
    pub fn objects(&self, under: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.path().join(under)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path);
                }
            }
        }
        out.sort();
        out
    }
}

/// Generates, for each named `fn NAME(backend: Backend)`, one `#[test]` per store:
/// `local::NAME` and `s3::NAME`. One suite, not a copy per store.
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod local {
            $( #[test] fn $name() { super::$name($crate::common::Backend::Local) } )*
        }
        mod s3 {
            $( #[test] fn $name() { super::$name($crate::common::Backend::S3) } )*
        }
    };
}

/// The binary under test.
pub fn stowage() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stowage"));
    cmd.env_remove("STOWAGE_PASSWORD_FILE")
        .env_remove("STOWAGE_CONFIG")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("NO_COLOR", "1");
    cmd
}

pub fn run_with_input(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

pub fn assert_success(out: &Output, what: &[&str]) {
    assert!(
        out.status.success(),
        "stowage {what:?} failed with {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts failure with a non-zero code and stderr containing every fragment.
pub fn assert_fails_with(out: &Output, fragments: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    for fragment in fragments {
        assert!(
            stderr.contains(fragment),
            "stderr lacks {fragment:?}: {stderr}"
        );
    }
}

/// Writes `data` to `path`, creating parents.
pub fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, data).unwrap();
}
