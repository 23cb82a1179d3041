//! Resolving settings: flags, then environment, then the TOML file, then defaults.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use stowage::pipeline::{Settings, DEFAULT_IN_FLIGHT_BYTES};
use stowage::repo::Repository;
use stowage::store::s3::{Checksum, ServerSideEncryption};
use stowage::store::{open_store, ObjectStore, StoreOptions};

use super::Cli;

const DEFAULT_CONFIG: &str = "/etc/stowage/stowage.toml";

/// The settings file. Every key is optional; flags and environment win.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub repo: Option<String>,
    pub password_file: Option<PathBuf>,
    pub compression_level: Option<i32>,
    pub in_flight_mib: Option<usize>,
    pub threads: Option<usize>,
    pub host: Option<String>,
    /// Cluster name for WAL commands (default `main`).
    pub cluster: Option<String>,
    /// `wal-push`: files pushed per call (default 1: just the one asked for).
    pub wal_parallel: Option<usize>,
    /// `wal-fetch`: segments fetched ahead of recovery (default 0).
    pub wal_prefetch: Option<usize>,
    /// zstd level for WAL (default 1: WAL archiving is latency-bound).
    pub wal_compression_level: Option<i32>,
    /// Where `wal-push`/`wal-fetch` keep their spool (default `pg_wal/.stowage`).
    pub spool_dir: Option<PathBuf>,
    /// Where the unwrapped-key cache lives (default `~/.cache/stowage`).
    pub cache_dir: Option<PathBuf>,
    /// Cache the unwrapped master key between commands (default true).
    pub key_cache: Option<bool>,
    pub s3: Option<S3FileSettings>,
}

/// The `[s3]` table: how to reach an `s3://` repository. Credentials are never here:
/// they come from the AWS chain (environment, profile, SSO, instance or IRSA role).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3FileSettings {
    /// An S3-compatible endpoint (MinIO, Ceph RGW, Garage…); `AWS_ENDPOINT_URL` also works.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style addressing; default on when an endpoint is set.
    pub path_style: Option<bool>,
    pub part_size_mib: Option<usize>,
    pub parts_in_flight: Option<usize>,
    /// `crc32c` (default), `md5` or `none`.
    pub checksum: Option<Checksum>,
    /// `AES256` or `aws:kms`.
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
    /// Storage class of pack files (`STANDARD_IA`, `GLACIER_IR`, …).
    pub storage_class: Option<String>,
    /// Send `If-None-Match: *` on create-only writes (default true).
    pub conditional_writes: Option<bool>,
    pub max_attempts: Option<u32>,
    pub initial_backoff_ms: Option<u64>,
    pub timeout_secs: Option<u64>,
}

/// Settings of the WAL commands, before their flags.
#[derive(Debug, Clone)]
pub struct WalSettings {
    pub cluster: String,
    pub parallel: usize,
    pub prefetch: usize,
    pub compression_level: i32,
    pub spool_dir: Option<PathBuf>,
}

/// zstd level for WAL: WAL compresses about 13× at level 3 and barely less at 1, while
/// level 1 costs half the time on the path every segment's archiving waits on.
pub const DEFAULT_WAL_COMPRESSION_LEVEL: i32 = 1;

/// Everything a command needs to know before it touches the repository.
#[derive(Debug)]
pub struct Resolved {
    /// The settings file given with `--config`/`STOWAGE_CONFIG`, if any.
    pub config_path: Option<PathBuf>,
    pub repo: Option<String>,
    pub password_file: Option<PathBuf>,
    pub compression_level: Option<i32>,
    pub in_flight_bytes: usize,
    pub threads: Option<usize>,
    pub host: Option<String>,
    pub wal: WalSettings,
    /// Key cache directory; `None` when caching is off or there is no home for it.
    pub cache_dir: Option<PathBuf>,
    pub store: StoreOptions,
    pub json: bool,
    pub quiet: bool,
    /// Progress bars and prompts only on an interactive terminal.
    pub interactive: bool,
}

fn load_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading settings file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("settings file {}", path.display()))
}

