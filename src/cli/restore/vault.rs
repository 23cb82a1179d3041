//! `stowage restore vault`: a stored raft snapshot posted to Vault's restore endpoint.

use std::time::Instant;

use clap::Args;

use stowage::restore::vault::restore_to_vault;
use stowage::restore::DEFAULT_PARALLEL;
use stowage::vault::api::VaultClient;

use super::super::render::{self, print_json};
use super::super::snapshots::Filter;
use super::super::vault::VaultArgs;
use super::super::Resolved;

pub const KIND: &str = "vault";

#[derive(Debug, Args)]
pub struct VaultRestoreArgs {
    /// Snapshot id (or unique prefix), or `latest` (the newest vault snapshot).
    snapshot: String,
    /// Use snapshot-force: restore a snapshot taken from another cluster (other unseal
    /// keys), as `vault operator raft snapshot restore -force`.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    vault: VaultArgs,
    #[command(flatten)]
    filter: Filter,
}

pub async fn run(settings: &Resolved, args: VaultRestoreArgs) -> anyhow::Result<()> {
    let config = args.vault.resolve()?;
    let client = VaultClient::new(&config)?;
    let repo = settings.open().await?;
    let (id, snapshot) = repo
        .find_snapshot(&args.snapshot, |s| s.kind == KIND && args.filter.matches(s))
        .await?;
    anyhow::ensure!(
        snapshot.kind == KIND,
        "snapshot {} is of kind {}, not {KIND}",
        id.short(),
        snapshot.kind
    );
    let index = repo.load_index().await?;
    let started = Instant::now();
    let rebuilt = restore_to_vault(
        &repo,
        &index,
        id,
        snapshot.tree,
        &client,
        args.force,
        DEFAULT_PARALLEL,
    )
    .await?;
    let elapsed = started.elapsed();
    if settings.json {
        print_json(&serde_json::json!({
            "snapshot": id,
            "address": config.address,
            "force": args.force,
            "state_bytes": rebuilt.state_bytes,
            "raft_index": snapshot.source.get("raft_index"),
            "duration_secs": elapsed.as_secs_f64(),
        }))?;
    } else if !settings.quiet {
        println!(
            "restored snapshot {} (raft index {}) into Vault at {}: {} in {:.1} s",
            id.short(),
            snapshot
                .source
                .get("raft_index")
                .map_or_else(|| "?".into(), |v| v.to_string()),
            config.address,
            render::bytes(rebuilt.state_bytes),
            elapsed.as_secs_f64(),
        );
    }
    Ok(())
}
