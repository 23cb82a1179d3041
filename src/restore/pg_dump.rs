//! A stored dump streamed into PostgreSQL: `pg_restore -d` for a custom-format archive,
//! `psql -f -` for `globals.sql`. No temporary file: blobs are fetched, verified and
//! written to the program's stdin in order, as [`stream_file`] does for `cat`.
//!
//! The program's verdict is the restore's: exit 0 is success, anything else fails with
//! the end of its stderr ([`ChildError::Failed`]). A program that stops reading early
//! (pg_restore that cannot connect) is not a write failure; its exit status says why.

use std::ffi::OsString;
use std::process::Command;

use crate::pg::conninfo::ConnInfo;
use crate::pg::tools::PgTools;
use crate::repo::id::{BlobId, SnapshotId};
use crate::repo::master_index::MasterIndex;
use crate::repo::tree::NodeKind;
use crate::repo::Repository;
use crate::source::child::ChildSink;
use crate::source::pg_dump::{dump_file_name, GLOBALS_FILE};

use super::{plan_tree, stream_file, PlannedEntry, RestoreError};

/// Which file of a `pg-dump` snapshot to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpChoice<'a> {
    /// The snapshot's only dump.
    Only,
    /// The dump of this database (from an `--all` snapshot).
    Database(&'a str),
    /// `globals.sql` (from an `--all` snapshot).
    Globals,
}

/// The database a dump file is of: [`dump_file_name`] reversed.
pub fn database_of_file(file: &str) -> Option<String> {
    let mut rest = file.strip_suffix(".dump")?;
    let mut name = String::with_capacity(rest.len());
    while let Some(at) = rest.find('%') {
        name.push_str(&rest[..at]);
        let (decoded, skip) = match rest.get(at..at + 3) {
            Some("%2F") => ('/', 3),
            Some("%25") => ('%', 3),
            _ => ('%', 1),
        };
        name.push(decoded);
        rest = &rest[at + skip..];
    }
    name.push_str(rest);
    Some(name)
}

/// Finds the file `choice` names in a `pg-dump` snapshot.
///
/// # Errors
/// [`RestoreError::NoSuchPath`] when it is not there, [`RestoreError::ChooseDump`] when
/// `Only` meets a snapshot of several dumps.
pub async fn find_dump(
    repo: &Repository,
    index: &MasterIndex,
    snapshot: SnapshotId,
    tree: BlobId,
    choice: DumpChoice<'_>,
) -> Result<PlannedEntry, RestoreError> {
    let files: Vec<PlannedEntry> = plan_tree(repo, index, snapshot, tree)
        .await?
        .into_iter()
        .filter(|e| e.node.kind == NodeKind::File)
        .collect();
    let wanted = match choice {
        DumpChoice::Database(name) => dump_file_name(name),
        DumpChoice::Globals => GLOBALS_FILE.to_string(),
        DumpChoice::Only => {
            let mut dumps = files.iter().filter(|e| e.node.name.ends_with(".dump"));
            return match (dumps.next(), dumps.next()) {
                (Some(only), None) => Ok(only.clone()),
                (None, _) => Err(RestoreError::NoSuchPath {
                    snapshot,
                    path: "*.dump".into(),
                }),
                (Some(_), Some(_)) => Err(RestoreError::ChooseDump {
                    snapshot,
                    databases: files
                        .iter()
                        .filter_map(|e| database_of_file(&e.node.name))
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            };
        }
    };
    files
        .into_iter()
        .find(|e| e.node.name == wanted)
        .ok_or(RestoreError::NoSuchPath {
            snapshot,
            path: wanted,
        })
}

/// `pg_restore -d CONNINFO [-t TABLE]… EXTRA…`, reading the archive from stdin.
pub fn pg_restore_command(
    tools: &PgTools,
    conn: &ConnInfo,
    tables: &[String],
    extra_args: &[OsString],
) -> Command {
    let mut cmd = tools.client("pg_restore", conn);
    for table in tables {
        cmd.arg("-t").arg(table);
    }
    cmd.args(extra_args);
    cmd
}

/// `psql -X -q -d CONNINFO -f -`: runs `globals.sql`. Like `psql -f globals.sql`, it goes
/// on past errors (a role that already exists); they come back as the stderr tail.
pub fn psql_command(tools: &PgTools, conn: &ConnInfo) -> Command {
    let mut cmd = tools.client("psql", conn);
    cmd.args(["-X", "-q", "-f", "-"]);
    cmd
}

/// What a restore into a program did.
#[derive(Debug)]
pub struct ProgramRestore {
    /// Bytes written; `None` when the program stopped reading before the end (and still
    /// exited 0).
    pub bytes: Option<u64>,
    /// The end of what it wrote to stderr although it succeeded (warnings).
    pub stderr: String,
}

/// Streams `entry` into `command`'s stdin and waits for it. `label` names the program in
/// errors (it must not hold a connection string).
///
/// # Errors
/// [`RestoreError::Program`] when it cannot start or exits other than 0, or the fetch
/// error that stopped the stream (the program is killed then).
pub async fn restore_into_program(
    repo: &Repository,
    index: &MasterIndex,
    entry: &PlannedEntry,
    command: Command,
    label: &str,
    parallel: usize,
) -> Result<ProgramRestore, RestoreError> {
    let mut sink = ChildSink::spawn(command, label)?;
    let stdin = sink.stdin().ok_or(RestoreError::WriterGone)?;
    // On a fetch error `sink` is dropped here, which kills the program.
    let bytes = stream_file(repo, index, entry, stdin, parallel).await?;
    let stderr = tokio::task::spawn_blocking(move || sink.finish())
        .await
        .map_err(|_| RestoreError::WriterGone)??;
    Ok(ProgramRestore { bytes, stderr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_map_back_to_databases() {
        for name in ["app", "a/b", "100%", "x.dump", "%2F", "%25/%"] {
            assert_eq!(
                database_of_file(&dump_file_name(name)).as_deref(),
                Some(name)
            );
        }
        assert_eq!(database_of_file(GLOBALS_FILE), None);
    }
}
