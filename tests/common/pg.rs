//! Real PostgreSQL 15 clusters for tests: initdb in a temp dir, on a free port, with WAL
//! archived by the `stowage` binary under test.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root every server command
//! and every `stowage` command that touches the repository runs as `postgres`, and the
//! whole scratch tree belongs to it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::PASSWORD;

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Whether PostgreSQL 15 is installed (it is on every machine we support).
pub fn available() -> bool {
    Path::new(PG_BIN).join("initdb").exists()
}

/// True (with a note) when a test must be skipped because PostgreSQL 15 is missing.
pub fn skip() -> bool {
    if !available() {
        eprintln!("PostgreSQL 15 not installed; skipped");
        return true;
    }
    false
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program` run as the cluster owner (`postgres` when we are root).
pub fn as_owner(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Hands `path` (recursively) to the cluster owner.
pub fn give_to_owner(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "chown {}", path.display());
    }
}

fn run(mut cmd: Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({:?})\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A scratch tree owned by the cluster owner: a repository, a settings file pointing at
/// it (`STOWAGE_CONFIG`), and room for clusters.
pub struct PgWorld {
    pub dir: tempfile::TempDir,
}

impl PgWorld {
    /// A new world with an initialized local repository (cheap key derivation).
    pub fn new() -> PgWorld {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("password"), format!("{PASSWORD}\n")).unwrap();
        std::fs::write(
            root.join("stowage.toml"),
            format!(
                "repo = \"{}\"\npassword_file = \"{}\"\ncache_dir = \"{}\"\n",
                root.join("repo").display(),
                root.join("password").display(),
                root.join("cache").display()
            ),
        )
        .unwrap();
        give_to_owner(root);
        let world = PgWorld { dir };
        let out = world
            .stowage(&["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        world
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn repo(&self) -> PathBuf {
        self.root().join("repo")
    }

    pub fn config(&self) -> PathBuf {
        self.root().join("stowage.toml")
    }

    /// `stowage ARGS` as the cluster owner, configured only through `STOWAGE_CONFIG`.
    pub fn stowage(&self, args: &[&str]) -> Command {
        let mut cmd = as_owner("env");
        cmd.arg(format!("STOWAGE_CONFIG={}", self.config().display()))
            .arg("NO_COLOR=1")
            .arg(env!("CARGO_BIN_EXE_stowage"))
            .args(args);
        cmd.env_remove("STOWAGE_REPO")
            .env_remove("STOWAGE_PASSWORD")
            .env_remove("STOWAGE_PASSWORD_FILE")
            .env_remove("STOWAGE_CLUSTER");
        cmd
    }

    /// Runs `stowage ARGS`, asserting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.stowage(args).output().unwrap();
        super::assert_success(&out, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Copies `from` to a file owned by the cluster owner at `to`.
    pub fn copy(&self, from: &Path, to: &Path) {
        std::fs::copy(from, to).unwrap();
        give_to_owner(to);
    }

    /// Makes a directory (with parents) owned by the cluster owner.
    pub fn mkdir(&self, path: &Path) {
        std::fs::create_dir_all(path).unwrap();
        give_to_owner(path);
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// One PostgreSQL cluster (1 MiB WAL segments, to keep tests quick).
pub struct Cluster {
    pub data: PathBuf,
    pub socket_dir: PathBuf,
    pub port: u16,
    log: PathBuf,
    config: PathBuf,
    running: bool,
}

impl Cluster {
    /// initdb under `world` as `name`, archiving with `archive_command` (`%p` style, the
    /// binary under test is substituted for `stowage`), plus `extra` settings lines.
    pub fn init(
        world: &PgWorld,
        name: &str,
        archive_command: Option<&str>,
        extra: &[&str],
    ) -> Cluster {
        let data = world.root().join(name);
        let mut initdb = as_owner(Path::new(PG_BIN).join("initdb"));
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--wal-segsize=1",
                "-N",
                "-D",
            ])
            .arg(&data);
        run(initdb, "initdb");
        let cluster = Cluster::existing(world, name, data);
        let mut conf = vec![
            "listen_addresses = ''".into(),
            "wal_level = replica".into(),
            "fsync = off".into(),
            "wal_keep_size = '1GB'".into(),
            "track_commit_timestamp = on".into(),
            "max_wal_senders = 2".into(),
        ];
        if let Some(command) = archive_command {
            let command = command.replace("stowage", env!("CARGO_BIN_EXE_stowage"));
            conf.push("archive_mode = on".into());
            conf.push(format!("archive_command = '{command}'"));
        }
        conf.extend(extra.iter().map(|s| s.to_string()));
        cluster.append_conf(&conf);
        cluster
    }

    /// A cluster over an existing data directory (made by initdb, or a restored base
    /// backup), on its own port and socket directory.
    pub fn existing(world: &PgWorld, name: &str, data: PathBuf) -> Cluster {
        let socket_dir = world.root().join(format!("{name}-sock"));
        world.mkdir(&socket_dir);
        let cluster = Cluster {
            data,
            socket_dir,
            port: free_port(),
            log: world.root().join(format!("{name}.log")),
            config: world.config(),
            running: false,
        };
        cluster.append_conf(&[
            format!("port = {}", cluster.port),
            format!(
                "unix_socket_directories = '{}'",
                cluster.socket_dir.display()
            ),
        ]);
        cluster
    }

    /// Appends lines to postgresql.conf (later lines win).
    pub fn append_conf(&self, lines: &[String]) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .unwrap();
        for line in lines {
            writeln!(file, "{line}").unwrap();
        }
    }

    /// Starts the server with `STOWAGE_CONFIG` in its environment, so `archive_command`
    /// and `restore_command` need no flags; waits until it accepts connections.
    pub fn start(&mut self) {
        let mut cmd = as_owner("env");
        cmd.arg(format!("STOWAGE_CONFIG={}", self.config.display()))
            .arg(Path::new(PG_BIN).join("pg_ctl"))
            .args(["-w", "-t", "120", "-l"])
            .arg(&self.log)
            .arg("-D")
            .arg(&self.data)
            .arg("start");
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\nlog:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        self.running = true;
    }

    /// A clean stop (which also archives the last segment while archiving is on).
    pub fn stop(&mut self) {
        self.stop_with("fast");
    }

    /// A crash, as far as the data directory can tell: no shutdown checkpoint, and the
    /// segment being written is not archived.
    pub fn crash(&mut self) {
        self.stop_with("immediate");
    }

    fn stop_with(&mut self, mode: &str) {
        if self.running {
            let mut cmd = as_owner(Path::new(PG_BIN).join("pg_ctl"));
            cmd.args(["-w", "-t", "120", "-m", mode, "-D"])
                .arg(&self.data)
                .arg("stop");
            run(cmd, "pg_ctl stop");
            self.running = false;
        }
    }

    /// Waits until the server has left recovery (promoted), up to a minute.
    pub fn wait_promoted(&self) {
        for _ in 0..600 {
            if self.sql("SELECT pg_is_in_recovery()") == "f" {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("still in recovery after a minute:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs SQL with psql; returns unaligned, tuples-only output, trimmed.
    pub fn sql(&self, sql: &str) -> String {
        self.sql_in("postgres", sql)
    }

    /// A libpq connection string for database `db` as `postgres` (over the socket).
    pub fn connstr(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.socket_dir.display(),
            self.port
        )
    }

    /// A PostgreSQL client program (`pg_dump`, `pgbench`, …) run as the cluster owner,
    /// aimed at this server (`-h`, `-p`, `-U postgres`).
    pub fn client(&self, program: &str) -> Command {
        let mut cmd = as_owner(Path::new(PG_BIN).join(program));
        cmd.args(["-U", "postgres", "-h"])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string()]);
        cmd
    }

    /// Runs `pgbench ARGS DB`, asserting success.
    pub fn pgbench(&self, db: &str, args: &[&str]) {
        let mut cmd = self.client("pgbench");
        cmd.args(args).arg(db);
        run(cmd, &format!("pgbench {args:?}"));
    }

    /// `pg_dump ARGS DB` as the owner; returns stdout, asserting success.
    pub fn pg_dump(&self, db: &str, args: &[&str]) -> Vec<u8> {
        let mut cmd = self.client("pg_dump");
        cmd.args(args).arg(db);
        run(cmd, &format!("pg_dump {args:?} {db}")).stdout
    }

    /// Runs SQL in database `db` with psql; returns unaligned, tuples-only output, trimmed.
    pub fn sql_in(&self, db: &str, sql: &str) -> String {
        let mut cmd = as_owner(Path::new(PG_BIN).join("psql"));
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-h",
        ])
        .arg(&self.socket_dir)
        .args(["-p", &self.port.to_string(), "-d", db, "-c", sql]);
        let out = run(cmd, sql);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits until the archiver has nothing left to do (no `.ready` files), up to `limit`.
    pub fn wait_archived(&self, limit: Duration) {
        let status = self.data.join("pg_wal").join("archive_status");
        let start = Instant::now();
        loop {
            let ready = std::fs::read_dir(&status)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.file_name().to_string_lossy().ends_with(".ready"))
                        .count()
                })
                .unwrap_or(0);
            if ready == 0 {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "{ready} file(s) still not archived after {limit:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Files PostgreSQL says it archived (`archive_status/*.done`), sorted.
    pub fn archived(&self) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(self.data.join("pg_wal").join("archive_status"))
                .unwrap()
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .strip_suffix(".done")
                        .map(str::to_string)
                })
                .collect();
        names.sort();
        names
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let _ = as_owner(Path::new(PG_BIN).join("pg_ctl"))
                .args(["-m", "immediate", "-D"])
                .arg(&self.data)
                .arg("stop")
                .output();
        }
    }
}
