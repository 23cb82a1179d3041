//! A throwaway PostgreSQL server for drills: on a data directory in scratch space, a
//! free port, a private socket directory, trust authentication over that socket only,
//! archiving off (a drill must never push a new timeline into the real archive), and
//! stopped on every path out.
//!
//! PostgreSQL refuses to run as root, so when stowage runs as root the server runs as
//! the owner of the data directory (the restored files keep the backup's owner).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

/// Why a scratch server could not be run or queried.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error(
        "no PostgreSQL {major} server programs (pg_ctl, postgres) in {dirs}; install them, or \
         name their directory with --pg-bin"
    )]
    NoServer { major: String, dirs: String },
    #[error("{what} failed: {detail}")]
    Failed { what: String, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the server stopped during recovery; its log ends:\n{log}")]
    Died { log: String },
    #[error("timed out after {secs} s waiting for {what}; the server log ends:\n{log}")]
    Timeout {
        what: String,
        secs: u64,
        log: String,
    },
    #[error("query {sql:?}: {source}")]
    Query {
        sql: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// Where PostgreSQL's server programs are: `explicit`, else Debian's directory for
/// `major`, else the newest one there.
///
/// # Errors
/// [`ScratchError::NoServer`].
pub fn server_bin(explicit: Option<&Path>, major: Option<u32>) -> Result<PathBuf, ScratchError> {
    let has = |dir: &Path| dir.join("pg_ctl").is_file() && dir.join("postgres").is_file();
    let mut tried = Vec::new();
    if let Some(dir) = explicit {
        if has(dir) {
            return Ok(dir.to_path_buf());
        }
        tried.push(dir.to_path_buf());
    } else {
        let root = Path::new("/usr/lib/postgresql");
        if let Some(major) = major {
            let dir = root.join(major.to_string()).join("bin");
            if has(&dir) {
                return Ok(dir);
            }
            tried.push(dir);
        } else if let Ok(listing) = std::fs::read_dir(root) {
            let mut versions: Vec<(u32, PathBuf)> = listing
                .filter_map(|e| e.ok())
                .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
                .filter(|(_, dir)| has(dir))
                .collect();
            versions.sort();
            if let Some((_, dir)) = versions.pop() {
                return Ok(dir);
            }
            tried.push(root.to_path_buf());
        }
    }
    Err(ScratchError::NoServer {
        major: major.map_or_else(String::new, |m| m.to_string()),
        dirs: tried
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Who the server runs as: `None` to run as ourselves.
fn run_as(pgdata: &Path) -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    std::fs::metadata(pgdata).ok().map(|m| (m.uid(), m.gid()))
}

/// The login name of `uid`, if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    // SAFETY: getpwuid returns a pointer to static storage or null; the name is copied
    // out before any other call could overwrite it.
    unsafe {
        let pw = libc::getpwuid(uid);
        if pw.is_null() || (*pw).pw_name.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// The uid and gid of login name `name`.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: as in `user_name`; the fields are copied out immediately.
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        if pw.is_null() {
            return None;
        }
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16, ScratchError> {
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|source| ScratchError::Io {
            what: "finding a free port".into(),
            source,
        })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| ScratchError::Io {
            what: "finding a free port".into(),
            source,
        })
}

/// Settings for `postgresql.auto.conf`: (name, unquoted value).
pub type ServerSettings = Vec<(&'static str, String)>;

/// A server on a scratch data directory.
#[derive(Debug)]
pub struct ScratchServer {
    pub pgdata: PathBuf,
    pub socket_dir: PathBuf,
    pub port: u16,
    pub log: PathBuf,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    running: bool,
}

impl ScratchServer {
    /// Prepares `pgdata` (a restored or new data directory) to run privately under
    /// `scratch`: returns the server and the settings to add to its configuration.
    ///
    /// # Errors
    /// [`ScratchError::Io`] creating the socket directory or the files.
    pub fn prepare(
        bin: PathBuf,
        pgdata: PathBuf,
        scratch: &Path,
    ) -> Result<(ScratchServer, ServerSettings), ScratchError> {
        let owner = run_as(&pgdata);
        let io = |what: &str| {
            let what = what.to_string();
            move |source| ScratchError::Io { what, source }
        };
        let socket_dir = scratch.join("run");
        std::fs::create_dir_all(&socket_dir).map_err(io("creating the socket directory"))?;
        // Trust authentication is safe only because nobody else can reach the socket.
        std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("restricting the socket directory"))?;
        let hba = scratch.join("drill_hba.conf");
        std::fs::write(&hba, "local all all trust\n")
            .map_err(io("writing the drill's hba file"))?;
        let log = scratch.join("server.log");
        std::fs::write(&log, "").map_err(io("creating the server log"))?;
        // Debian keeps postgresql.conf in /etc: a restored data directory may lack it.
        let conf = pgdata.join("postgresql.conf");
        if !conf.exists() {
            std::fs::write(&conf, "").map_err(io("writing an empty postgresql.conf"))?;
        }
        if let Some((uid, gid)) = owner {
            for path in [scratch, &socket_dir, &hba, &log, &conf] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io(&format!(
                    "giving {} to the server's user",
                    path.display()
                )))?;
            }
        }
        let port = free_port()?;
        let settings = vec![
            ("port", port.to_string()),
            ("listen_addresses", String::new()),
            ("unix_socket_directories", socket_dir.display().to_string()),
            ("unix_socket_permissions", "0700".into()),
            ("hba_file", hba.display().to_string()),
            ("archive_mode", "off".into()),
            ("logging_collector", "off".into()),
            ("hot_standby", "on".into()),
        ];
        Ok((
            ScratchServer {
                pgdata,
                socket_dir,
                port,
                log,
                bin,
                owner,
                running: false,
            },
            settings,
        ))
    }

    /// A command running server program `program` as the server's user.
    fn program(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Starts the server with `env` added to its environment (restore_command runs in
    /// it) and waits until it accepts connections or stops.
    ///
    /// # Errors
    /// [`ScratchError::Failed`] with the server's log when it does not come up.
    pub fn start(
        &mut self,
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<(), ScratchError> {
        let mut cmd = self.program("pg_ctl");
        cmd.arg("-D")
            .arg(&self.pgdata)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", &timeout.as_secs().max(1).to_string(), "start"])
            .envs(env.iter().map(|(k, v)| (k, v)));
        let out = cmd.output().map_err(|source| ScratchError::Io {
            what: "running pg_ctl start".into(),
            source,
        })?;
        // pg_ctl may have started a postmaster even when it reports failure.
        self.running = true;
        if !out.status.success() {
            return Err(ScratchError::Failed {
                what: "starting the server".into(),
                detail: format!(
                    "{}\nserver log:\n{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    self.log_tail(30)
                ),
            });
        }
        Ok(())
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the postmaster is still there.
    fn alive(&self) -> bool {
        let pid = std::fs::read_to_string(self.pgdata.join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok());
        // SAFETY: kill with signal 0 only checks that the process exists.
        pid.is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0)
    }

    /// A connection as `user` to `db` over the private socket.
    ///
    /// # Errors
    /// [`ScratchError::Failed`] when the server does not accept it.
    pub async fn connect(
        &self,
        user: &str,
        db: &str,
    ) -> Result<tokio_postgres::Client, ScratchError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .user(user)
            .dbname(db)
            .application_name("stowage drill")
            .connect_timeout(Duration::from_secs(10));
        let (client, connection) =
            config
                .connect(NoTls)
                .await
                .map_err(|e| ScratchError::Failed {
                    what: format!("connecting as {user} to database {db}"),
                    detail: e.to_string(),
                })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Waits until the server has left recovery (it promoted at the target), failing
    /// early when the server dies or recovery pauses or shuts down instead.
    ///
    /// # Errors
    /// [`ScratchError::Died`] with the log, or [`ScratchError::Timeout`].
    pub async fn wait_promoted(&self, user: &str, timeout: Duration) -> Result<(), ScratchError> {
        let started = Instant::now();
        loop {
            if !self.alive() {
                return Err(ScratchError::Died {
                    log: self.log_tail(20),
                });
            }
            if let Ok(client) = self.connect(user, "postgres").await {
                if let Ok(row) = client.query_one("SELECT pg_is_in_recovery()", &[]).await {
                    if !row.try_get::<_, bool>(0).unwrap_or(true) {
                        return Ok(());
                    }
                }
            }
            if started.elapsed() > timeout {
                return Err(ScratchError::Timeout {
                    what: "recovery to reach its target and promote".into(),
                    secs: timeout.as_secs(),
                    log: self.log_tail(20),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `file` with psql (stopping at the first error); returns its output.
    ///
    /// # Errors
    /// [`ScratchError::Failed`] with psql's messages.
    pub fn run_sql_file(&self, file: &Path, user: &str, db: &str) -> Result<String, ScratchError> {
        let out = self
            .program("psql")
            .args(["-X", "-v", "ON_ERROR_STOP=1", "--no-password", "-h"])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", user, "-d", db, "-f"])
            .arg(file)
            .output()
            .map_err(|source| ScratchError::Io {
                what: "running psql".into(),
                source,
            })?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            return Err(ScratchError::Failed {
                what: format!("check SQL {}", file.display()),
                detail: text.trim().to_string(),
            });
        }
        Ok(text)
    }

    /// Stops the server (fast shutdown; immediate if that does not finish).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        for mode in ["fast", "immediate"] {
            let status = self
                .program("pg_ctl")
                .arg("-D")
                .arg(&self.pgdata)
                .args(["-w", "-t", "60", "-m", mode, "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if status.is_ok_and(|s| s.success()) || !self.alive() {
                break;
            }
        }
        self.running = false;
    }

    /// Runs `initdb` for a new scratch cluster at `pgdata`, as `owner` when given.
    ///
    /// # Errors
    /// [`ScratchError::Failed`] with initdb's messages.
    pub fn initdb(
        bin: &Path,
        pgdata: &Path,
        owner: Option<(u32, u32)>,
    ) -> Result<(), ScratchError> {
        let mut cmd = Command::new(bin.join("initdb"));
        if let Some((uid, gid)) = owner {
            cmd.uid(uid).gid(gid);
        }
        let out = cmd
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(pgdata)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ScratchError::Io {
                what: "running initdb".into(),
                source,
            })?;
        if !out.status.success() {
            return Err(ScratchError::Failed {
                what: "initdb".into(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        self.stop();
    }
}
