//! What a file must be before `wal-push` stores it.
//!
//! An archive that accepted anything would turn a mistake (a wrong `%p`, a truncated copy,
//! two clusters sharing one archive) into a restore that fails months later. Each kind of
//! file is checked with the rules the server itself applies when it reads it back
//! (`reference/postgresql.md` §1–3).

use std::path::Path;

use crate::pg::wal::{self, SegmentSummary, WalFileName};

use super::ArchiveError;

/// The archive name of the file at `path` (its file name).
///
/// # Errors
/// [`ArchiveError::BadName`] when the name is not one PostgreSQL archives.
pub fn file_name(path: &Path) -> Result<WalFileName, ArchiveError> {
    let bad = |reason: String| ArchiveError::BadName {
        path: path.to_path_buf(),
        reason,
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| bad("no file name".into()))?;
    WalFileName::parse(name).map_err(|e| bad(e.to_string()))
}

/// Checks `raw` as the file `name`; for segments also that it belongs to the cluster
/// whose system identifier is `cluster_id` (when one is recorded). Returns the summary of
/// a segment or `.partial` file (`None` for `.history` and `.backup` files, which are
/// text checked for shape and agreement with their name).
///
/// # Errors
/// [`ArchiveError::Invalid`] or [`ArchiveError::ForeignCluster`], naming `path`.
pub fn check(
    path: &Path,
    name: &WalFileName,
    raw: &[u8],
    cluster: &str,
    cluster_id: Option<u64>,
) -> Result<Option<SegmentSummary>, ArchiveError> {
    let invalid = |source| ArchiveError::Invalid {
        path: path.to_path_buf(),
        source,
    };
    let summary = match name {
        WalFileName::Segment(seg) => {
            Some(wal::check_segment(seg, raw, false, None).map_err(invalid)?)
        }
        WalFileName::Partial(seg) => {
            Some(wal::check_segment(seg, raw, true, None).map_err(invalid)?)
        }
        WalFileName::History { tli } => {
            wal::check_history(*tli, raw).map_err(invalid)?;
            None
        }
        WalFileName::Backup { segment, offset } => {
            wal::check_backup_file(segment, *offset, raw).map_err(invalid)?;
            None
        }
    };
    if let (Some(expected), Some(summary)) = (cluster_id, &summary) {
        if summary.system_identifier != expected {
            return Err(ArchiveError::ForeignCluster {
                path: path.to_path_buf(),
                cluster: cluster.to_string(),
                expected,
                found: summary.system_identifier,
            });
        }
    }
    Ok(summary)
}
