//! Logical PostgreSQL dumps as a source: `pg_dump -Fc -Z0` streamed from the child's
//! stdout (no temporary file), one database or every database plus
//! `pg_dumpall --globals-only`, or a custom-format dump read from any stream (stdin).
//!
//! What a snapshot of kind `pg-dump` holds: one root tree with one file node per dump,
//! `<database>.dump` (see [`dump_file_name`]) and, with `--all`, `globals.sql`. The
//! snapshot's `source` object records what the dumps' own headers say: database,
//! server and pg_dump versions, archive version, compression.
//!
//! Invariants:
//! 1. A dump becomes part of a snapshot only if its program exited 0 ([`ChildStream`]) and
//!    it starts with a custom-format header ([`pg::dump::parse_header`]); anything else
//!    fails the whole backup, and no snapshot is written.
//! 2. Dumps are uncompressed (`-Z0`): a compressed dump changes throughout when a few rows
//!    change and cannot deduplicate. The pipeline compresses the chunks instead.
//! 3. Dumps are cut with [`DUMP_CHUNKER`], smaller than the repository's default chunks
//!    and still keyed by the repository's secret seed, so a night's changes (rows updated
//!    in place move to the end of their table's data) rewrite little.
//!
//! Nothing here parses command-line flags; the caller resolves the programs
//! ([`PgTools`]) and the connection ([`ConnInfo`]).

use std::ffi::OsString;
use std::io::{self, Read};

use bytes::Bytes;

use crate::pg::conninfo::{ConnInfo, ConnInfoError};
use crate::pg::dump::{parse_header, DumpHeader};
use crate::pg::tools::{PgTools, ToolsError};
use crate::pipeline::{BackupSession, PipelineError};
use crate::repo::blob::BlobKind;
use crate::repo::config::{ChunkerAlgorithm, ChunkerParams};
use crate::repo::tree::Tree;

use super::child::ChildStream;
use super::{Source, SourceOutcome, SourceReport};

/// Content-defined chunking for dumps: min 8 KiB, average 16 KiB, max 64 KiB.
///
/// Why so much smaller than the repository's 1 MiB default: the changes in a nightly dump
/// are scattered (an updated row leaves a hole where it was and reappears at the end of
/// its table's data), and each costs about two chunks. Why not smaller still: every chunk
/// also costs its id in the snapshot's tree (64 hex digits) every night, and index and
/// pack entries once. Measured with `pgbench -s 100` (a 1 GB dump), 1% new rows and 1,000
/// scattered rows updated, five seeds; second night's new bytes / stored bytes as a share
/// of the first night's stored bytes:
///
/// | min / avg / max KiB | chunks | new bytes | stored |
/// |---|---|---|---|
/// | 512 / 1024 / 4096 (the default) | 0.5 k | 76% | 75% |
/// | 16 / 64 / 256 | 6.5 k | 26% | 27% |
/// | 8 / 32 / 128 | 13 k | 14% | 17% |
/// | **8 / 16 / 64** | 26 k | 7% | 12% |
/// | 4 / 8 / 64 | 46 k | 4.5% | 11% |
///
/// pgbench rows compress about 80×, so on the second night the tree's list of ids is
/// about half of what is stored; on less compressible data the stored share follows the
/// new bytes. 8 / 16 / 64 stores less than 4 / 8 / 64 over a week (its first night is a
/// quarter smaller) with half the chunks. pgbench's rows are also low in entropy, which
/// makes FastCDC cut about 2.5× less often than `avg` says; real rows cut closer to it.
pub const DUMP_CHUNKER: ChunkerParams = ChunkerParams {
    algorithm: ChunkerAlgorithm::FastCdc2020,
    min_bytes: 8 * 1024,
    avg_bytes: 16 * 1024,
    max_bytes: 64 * 1024,
};

/// The file holding `pg_dumpall --globals-only` (roles, tablespaces) in an `--all` snapshot.
pub const GLOBALS_FILE: &str = "globals.sql";

/// Longest prefix of a dump kept to find its header.
const HEADER_LIMIT: usize = 64 * 1024;

/// The file name a database's dump gets in the snapshot's tree: the name with `%` and `/`
/// percent-encoded (a database name may hold any character, a file name not `/`), plus
/// `.dump`.
///
/// ```
/// use stowage::source::pg_dump::dump_file_name;
/// assert_eq!(dump_file_name("app"), "app.dump");
/// assert_eq!(dump_file_name("a/b%c"), "a%2Fb%25c.dump");
/// ```
pub fn dump_file_name(database: &str) -> String {
    let escaped = database.replace('%', "%25").replace('/', "%2F");
    format!("{escaped}.dump")
}