pub fn resolve(cli: &Cli) -> anyhow::Result<Resolved> {
    let file = match &cli.config {
        Some(path) => load_file(path)?,
        None if Path::new(DEFAULT_CONFIG).exists() => load_file(Path::new(DEFAULT_CONFIG))?,
        None => FileSettings::default(),
    };
    let env_password_file = std::env::var_os("STOWAGE_PASSWORD_FILE").map(PathBuf::from);
    let store = store_options(cli, file.s3.unwrap_or_default())?;
    let wal = WalSettings {
        cluster: file.cluster.unwrap_or_else(|| "main".into()),
        parallel: file.wal_parallel.unwrap_or(1).max(1),
        prefetch: file.wal_prefetch.unwrap_or(0),
        // The `--compression-level` flag applies to WAL too; the file's
        // `compression_level` (meant for backups) does not.
        compression_level: cli
            .compression_level
            .or(file.wal_compression_level)
            .unwrap_or(DEFAULT_WAL_COMPRESSION_LEVEL),
        spool_dir: file.spool_dir,
    };
    let cache_dir = if file.key_cache.unwrap_or(true) {
        file.cache_dir
            .or_else(stowage::repo::key_cache::default_cache_dir)
    } else {
        None
    };
    Ok(Resolved {
        config_path: cli.config.clone(),
        repo: cli.repo.clone().or(file.repo),
        password_file: env_password_file.or(file.password_file),
        compression_level: cli.compression_level.or(file.compression_level),
        in_flight_bytes: cli
            .in_flight_mib
            .or(file.in_flight_mib)
            .map_or(DEFAULT_IN_FLIGHT_BYTES, |mib| mib.max(16) * 1024 * 1024),
        threads: cli.threads.or(file.threads),
        host: file.host,
        wal,
        cache_dir,
        store,
        json: cli.json,
        quiet: cli.quiet,
        interactive: std::io::stderr().is_terminal() && !cli.json && !cli.quiet,
    })
}

/// Flags over the `[s3]` table over defaults.
fn store_options(cli: &Cli, file: S3FileSettings) -> anyhow::Result<StoreOptions> {
    let mut s3 = stowage::store::s3::S3Options {
        endpoint: file.endpoint,
        region: file.region,
        path_style: file.path_style,
        ..Default::default()
    };
    if let Some(mib) = file.part_size_mib {
        s3.part_size = mib.saturating_mul(1024 * 1024);
    }
    if let Some(n) = file.parts_in_flight {
        s3.parts_in_flight = n;
    }
    s3.checksum = cli.s3_checksum.or(file.checksum).unwrap_or_default();
    s3.sse = ServerSideEncryption::from_parts(
        cli.sse.as_deref().or(file.sse.as_deref()),
        cli.sse_kms_key_id
            .as_deref()
            .or(file.sse_kms_key_id.as_deref()),
    )
    .map_err(anyhow::Error::msg)
    .context("server-side encryption settings")?;
    s3.storage_class = cli.storage_class.clone().or(file.storage_class);
    if let Some(on) = file.conditional_writes {
        s3.conditional_writes = on;
    }
    if let Some(n) = file.max_attempts {
        s3.max_attempts = n;
    }
    if let Some(ms) = file.initial_backoff_ms {
        s3.initial_backoff = Duration::from_millis(ms);
    }
    if let Some(secs) = file.timeout_secs {
        s3.timeout = Duration::from_secs(secs.max(1));
    }
    s3.validate()
        .map_err(anyhow::Error::msg)
        .context("[s3] settings")?;
    Ok(StoreOptions { s3 })
}

impl Resolved {
    pub async fn store(&self) -> anyhow::Result<Arc<dyn ObjectStore>> {
        self.store_with(&self.store).await
    }

    async fn store_with(&self, options: &StoreOptions) -> anyhow::Result<Arc<dyn ObjectStore>> {
        let Some(location) = &self.repo else {
            bail!("no repository given: pass --repo, set STOWAGE_REPO, or put `repo = …` in the settings file");
        };
        Ok(open_store(location, options).await?)
    }

