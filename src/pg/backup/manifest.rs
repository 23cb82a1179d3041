//! The backup manifest `pg_basebackup` writes (13+): the files a base backup holds, with
//! their sizes, and the WAL range replay needs. stowage reads it from `--from-stream`
//! input, where it is the only statement of the stop LSN and of what the stream should hold.

use std::collections::BTreeMap;

use crate::pg::wal::name::Lsn;

/// What stowage takes from a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Files by path (those with a UTF-8 `Path`; `Encoded-Path` ones are not listed) and size.
    pub files: BTreeMap<String, u64>,
    /// The last WAL range: its timeline and end LSN.
    pub timeline: u32,
    pub end_lsn: Lsn,
    /// Every WAL range, one per timeline the backup's WAL crossed, in order.
    pub ranges: Vec<WalRange>,
}

/// WAL from `start_lsn` to `end_lsn` on `timeline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalRange {
    pub timeline: u32,
    pub start_lsn: Lsn,
    pub end_lsn: Lsn,
}

#[derive(serde::Deserialize)]
struct Raw {
    #[serde(rename = "Files")]
    files: Vec<RawFile>,
    #[serde(rename = "WAL-Ranges")]
    wal_ranges: Vec<RawRange>,
}

#[derive(serde::Deserialize)]
struct RawFile {
    #[serde(rename = "Path", default)]
    path: Option<String>,
    #[serde(rename = "Size")]
    size: u64,
}

#[derive(serde::Deserialize)]
struct RawRange {
    #[serde(rename = "Timeline")]
    timeline: u32,
    #[serde(rename = "Start-LSN")]
    start_lsn: String,
    #[serde(rename = "End-LSN")]
    end_lsn: String,
}

impl Manifest {
    /// Parses a manifest's JSON.
    ///
    /// # Errors
    /// A message naming what is malformed or missing.
    pub fn parse(raw: &[u8]) -> Result<Manifest, String> {
        let raw: Raw = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
        let lsn = |text: &str, what: &str| -> Result<Lsn, String> {
            text.parse().map_err(|_| format!("bad {what} {text:?}"))
        };
        let ranges = raw
            .wal_ranges
            .iter()
            .map(|r| {
                let range = WalRange {
                    timeline: r.timeline,
                    start_lsn: lsn(&r.start_lsn, "Start-LSN")?,
                    end_lsn: lsn(&r.end_lsn, "End-LSN")?,
                };
                if range.end_lsn < range.start_lsn {
                    return Err(format!("a WAL range ends before it starts: {range:?}"));
                }
                Ok(range)
            })
            .collect::<Result<Vec<_>, String>>()?;
        let last = *ranges.last().ok_or("no WAL-Ranges")?;
        let mut files = BTreeMap::new();
        for file in raw.files {
            if let Some(path) = file.path {
                if files.insert(path.clone(), file.size).is_some() {
                    return Err(format!("{path} is listed twice"));
                }
            }
        }
        Ok(Manifest {
            files,
            timeline: last.timeline,
            end_lsn: last.end_lsn,
            ranges,
        })
    }

    /// Compares the files received with the manifest's list.
    ///
    /// # Errors
    /// A message naming the first file missing or of another size.
    pub fn check(&self, received: &BTreeMap<String, u64>) -> Result<(), String> {
        for (path, &size) in &self.files {
            match received.get(path) {
                Some(&got) if got == size => {}
                Some(&got) => {
                    return Err(format!(
                        "{path}: {got} bytes in the stream, {size} in backup_manifest"
                    ))
                }
                None => {
                    return Err(format!(
                        "{path} is in backup_manifest but not in the stream (cut short?)"
                    ))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_and_the_last_wal_range() {
        let raw = br#"{ "PostgreSQL-Backup-Manifest-Version": 1,
            "Files": [
              { "Path": "PG_VERSION", "Size": 3, "Last-Modified": "2026-11-26 00:00:00 GMT" },
              { "Encoded-Path": "ff", "Size": 1 },
              { "Path": "global/pg_control", "Size": 8192 } ],
            "WAL-Ranges": [ { "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" } ],
            "Manifest-Checksum": "00" }"#;
        let manifest = Manifest::parse(raw).unwrap();
        assert_eq!(manifest.timeline, 1);
        assert_eq!(manifest.end_lsn, "0/2000100".parse().unwrap());
        let mut got = BTreeMap::from([
            ("PG_VERSION".to_string(), 3),
            ("global/pg_control".to_string(), 8192),
        ]);
        assert!(manifest.check(&got).is_ok());
        got.insert("global/pg_control".into(), 100);
        assert!(manifest
            .check(&got)
            .unwrap_err()
            .contains("100 bytes in the stream"));
        got.remove("PG_VERSION");
        assert!(manifest
            .check(&got)
            .unwrap_err()
            .contains("not in the stream"));
        assert!(Manifest::parse(br#"{"Files": [], "WAL-Ranges": []}"#).is_err());
    }
}
