//! `stowage backup vault`: a raft snapshot from Vault's API, a file or stdin.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tokio::runtime::Handle;

use stowage::source::vault::{Origin, VaultSource};
use stowage::source::Source;
use stowage::vault::api::VaultClient;

use super::super::vault::VaultArgs;
use super::Common;

#[derive(Debug, Args)]
pub struct VaultBackupArgs {
    /// Read a snapshot made by `vault operator raft snapshot save` instead of asking
    /// Vault (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    #[command(flatten)]
    vault: VaultArgs,
    /// Snapshot name (default: vault).
    #[arg(long, default_value = "vault")]
    name: String,
    #[command(flatten)]
    common: Common,
}

/// The source, the snapshot name and the common options.
pub(super) fn source(
    runtime: &Handle,
    args: VaultBackupArgs,
) -> anyhow::Result<(Box<dyn Source>, String, Common)> {
    let source = match &args.file {
        Some(path) if path.as_os_str() == "-" => {
            let stdin = std::fs::File::from(
                std::os::fd::AsFd::as_fd(&std::io::stdin()).try_clone_to_owned()?,
            );
            VaultSource::new(Box::new(stdin), Origin::Stdin)
        }
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("opening snapshot file {}", path.display()))?;
            let origin = Origin::File {
                path: path.display().to_string(),
            };
            VaultSource::new(Box::new(file), origin)
        }
        None => {
            let config = args.vault.resolve()?;
            let client = VaultClient::new(&config)?;
            // The request is made here, so a refusal (bad token, standby without a
            // leader) fails before the pipeline starts.
            let download = runtime.block_on(client.get_snapshot())?;
            let origin = Origin::Api {
                address: config.address.clone(),
            };
            VaultSource::new(Box::new(download), origin)
        }
    };
    Ok((Box::new(source), args.name, args.common))
}