    /// The passphrase: `STOWAGE_PASSWORD_FILE` (or `password_file`), `STOWAGE_PASSWORD`, or
    /// a prompt on a terminal. A trailing newline in the file is not part of it.
    pub fn password(&self, prompt: &str, confirm: bool) -> anyhow::Result<Vec<u8>> {
        passphrase(
            self.password_file.as_deref(),
            "STOWAGE_PASSWORD",
            prompt,
            confirm,
        )
    }

    /// Opens the repository with the resolved passphrase. A passphrase that comes from a
    /// file or the environment (a scheduled job) goes through the key cache, so Argon2id
    /// is paid once per host rather than by every nightly backup; one typed at a prompt
    /// does not, so a cache never outlives what the user chose to type.
    pub async fn open(&self) -> anyhow::Result<Repository> {
        let store = self.store().await?;
        let unattended =
            self.password_file.is_some() || std::env::var_os("STOWAGE_PASSWORD").is_some();
        let password = self.password("repository passphrase: ", false)?;
        if unattended {
            return Ok(Repository::open_cached(store, &password, self.cache_dir.as_deref()).await?);
        }
        Ok(Repository::open(store, &password).await?)
    }

    /// Opens the repository through the key cache: for commands run once per WAL
    /// segment, where Argon2id would dominate.
    /// Never prompts: these commands run under the server, where a prompt would hang the
    /// archiver or recovery.
    pub async fn open_cached(&self) -> anyhow::Result<Repository> {
        if self.password_file.is_none() && std::env::var_os("STOWAGE_PASSWORD").is_none() {
            bail!("no passphrase: set password_file in the settings file, STOWAGE_PASSWORD_FILE or STOWAGE_PASSWORD");
        }
        let mut options = self.store.clone();
        options.s3.check_bucket = false;
        let store = self.store_with(&options).await?;
        let password = self.password("repository passphrase: ", false)?;
        Ok(Repository::open_cached(store, &password, self.cache_dir.as_deref()).await?)
    }

    pub fn pipeline_settings(&self, repo: &Repository) -> Settings {
        let mut settings = Settings::new(
            self.compression_level
                .unwrap_or(repo.config().compression_level),
        );
        settings.in_flight_bytes = self.in_flight_bytes;
        if let Some(threads) = self.threads {
            settings.workers = threads.max(1);
        }
        settings
    }
}

/// A passphrase from `file` (a trailing newline is not part of it), else the environment
/// variable `env`, else a prompt on the terminal.
pub fn passphrase(
    file: Option<&Path>,
    env: &str,
    prompt: &str,
    confirm: bool,
) -> anyhow::Result<Vec<u8>> {
    if let Some(path) = file {
        let mut raw = std::fs::read(path)
            .with_context(|| format!("reading password file {}", path.display()))?;
        while raw.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            raw.pop();
        }
        return non_empty(raw, &path.display().to_string());
    }
    if let Some(raw) = std::env::var_os(env) {
        return non_empty(raw.into_encoded_bytes(), env);
    }
    prompt_password(prompt, confirm)
}

fn non_empty(raw: Vec<u8>, from: &str) -> anyhow::Result<Vec<u8>> {
    if raw.is_empty() {
        bail!("empty passphrase from {from}");
    }
    Ok(raw)
}

/// Asks on the terminal; refuses when there is none (cron, CI), naming the alternatives.
pub fn prompt_password(prompt: &str, confirm: bool) -> anyhow::Result<Vec<u8>> {
    if !std::io::stdin().is_terminal() && !std::io::stderr().is_terminal() {
        bail!("no passphrase: set STOWAGE_PASSWORD_FILE or STOWAGE_PASSWORD (no terminal to prompt on)");
    }
    let first = rpassword::prompt_password(prompt).context("reading passphrase")?;
    if confirm {
        let again = rpassword::prompt_password("again: ").context("reading passphrase")?;
        if again != first {
            bail!("the passphrases do not match");
        }
    }
    non_empty(first.into_bytes(), "the prompt")
}