#[derive(Debug, thiserror::Error)]
pub enum PgDumpError {
    #[error(transparent)]
    Tools(#[from] ToolsError),
    #[error(transparent)]
    ConnInfo(#[from] ConnInfoError),
    #[error("listing the databases of the server as {server}")]
    List {
        server: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{server} has no database that accepts connections")]
    NoDatabases { server: String },
}

/// The databases `pg_dumpall` would dump: every one that accepts connections, except
/// templates, by name.
///
/// # Errors
/// [`PgDumpError::List`] when the server cannot be reached or refuses the query.
pub async fn list_databases(conn: &ConnInfo) -> Result<Vec<String>, PgDumpError> {
    let config = conn.client_config()?;
    let server = crate::pg::conninfo::describe(&config);
    let failed = |source| PgDumpError::List {
        server: server.clone(),
        source,
    };
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(failed)?;
    let driver = tokio::spawn(connection);
    // datconnlimit -2 marks a database left invalid by an interrupted DROP DATABASE.
    let rows = client
        .query(
            "SELECT datname::text FROM pg_database \
             WHERE datallowconn AND NOT datistemplate AND datconnlimit <> -2 \
             ORDER BY datname",
            &[],
        )
        .await
        .map_err(failed)?;
    drop(client);
    let _ = driver.await;
    let names = rows
        .iter()
        .map(|row| row.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    if names.is_empty() {
        return Err(PgDumpError::NoDatabases { server });
    }
    Ok(names)
}

/// Where one dump's bytes come from.
enum Input {
    /// A program (`pg_dump`), named in its errors by the first field.
    Program(&'static str, std::process::Command),
    Reader(Box<dyn Read + Send>),
}

/// One file of the snapshot.
struct DumpStream {
    file: String,
    /// Names the stream in errors (`pg_dump of database app`, `standard input`).
    label: String,
    input: Input,
    /// A custom-format archive whose header must be present (not `globals.sql`).
    archive: bool,
}

/// One or more dumps, stored as one snapshot of kind `pg-dump`.
pub struct PgDumpSource {
    streams: Vec<DumpStream>,
    all: bool,
}

/// `pg_dump -Fc -Z0 EXTRA… -d CONNINFO`.
fn pg_dump_command(
    tools: &PgTools,
    conn: &ConnInfo,
    extra_args: &[OsString],
) -> std::process::Command {
    let mut cmd = tools.client("pg_dump", conn);
    cmd.args(["-Fc", "-Z0"]).args(extra_args);
    cmd
}

impl PgDumpSource {
    /// The database `conn` names (with libpq's defaults), by `pg_dump -Fc -Z0`, with
    /// `extra_args` (say `--exclude-table=audit`) before the connection.
    pub fn database(tools: &PgTools, conn: &ConnInfo, extra_args: &[OsString]) -> PgDumpSource {
        let name = conn.dbname();
        PgDumpSource {
            streams: vec![DumpStream {
                file: dump_file_name(&name),
                label: format!("pg_dump of database {name}"),
                input: Input::Program("pg_dump", pg_dump_command(tools, conn, extra_args)),
                archive: true,
            }],
            all: false,
        }
    }

    /// Every database in `databases` (see [`list_databases`]) on the server `conn`
    /// reaches, each by `pg_dump`, plus `pg_dumpall --globals-only` as [`GLOBALS_FILE`].
    pub fn all(
        tools: &PgTools,
        conn: &ConnInfo,
        databases: &[String],
        extra_args: &[OsString],
    ) -> PgDumpSource {
        let mut globals = tools.client("pg_dumpall", conn);
        globals.arg("--globals-only");
        let mut streams = vec![DumpStream {
            file: GLOBALS_FILE.into(),
            label: "pg_dumpall --globals-only".into(),
            input: Input::Program("pg_dumpall", globals),
            archive: false,
        }];
        streams.extend(databases.iter().map(|name| DumpStream {
            file: dump_file_name(name),
            label: format!("pg_dump of database {name}"),
            input: Input::Program(
                "pg_dump",
                pg_dump_command(tools, &conn.with_dbname(name), extra_args),
            ),
            archive: true,
        }));
        PgDumpSource { streams, all: true }
    }

    /// A custom-format dump read from `reader` (`pg_dump -Fc … | stowage backup stdin
    /// --kind pg-dump --name NAME`), stored as `NAME.dump`. `label` names the stream in
    /// errors.
    pub fn from_reader(
        reader: impl Read + Send + 'static,
        name: &str,
        label: impl Into<String>,
    ) -> PgDumpSource {
        let base = name.strip_suffix(".dump").unwrap_or(name);
        PgDumpSource {
            streams: vec![DumpStream {
                file: dump_file_name(base),
                label: label.into(),
                input: Input::Reader(Box::new(reader)),
                archive: true,
            }],
            all: false,
        }
    }
}

/// Passes a stream through, refusing it (an `InvalidData` error) unless it starts with a
/// custom-format header, which it keeps.
struct HeaderCheck<R> {
    inner: R,
    head: Vec<u8>,
    header: Option<DumpHeader>,
}

impl<R: Read> HeaderCheck<R> {
    fn new(inner: R) -> Self {
        HeaderCheck {
            inner,
            head: Vec::new(),
            header: None,
        }
    }
}

impl<R: Read> Read for HeaderCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.header.is_some() || buf.is_empty() {
            return Ok(n);
        }
        let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidData, message);
        if n == 0 {
            return Err(invalid(if self.head.is_empty() {
                "empty, not a pg_dump custom-format archive".into()
            } else {
                "ends inside its pg_dump archive header".into()
            }));
        }
        self.head.extend_from_slice(&buf[..n]);
        match parse_header(&self.head) {
            Ok(Some(header)) => {
                self.header = Some(header);
                self.head = Vec::new();
            }
            Ok(None) if self.head.len() < HEADER_LIMIT => {}
            Ok(None) => return Err(invalid("pg_dump archive header is too long".into())),
            Err(e) => return Err(invalid(e.to_string())),
        }
        Ok(n)
    }
}

/// The facts one dump's header gives, as the snapshot records them.
fn header_facts(header: &DumpHeader) -> serde_json::Map<String, serde_json::Value> {
    let mut facts = serde_json::Map::new();
    let mut put = |key: &str, value: Option<&str>| {
        if let Some(value) = value {
            facts.insert(key.into(), value.into());
        }
    };
    put("database", header.database.as_deref());
    put("server_version", header.server_version.as_deref());
    put("pg_dump_version", header.pg_dump_version.as_deref());
    put("archive_version", Some(&header.archive_version_string()));
    put("compression", Some(&header.compression));
    facts
}

impl Source for PgDumpSource {
    fn kind(&self) -> &'static str {
        "pg-dump"
    }

    fn run(&mut self, session: &mut BackupSession) -> Result<SourceOutcome, PipelineError> {
        let mut nodes = Vec::new();
        let mut dumps = Vec::new();
        let mut first_header = None;
        for stream in std::mem::take(&mut self.streams) {
            let what = stream.label;
            let reader: Box<dyn Read + Send> = match stream.input {
                Input::Program(program, cmd) => match ChildStream::spawn(cmd, program) {
                    Ok(child) => Box::new(child),
                    Err(e) => {
                        return Err(PipelineError::Read {
                            what,
                            source: io::Error::other(e),
                        })
                    }
                },
                Input::Reader(reader) => reader,
            };
            let mut splitter = session.content_splitter_with(&DUMP_CHUNKER);
            let mut checked = HeaderCheck::new(reader);
            let content = if stream.archive {
                let pending = session.add_stream(&mut checked, &mut splitter, None, &what)?;
                session.wait(pending)?
            } else {
                let pending = session.add_stream(&mut checked.inner, &mut splitter, None, &what)?;
                session.wait(pending)?
            };
            let mut entry = serde_json::Map::new();
            entry.insert("file".into(), stream.file.clone().into());
            entry.insert("bytes".into(), content.size.into());
            if let Some(header) = checked.header {
                entry.extend(header_facts(&header));
                first_header.get_or_insert(header);
            }
            dumps.push(serde_json::Value::Object(entry));
            nodes.push(super::stream_node(stream.file.as_bytes(), content));
        }
        nodes.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        let files = nodes.len() as u64;
        let tree = Tree { nodes };
        let tree_id = session.add_blob(BlobKind::Tree, Bytes::from(tree.encode()))?;
        let mut report = SourceReport::default();
        report.stats.files = files;
        let facts = &mut report.facts;
        facts.insert("format".into(), "custom".into());
        if let Some(header) = &first_header {
            let mut common = header_facts(header);
            if self.all {
                common.remove("database");
            }
            facts.extend(common);
        }
        if self.all {
            facts.insert("all".into(), true.into());
            facts.insert("globals".into(), GLOBALS_FILE.into());
        }
        facts.insert("dumps".into(), dumps.into());
        Ok(SourceOutcome {
            tree: tree_id,
            report,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_chunker_is_valid_and_smaller_than_the_default() {
        DUMP_CHUNKER.validate().unwrap();
        assert!(DUMP_CHUNKER.avg_bytes < ChunkerParams::default().avg_bytes);
    }

    #[test]
    fn header_check_refuses_other_streams_before_passing_much() {
        let plain = b"--\n-- PostgreSQL database dump\n--\n".repeat(100);
        let mut check = HeaderCheck::new(&plain[..]);
        let err = io::copy(&mut check, &mut io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err
            .to_string()
            .contains("not a pg_dump custom-format archive"));
        let mut empty = HeaderCheck::new(&b""[..]);
        let err = io::copy(&mut empty, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let mut short = HeaderCheck::new(&b"PGDMP\x01\x0e"[..]);
        let err = io::copy(&mut short, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("ends inside"), "{err}");
    }
}
