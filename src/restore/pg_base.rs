//! Restoring a base backup (`formats/REPOSITORY.md` §22): `pgdata/` into the data
//! directory, each `tablespaces/<oid>/` into its location (or where `--tablespace-map`
//! sends it), and `pg_tblspc/<oid>` links that point there.
//!
//! The links are made here rather than left to the server's `tablespace_map` handling:
//! a relocated tablespace needs a different link than the one recorded, and
//! `pg_basebackup -Fp` restores the same way (links, no map file). Nothing is written
//! until every target is known to be usable: empty, or, for a delta restore, not in use
//! by a running server.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::repo::id::SnapshotId;
use crate::repo::master_index::MasterIndex;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::NodeKind;
use crate::repo::Repository;

use super::write::write_err;
use super::{plan_tree, restore_entries, Mode, PlannedEntry, RestoreError, RestoreStats};

/// One tablespace of a base backup and where it is restored.
#[derive(Debug, Clone, Serialize)]
pub struct TablespaceTarget {
    pub oid: u32,
    /// Where it was when the backup was taken.
    pub recorded: PathBuf,
    pub location: PathBuf,
}

/// What a base-backup restore wrote.
#[derive(Debug, Clone, Serialize)]
pub struct PgRestoreStats {
    pub pgdata: RestoreStats,
    pub tablespaces: Vec<(TablespaceTarget, RestoreStats)>,
}

impl PgRestoreStats {
    /// Everything written, summed.
    pub fn total(&self) -> RestoreStats {
        let mut all = self.pgdata.clone();
        for (_, s) in &self.tablespaces {
            all.files += s.files;
            all.dirs += s.dirs;
            all.symlinks += s.symlinks;
            all.bytes += s.bytes;
            all.kept_bytes += s.kept_bytes;
            all.kept_files += s.kept_files;
        }
        all
    }
}

