//! `stowage snapshots`

use clap::Args;

use stowage::repo::snapshot::Snapshot;

use super::render::{self, print_json};
use super::Resolved;

/// Filters shared by commands that pick snapshots.
#[derive(Debug, Args, Default)]
pub struct Filter {
    /// Only snapshots of this kind (stdin, files, …).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only snapshots with this name.
    #[arg(long)]
    pub name: Option<String>,
    /// Only snapshots carrying this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Only snapshots from this host.
    #[arg(long = "host")]
    pub host: Option<String>,
}

impl Filter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.kind.as_ref().is_none_or(|k| *k == s.kind)
            && self.name.as_ref().is_none_or(|n| *n == s.name)
            && self.tag.as_ref().is_none_or(|t| s.tags.contains(t))
            && self.host.as_ref().is_none_or(|h| *h == s.host)
    }
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    filter: Filter,
}

pub async fn run(settings: &Resolved, args: SnapshotsArgs) -> anyhow::Result<()> {
    let repo = settings.open().await?;
    let snapshots: Vec<_> = repo
        .load_snapshots()
        .await?
        .into_iter()
        .filter(|(_, s)| args.filter.matches(s))
        .collect();
    if settings.json {
        let rows: Vec<_> = snapshots
            .iter()
            .map(|(id, s)| {
                let mut value = serde_json::to_value(s).unwrap_or_default();
                if let Some(obj) = value.as_object_mut() {
                    obj.insert("id".into(), serde_json::json!(id));
                    obj.insert(
                        "dedup_ratio".into(),
                        serde_json::json!(s.stats.dedup_ratio()),
                    );
                }
                value
            })
            .collect();
        return print_json(&rows);
    }
    println!(
        "{:<8}  {:<19}  {:<12}  {:<6}  {:<24}  {:>10}  {:>10}  tags",
        "ID", "time", "host", "kind", "name", "size", "stored"
    );
    for (id, s) in &snapshots {
        println!(
            "{:<8}  {:<19}  {:<12}  {:<6}  {:<24}  {:>10}  {:>10}  {}",
            id.short(),
            s.end
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S"),
            s.host,
            s.kind,
            s.name,
            render::bytes(s.stats.bytes_read),
            render::bytes(s.stats.bytes_stored),
            s.tags.join(",")
        );
    }
    println!("{} snapshot(s)", snapshots.len());
    Ok(())
}
