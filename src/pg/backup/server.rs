//! One session with the server for the non-exclusive low-level backup API
//! (`reference/postgresql.md` §6): start and stop on the same connection, the facts a
//! snapshot records, and the archiver's state when WAL does not arrive.

use std::path::PathBuf;

use tokio_postgres::{Client, Config, NoTls};

use crate::pg::conninfo::{self, ConnInfo};

use super::BackupError;
use crate::pg::wal::name::Lsn;

/// What the server says about itself before a backup.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    /// `server_version_num`, e.g. 150010.
    pub version_num: u32,
    pub data_directory: Option<PathBuf>,
    pub block_size: u32,
    pub wal_segment_size: u32,
    pub in_recovery: bool,
    pub archive_mode: String,
    pub system_identifier: u64,
}

/// What `pg_backup_stop` returns.
#[derive(Debug, Clone)]
pub struct StopResult {
    pub lsn: Lsn,
    pub labelfile: String,
    pub spcmapfile: String,
}

/// A connected session. Dropping it ends the session, which makes the server abort a
/// backup still in progress.
pub struct Server {
    client: Client,
    version_num: u32,
}

/// The connection settings of `conninfo` (`key=value` pairs or a `postgresql://` URL),
/// with libpq's environment variables, password file and defaults filling what it leaves
/// out, as `psql` would ([`ConnInfo::client_config`]).
///
/// # Errors
/// [`BackupError::Conninfo`] for a string that does not parse.
pub fn config(conninfo: &str) -> Result<Config, BackupError> {
    let bad = |e: crate::pg::conninfo::ConnInfoError| BackupError::Conninfo {
        reason: e.to_string(),
    };
    let mut config = conninfo
        .parse::<ConnInfo>()
        .and_then(|info| info.client_config())
        .map_err(bad)?;
    if config.get_application_name().is_none() {
        config.application_name("stowage");
    }
    Ok(config)
}

/// The server's own words for a failure: message, detail and hint of a server error,
/// or the client library's description with its cause.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

