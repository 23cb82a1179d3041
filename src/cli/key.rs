//! `stowage key add|list|remove`

use clap::Subcommand;

use stowage::repo::id::KeyId;
use stowage::repo::KdfCost;

use super::render::print_json;
use super::settings::passphrase;
use super::Resolved;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add a passphrase (from --new-password-file, STOWAGE_NEW_PASSWORD or a prompt).
    Add {
        #[arg(long)]
        new_password_file: Option<std::path::PathBuf>,
    },
    /// List key files.
    List,
    /// Remove a key file (not the one in use, not the last one).
    Remove { id: String },
}

pub async fn run(settings: &Resolved, cmd: KeyCommand) -> anyhow::Result<()> {
    let repo = settings.open().await?;
    match cmd {
        KeyCommand::Add { new_password_file } => {
            let password = passphrase(
                new_password_file.as_deref(),
                "STOWAGE_NEW_PASSWORD",
                "new passphrase: ",
                true,
            )?;
            let id = repo.add_key(&password, KdfCost::default()).await?;
            if settings.json {
                print_json(&serde_json::json!({ "key": id }))?;
            } else if !settings.quiet {
                println!("added key {}", id.short());
            }
        }
        KeyCommand::List => {
            let keys = repo.list_keys().await?;
            if settings.json {
                let rows: Vec<_> = keys
                    .iter()
                    .map(|(id, k)| {
                        serde_json::json!({ "id": id, "current": *id == repo.key_id(), "created": k.created, "host": k.host, "user": k.user })
                    })
                    .collect();
                print_json(&rows)?;
            } else {
                println!(" {:<10} {:<20} {:<16} user", "ID", "created", "host");
                for (id, key) in keys {
                    let mark = if id == repo.key_id() { "*" } else { " " };
                    println!(
                        "{mark}{:<10} {:<20} {:<16} {}",
                        id.short(),
                        key.created.format("%Y-%m-%d %H:%M:%S"),
                        key.host,
                        key.user
                    );
                }
            }
        }
        KeyCommand::Remove { id } => {
            let keys = repo.list_keys().await?;
            let matches: Vec<KeyId> = keys
                .iter()
                .map(|(k, _)| *k)
                .filter(|k| k.to_string().starts_with(&id.to_ascii_lowercase()))
                .collect();
            let [target] = matches.as_slice() else {
                anyhow::bail!(
                    "{id:?} matches {} keys; give a unique prefix",
                    matches.len()
                );
            };
            repo.remove_key(*target).await?;
            if !settings.quiet && !settings.json {
                println!("removed key {}", target.short());
            }
        }
    }
    Ok(())
}
