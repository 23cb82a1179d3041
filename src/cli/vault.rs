//! How the Vault commands reach Vault: the `vault` CLI's variables, and flags over them.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use zeroize::Zeroizing;

use stowage::vault::api::{VaultConfig, DEFAULT_ADDRESS};

#[derive(Debug, Args)]
pub struct VaultArgs {
    /// Vault's address (default: VAULT_ADDR, else https://127.0.0.1:8200).
    #[arg(long, value_name = "URL", env = "VAULT_ADDR")]
    address: Option<String>,
    /// A file holding the token (default: VAULT_TOKEN, else ~/.vault-token).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Vault Enterprise namespace (default: VAULT_NAMESPACE).
    #[arg(long, value_name = "NS", env = "VAULT_NAMESPACE")]
    namespace: Option<String>,
    /// PEM file of the CA that signed Vault's certificate (default: VAULT_CACERT;
    /// without it, VAULT_CAPATH or the system's roots). TLS is always verified.
    #[arg(long, value_name = "FILE", env = "VAULT_CACERT")]
    ca_cert: Option<PathBuf>,
    /// Directory of PEM CA files (default: VAULT_CAPATH).
    #[arg(long, value_name = "DIR", env = "VAULT_CAPATH")]
    ca_path: Option<PathBuf>,
}

/// A token as the `vault` CLI finds one: the file given, VAULT_TOKEN, or ~/.vault-token.
fn token(args: &VaultArgs) -> anyhow::Result<Zeroizing<String>> {
    let read = |path: &PathBuf| -> anyhow::Result<Zeroizing<String>> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the Vault token from {}", path.display()))?,
        );
        Ok(Zeroizing::new(text.trim().to_string()))
    };
    if let Some(path) = &args.token_file {
        return read(path);
    }
    if let Some(token) = std::env::var_os("VAULT_TOKEN") {
        let token = Zeroizing::new(token.to_string_lossy().trim().to_string());
        if !token.is_empty() {
            return Ok(token);
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let path = PathBuf::from(home).join(".vault-token");
        if path.is_file() {
            return read(&path);
        }
    }
    anyhow::bail!("no Vault token: set VAULT_TOKEN or give --token-file")
}

impl VaultArgs {
    /// The settings, with the token found.
    ///
    /// # Errors
    /// No token anywhere, or an unreadable token file.
    pub fn resolve(&self) -> anyhow::Result<VaultConfig> {
        if std::env::var("VAULT_SKIP_VERIFY")
            .is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
        {
            eprintln!(
                "stowage: VAULT_SKIP_VERIFY is ignored: TLS is always verified \
                 (give Vault's CA with VAULT_CACERT or --ca-cert)"
            );
        }
        let token = token(self)?;
        anyhow::ensure!(!token.is_empty(), "the Vault token is empty");
        Ok(VaultConfig {
            address: self
                .address
                .clone()
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| DEFAULT_ADDRESS.into()),
            token,
            namespace: self.namespace.clone(),
            ca_cert: self.ca_cert.clone().filter(|p| !p.as_os_str().is_empty()),
            ca_path: self.ca_path.clone().filter(|p| !p.as_os_str().is_empty()),
        })
    }
}