impl Server {
    /// Connects and reads the server's version. The connection's I/O runs on the
    /// current tokio runtime.
    ///
    /// # Errors
    /// [`BackupError::Connect`] with the server's reason (wrong password, no such
    /// database, nothing listening).
    pub async fn connect(conninfo: &str) -> Result<Server, BackupError> {
        let config = config(conninfo)?;
        let target = conninfo::describe(&config);
        let (client, connection) =
            config
                .connect(NoTls)
                .await
                .map_err(|e| BackupError::Connect {
                    target: target.clone(),
                    reason: describe(&e),
                })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("PostgreSQL connection ended: {}", describe(&e));
            }
        });
        // A role's statement or idle timeouts must not cancel a spread checkpoint or close
        // the session while files are copied. idle_session_timeout exists from 14 on; an
        // older server refuses it, which changes nothing.
        client
            .batch_execute("SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0")
            .await
            .map_err(query("preparing the session"))?;
        let _ = client.batch_execute("SET idle_session_timeout = 0").await;
        let row = client
            .query_one("SELECT current_setting('server_version_num')::int4", &[])
            .await
            .map_err(query("reading the server version"))?;
        let version_num = column::<i32>(&row, 0, "reading the server version")? as u32;
        if version_num < 120000 {
            return Err(BackupError::Version { version_num });
        }
        Ok(Server {
            client,
            version_num,
        })
    }

    /// The facts a backup checks and records.
    ///
    /// # Errors
    /// [`BackupError::Query`], e.g. when the role may not read `pg_control_system()`.
    pub async fn facts(&self) -> Result<ServerFacts, BackupError> {
        let row = self
            .client
            .query_one(
                "SELECT current_setting('block_size')::int4, \
                        current_setting('wal_segment_size', true), \
                        pg_is_in_recovery(), \
                        current_setting('archive_mode'), \
                        (SELECT system_identifier::text FROM pg_control_system()), \
                        (SELECT setting FROM pg_settings WHERE name = 'data_directory')",
                &[],
            )
            .await
            .map_err(query("reading the server's settings"))?;
        const WHAT: &str = "reading the server's settings";
        let seg: Option<String> = column(&row, 1, WHAT)?;
        let sysid: String = column(&row, 4, WHAT)?;
        let data_directory: Option<String> = column(&row, 5, WHAT)?;
        Ok(ServerFacts {
            version_num: self.version_num,
            block_size: column::<i32>(&row, 0, WHAT)? as u32,
            wal_segment_size: seg.as_deref().and_then(parse_size).unwrap_or(16 << 20),
            in_recovery: column(&row, 2, WHAT)?,
            archive_mode: column(&row, 3, WHAT)?,
            system_identifier: sysid.parse().map_err(|_| BackupError::Query {
                what: "reading the system identifier".into(),
                reason: format!("not a number: {sysid:?}"),
            })?,
            data_directory: data_directory.filter(|d| !d.is_empty()).map(PathBuf::from),
        })
    }

    /// `pg_backup_start` (15+) or `pg_start_backup(…, exclusive => false)` (12–14):
    /// returns the start LSN. `fast` asks for an immediate checkpoint.
    ///
    /// # Errors
    /// [`BackupError::Query`] with the server's reason (permission denied, a backup
    /// already running in exclusive mode, …).
    pub async fn start(&self, label: &str, fast: bool) -> Result<Lsn, BackupError> {
        let sql = if self.version_num >= 150000 {
            "SELECT pg_backup_start($1, $2)::text"
        } else {
            "SELECT pg_start_backup($1, $2, false)::text"
        };
        let row = self
            .client
            .query_one(sql, &[&label, &fast])
            .await
            .map_err(query("starting the backup"))?;
        lsn(column(&row, 0, "starting the backup")?)
    }

    /// `pg_backup_stop(false)` (15+) or `pg_stop_backup(false, false)` (12–14): ends the
    /// backup without the server's own wait for archiving (stowage waits for the WAL in
    /// the repository itself, with a timeout and the segment named).
    ///
    /// # Errors
    /// [`BackupError::Query`]; [`BackupError::ServerGone`] when the session died.
    pub async fn stop(&self) -> Result<StopResult, BackupError> {
        let sql = if self.version_num >= 150000 {
            "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)"
        } else {
            "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, false)"
        };
        let row = self.client.query_one(sql, &[]).await.map_err(|e| {
            if e.is_closed() {
                BackupError::ServerGone {
                    reason: describe(&e),
                }
            } else {
                query("stopping the backup")(e)
            }
        })?;
        Ok(StopResult {
            lsn: lsn(column(&row, 0, "stopping the backup")?)?,
            labelfile: column::<Option<String>>(&row, 1, "stopping the backup")?
                .unwrap_or_default(),
            spcmapfile: column::<Option<String>>(&row, 2, "stopping the backup")?
                .unwrap_or_default(),
        })
    }

    /// The timeline the WAL ending at `stop` is on: the name of its last segment
    /// (`pg_walfile_name`, which a standby cannot answer; `None` there).
    ///
    /// # Errors
    /// [`BackupError::Query`].
    pub async fn stop_timeline(
        &self,
        stop: Lsn,
        in_recovery: bool,
    ) -> Result<Option<u32>, BackupError> {
        if in_recovery {
            return Ok(None);
        }
        let row = self
            .client
            .query_one(
                "SELECT pg_walfile_name($1::text::pg_lsn)",
                &[&stop.to_string()],
            )
            .await
            .map_err(query("naming the last WAL segment"))?;
        let name: String = column(&row, 0, "naming the last WAL segment")?;
        Ok(name.get(..8).and_then(|t| u32::from_str_radix(t, 16).ok()))
    }

    /// The archiver's last failure, for an error message: `(file, time)`.
    pub async fn archiver_failure(&self) -> Option<(String, String)> {
        let row = self
            .client
            .query_opt(
                "SELECT last_failed_wal, last_failed_time::text FROM pg_stat_archiver \
                 WHERE last_failed_wal IS NOT NULL \
                   AND (last_archived_time IS NULL OR last_failed_time > last_archived_time)",
                &[],
            )
            .await
            .ok()??;
        Some((row.try_get(0).ok()?, row.try_get(1).ok()?))
    }
}

/// Column `idx` of `row`, or an error naming what was being read: a server (or a proxy)
/// answering with other types must not panic the backup.
fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    idx: usize,
    what: &'static str,
) -> Result<T, BackupError> {
    row.try_get(idx).map_err(|e| BackupError::Query {
        what: what.into(),
        reason: e.to_string(),
    })
}

fn query(what: &'static str) -> impl Fn(tokio_postgres::Error) -> BackupError {
    move |e| BackupError::Query {
        what: what.into(),
        reason: describe(&e),
    }
}

fn lsn(text: String) -> Result<Lsn, BackupError> {
    text.parse().map_err(|_| BackupError::Query {
        what: "reading an LSN".into(),
        reason: format!("not an LSN: {text:?}"),
    })
}

/// `wal_segment_size` as `current_setting` shows it: `16MB`, `1GB`, or bytes.
fn parse_size(text: &str) -> Option<u32> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u32 = digits.parse().ok()?;
    match unit {
        "" => Some(n),
        "kB" => n.checked_mul(1 << 10),
        "MB" => n.checked_mul(1 << 20),
        "GB" => n.checked_mul(1 << 30),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_sizes_as_the_server_shows_them() {
        assert_eq!(parse_size("16MB"), Some(16 << 20));
        assert_eq!(parse_size("1MB"), Some(1 << 20));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("16777216"), Some(16 << 20));
        assert_eq!(parse_size("junk"), None);
    }

    #[test]
    fn conninfo_gets_defaults_and_never_shows_the_password() {
        let parsed = config("host=/tmp port=5433 user=backup password=secret dbname=app").unwrap();
        assert_eq!(conninfo::describe(&parsed), "backup@/tmp:5433/app");
        assert!(matches!(
            config("host='"),
            Err(BackupError::Conninfo { .. })
        ));
    }
}