/// The tablespaces a base-backup snapshot records, placed by `map` (each `(old, new)`:
/// `old` is a tablespace OID or its recorded location).
///
/// # Errors
/// [`RestoreError::Refused`] for a mapping that matches no tablespace or is not an
/// absolute path, or a malformed `tablespaces` record.
pub fn tablespace_targets(
    snapshot: &Snapshot,
    map: &[(String, PathBuf)],
) -> Result<Vec<TablespaceTarget>, RestoreError> {
    let refused = |path: &Path, reason: String| RestoreError::Refused {
        path: path.to_path_buf(),
        reason,
    };
    let recorded = snapshot
        .source
        .get("tablespaces")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for t in recorded {
        let oid = t
            .get("oid")
            .and_then(|v| v.as_u64())
            .and_then(|v| u32::try_from(v).ok());
        let location = t.get("location").and_then(|v| v.as_str());
        let (Some(oid), Some(location)) = (oid, location) else {
            return Err(refused(
                Path::new("tablespaces"),
                format!("malformed record {t}"),
            ));
        };
        out.push(TablespaceTarget {
            oid,
            recorded: PathBuf::from(location),
            location: PathBuf::from(location),
        });
    }
    for (old, new) in map {
        let found = out
            .iter_mut()
            .find(|t| t.oid.to_string() == *old || t.recorded == Path::new(old));
        let Some(found) = found else {
            let known: Vec<String> = out
                .iter()
                .map(|t| format!("{} ({})", t.oid, t.recorded.display()))
                .collect();
            return Err(refused(
                Path::new(old),
                format!(
                    "--tablespace-map names no tablespace of this backup (it has: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        if !new.is_absolute() {
            return Err(refused(
                new,
                "a tablespace location must be an absolute path".into(),
            ));
        }
        found.location = new.clone();
    }
    for (i, a) in out.iter().enumerate() {
        for b in &out[i + 1..] {
            if a.location.starts_with(&b.location) || b.location.starts_with(&a.location) {
                return Err(refused(
                    &a.location,
                    format!(
                        "tablespaces {} and {} would be restored into each other ({} and {}); \
                         move one with --tablespace-map",
                        a.oid,
                        b.oid,
                        a.location.display(),
                        b.location.display()
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// Checks that `dir` can receive a restore: missing or empty, or for a delta restore,
/// not the data directory of a running server.
///
/// # Errors
/// [`RestoreError::Refused`] saying why.
pub fn check_target(dir: &Path, mode: Mode) -> Result<(), RestoreError> {
    let refused = |reason: &str| RestoreError::Refused {
        path: dir.to_path_buf(),
        reason: reason.into(),
    };
    let mut listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(refused("exists and is not a directory"))
        }
        Err(source) => {
            return Err(RestoreError::Write {
                op: "list",
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    match mode {
        Mode::Fresh if listing.next().is_some() => Err(refused(
            "is not empty; restore into an empty directory, or pass --delta to rewrite it in \
             place (only what differs is written)",
        )),
        Mode::Delta if dir.join("postmaster.pid").exists() => Err(refused(
            "holds postmaster.pid: a server may be running on it; stop it first (after a \
             crash, remove the stale postmaster.pid)",
        )),
        _ => Ok(()),
    }
}

/// Where and how to restore a base backup.
#[derive(Debug, Clone)]
pub struct Destination {
    pub pgdata: PathBuf,
    /// `(tablespace OID or recorded location, new location)`.
    pub tablespace_map: Vec<(String, PathBuf)>,
    pub mode: Mode,
    pub parallel: usize,
}

/// Restores base-backup snapshot `id` into `to.pgdata` and its tablespaces into
/// `spaces`. Checks every target before writing anything.
///
/// # Errors
/// [`RestoreError::Refused`] for a target in the way, else the first failure.
pub async fn restore_base(
    repo: &Repository,
    index: &MasterIndex,
    id: SnapshotId,
    snapshot: &Snapshot,
    to: &Destination,
    spaces: &[TablespaceTarget],
) -> Result<PgRestoreStats, RestoreError> {
    let (pgdata, mode, parallel) = (to.pgdata.as_path(), to.mode, to.parallel);
    check_target(pgdata, mode)?;
    for space in spaces {
        check_target(&space.location, mode)?;
    }
    let entries = plan_tree(repo, index, id, snapshot.tree).await?;
    let (mut data, mut by_oid) = (Vec::new(), Vec::<(u32, Vec<PlannedEntry>)>::new());
    let mut root = None;
    for entry in entries {
        let mut parts = entry.path.components();
        let top = parts
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        match top.as_deref() {
            Some("pgdata") => {
                let rel = parts.as_path().to_path_buf();
                if rel.as_os_str().is_empty() {
                    root = Some(entry.node);
                    continue;
                }
                if is_tablespace_link(&rel, spaces) {
                    continue;
                }
                data.push(PlannedEntry {
                    path: rel,
                    node: entry.node,
                });
            }
            Some("tablespaces") => {
                let oid = parts
                    .next()
                    .and_then(|c| c.as_os_str().to_str()?.parse::<u32>().ok());
                let rel = parts.as_path().to_path_buf();
                let Some(oid) = oid else { continue };
                if rel.as_os_str().is_empty() {
                    continue;
                }
                match by_oid.iter_mut().find(|(o, _)| *o == oid) {
                    Some((_, list)) => list.push(PlannedEntry {
                        path: rel,
                        node: entry.node,
                    }),
                    None => by_oid.push((
                        oid,
                        vec![PlannedEntry {
                            path: rel,
                            node: entry.node,
                        }],
                    )),
                }
            }
            // The manifest of a streamed backup, kept where pg_verifybackup looks.
            Some("backup_manifest") if entry.node.kind == NodeKind::File => {
                data.push(entry);
            }
            _ => {}
        }
    }
    let pg_stats = restore_entries(repo, index, data, pgdata, mode, parallel).await?;
    // The server refuses a data directory others can read (0700 or 0750 only).
    set_root(
        pgdata,
        root.as_ref().map_or(0o700, |n| n.mode & 0o750),
        root.as_ref(),
    )?;
    let mut tablespaces = Vec::new();
    for space in spaces {
        let entries = by_oid
            .iter_mut()
            .find(|(oid, _)| *oid == space.oid)
            .map(|(_, list)| std::mem::take(list))
            .unwrap_or_default();
        let shared = match mode {
            Mode::Fresh => Mode::Fresh,
            Mode::Delta | Mode::DeltaShared => Mode::DeltaShared,
        };
        let stats =
            restore_entries(repo, index, entries, &space.location, shared, parallel).await?;
        link_tablespace(pgdata, space)?;
        tablespaces.push((space.clone(), stats));
    }
    Ok(PgRestoreStats {
        pgdata: pg_stats,
        tablespaces,
    })
}

/// `pg_tblspc/<oid>` of a tablespace (made by [`link_tablespace`]), and the map file
/// that would make the server re-link it to the recorded place.
fn is_tablespace_link(rel: &Path, spaces: &[TablespaceTarget]) -> bool {
    if rel == Path::new("tablespace_map") {
        return true;
    }
    let mut parts = rel.components();
    parts.next().is_some_and(|c| c.as_os_str() == "pg_tblspc")
        && parts
            .next()
            .and_then(|c| c.as_os_str().to_str()?.parse::<u32>().ok())
            .is_some_and(|oid| spaces.iter().any(|s| s.oid == oid))
        && parts.next().is_none()
}

/// Gives the data directory itself the recorded mode and (as root) owner.
fn set_root(
    pgdata: &Path,
    mode: u32,
    node: Option<&crate::repo::tree::Node>,
) -> Result<(), RestoreError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(pgdata, std::fs::Permissions::from_mode(mode | 0o700))
        .map_err(write_err("set mode", pgdata))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if let (Some(node), true) = (node, unsafe { libc::geteuid() } == 0) {
        let _ = std::os::unix::fs::chown(pgdata, Some(node.uid), Some(node.gid));
    }
    Ok(())
}

/// Points `pg_tblspc/<oid>` at the tablespace's location, owned like the data directory.
fn link_tablespace(pgdata: &Path, space: &TablespaceTarget) -> Result<(), RestoreError> {
    use std::os::unix::fs::MetadataExt;
    let dir = pgdata.join("pg_tblspc");
    let link = dir.join(space.oid.to_string());
    std::fs::create_dir_all(&dir).map_err(write_err("create directory", &dir))?;
    match std::fs::symlink_metadata(&link) {
        Ok(meta) if meta.is_dir() => {
            std::fs::remove_dir_all(&link).map_err(write_err("replace", &link))?
        }
        Ok(_) => std::fs::remove_file(&link).map_err(write_err("replace", &link))?,
        Err(_) => {}
    }
    std::os::unix::fs::symlink(&space.location, &link)
        .map_err(write_err("create symlink", &link))?;
    if let Ok(owner) = std::fs::metadata(pgdata) {
        let _ = std::os::unix::fs::lchown(&link, Some(owner.uid()), Some(owner.gid()));
        let _ = std::os::unix::fs::chown(&space.location, Some(owner.uid()), Some(owner.gid()));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&space.location, std::fs::Permissions::from_mode(0o700))
        .map_err(write_err("set mode", &space.location))?;
    Ok(())
}
