//! The `backup_label` file (`reference/postgresql.md` §6): where replay must start and on
//! which timeline. Kept byte-exact in the backup; parsed only for what the snapshot records.

use super::BackupError;
use crate::pg::wal::name::Lsn;

/// What a `backup_label` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupLabel {
    pub start_lsn: Lsn,
    /// The segment named on the START WAL LOCATION line.
    pub start_segment: String,
    pub checkpoint_lsn: Lsn,
    /// `primary` or `standby`.
    pub backup_from: String,
    pub start_timeline: u32,
    pub label: String,
}

impl BackupLabel {
    /// Parses the lines stowage needs; the others (and future ones) are ignored.
    ///
    /// # Errors
    /// [`BackupError::Label`] naming the line that is missing or malformed.
    pub fn parse(text: &str) -> Result<BackupLabel, BackupError> {
        let field = |key: &str| -> Option<&str> {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix(": "))
        };
        let need =
            |key: &str| field(key).ok_or_else(|| BackupError::Label(format!("no {key} line")));
        let lsn = |key: &str, value: &str| -> Result<Lsn, BackupError> {
            value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| BackupError::Label(format!("{key}: not an LSN: {value:?}")))
        };
        let start = need("START WAL LOCATION")?;
        let start_segment = start
            .split_once("(file ")
            .and_then(|(_, rest)| rest.strip_suffix(')'))
            .unwrap_or_default()
            .to_string();
        let timeline = need("START TIMELINE")?;
        Ok(BackupLabel {
            start_lsn: lsn("START WAL LOCATION", start)?,
            start_segment,
            checkpoint_lsn: lsn("CHECKPOINT LOCATION", need("CHECKPOINT LOCATION")?)?,
            backup_from: field("BACKUP FROM").unwrap_or("primary").to_string(),
            start_timeline: timeline.trim().parse().map_err(|_| {
                BackupError::Label(format!("START TIMELINE: not a number: {timeline:?}"))
            })?,
            label: field("LABEL").unwrap_or_default().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_pg15_label() {
        let text = "START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\n\
                    CHECKPOINT LOCATION: 0/3000060\n\
                    BACKUP METHOD: streamed\n\
                    BACKUP FROM: standby\n\
                    START TIME: 2026-11-23 18:07:15 UTC\n\
                    LABEL: stowage nightly\n\
                    START TIMELINE: 2\n";
        let label = BackupLabel::parse(text).unwrap();
        assert_eq!(label.start_lsn, "0/3000028".parse().unwrap());
        assert_eq!(label.start_segment, "000000010000000000000003");
        assert_eq!(label.checkpoint_lsn, "0/3000060".parse().unwrap());
        assert_eq!(label.backup_from, "standby");
        assert_eq!(label.start_timeline, 2);
        assert_eq!(label.label, "stowage nightly");
        let err = BackupLabel::parse("CHECKPOINT LOCATION: 0/1\n").unwrap_err();
        assert!(err.to_string().contains("START WAL LOCATION"), "{err}");
    }
}
