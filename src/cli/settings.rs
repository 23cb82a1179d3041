//! Resolving settings: flags, then environment, then the TOML file, then defaults.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::Deserialize;

use stowage::pipeline::{Settings, DEFAULT_IN_FLIGHT_BYTES};
use stowage::repo::Repository;
use stowage::store::{open_store, ObjectStore};

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
}

/// Everything a command needs to know before it touches the repository.
#[derive(Debug)]
pub struct Resolved {
    pub repo: Option<String>,
    pub password_file: Option<PathBuf>,
    pub compression_level: Option<i32>,
    pub in_flight_bytes: usize,
    pub threads: Option<usize>,
    pub host: Option<String>,
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
    Ok(Resolved {
        repo: cli.repo.clone().or(file.repo),
        password_file: env_password_file.or(file.password_file),
        compression_level: cli.compression_level.or(file.compression_level),
        in_flight_bytes: cli
            .in_flight_mib
            .or(file.in_flight_mib)
            .map_or(DEFAULT_IN_FLIGHT_BYTES, |mib| mib.max(16) * 1024 * 1024),
        threads: cli.threads.or(file.threads),
        host: file.host,
        json: cli.json,
        quiet: cli.quiet,
        interactive: std::io::stderr().is_terminal() && !cli.json && !cli.quiet,
    })
}

impl Resolved {
    pub fn store(&self) -> anyhow::Result<Arc<dyn ObjectStore>> {
        let Some(location) = &self.repo else {
            bail!("no repository given: pass --repo, set STOWAGE_REPO, or put `repo = …` in the settings file");
        };
        Ok(open_store(location)?)
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

    /// Opens the repository with the resolved passphrase.
    pub async fn open(&self) -> anyhow::Result<Repository> {
        let store = self.store()?;
        let password = self.password("repository passphrase: ", false)?;
        Ok(Repository::open(store, &password).await?)
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
