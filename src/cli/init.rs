//! `stowage init`

use clap::{Args, ValueEnum};

use stowage::repo::config::ChunkerParams;
use stowage::repo::crypto::CipherKind;
use stowage::repo::{InitOptions, KdfCost, Repository};

use super::render::print_json;
use super::Resolved;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CipherArg {
    /// AES-256-GCM (fastest with AES hardware)
    Aes256Gcm,
    /// XChaCha20-Poly1305
    Xchacha20Poly1305,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Authenticated encryption for all data.
    #[arg(long, value_enum, default_value = "aes256-gcm")]
    cipher: CipherArg,
    /// Average content-defined chunk size in KiB (a power of two, 1–4096).
    #[arg(long, default_value_t = 1024)]
    chunk_avg_kib: u32,
    /// Pack size in MiB.
    #[arg(long, default_value_t = 16)]
    pack_mib: u32,
    /// Argon2id memory cost in KiB for the passphrase (default 65536).
    #[arg(long, hide = true)]
    kdf_memory_kib: Option<u32>,
    /// Argon2id iterations (default 3).
    #[arg(long, hide = true)]
    kdf_iterations: Option<u32>,
}

pub async fn run(settings: &Resolved, args: InitArgs) -> anyhow::Result<()> {
    let store = settings.store().await?;
    let password = settings.password("new repository passphrase: ", true)?;
    let avg = args.chunk_avg_kib.saturating_mul(1024);
    let mut kdf = KdfCost::default();
    if let Some(m) = args.kdf_memory_kib {
        kdf.memory_kib = m;
    }
    if let Some(t) = args.kdf_iterations {
        kdf.iterations = t;
    }
    let options = InitOptions {
        cipher: match args.cipher {
            CipherArg::Aes256Gcm => CipherKind::Aes256Gcm,
            CipherArg::Xchacha20Poly1305 => CipherKind::XChaCha20Poly1305,
        },
        chunker: ChunkerParams {
            min_bytes: (avg / 2).max(64),
            avg_bytes: avg,
            max_bytes: avg.saturating_mul(4),
            ..ChunkerParams::default()
        },
        compression_level: settings.compression_level.unwrap_or(3),
        pack_target_bytes: args.pack_mib.saturating_mul(1024 * 1024),
        kdf,
    };
    let repo = Repository::init(store, &password, &options).await?;
    if settings.json {
        print_json(&serde_json::json!({
            "repository": repo.location(),
            "id": repo.config().id,
            "key": repo.key_id(),
            "config": repo.config(),
        }))?;
    } else if !settings.quiet {
        println!(
            "created repository {} at {} ({} encryption)",
            repo.config().id.short(),
            repo.location(),
            serde_json::to_value(repo.config().cipher)?
                .as_str()
                .unwrap_or("?")
        );
        println!("keep the passphrase safe: without it the data cannot be read back");
    }
    Ok(())
}
