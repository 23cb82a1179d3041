//! PostgreSQL's client programs (`pg_dump`, `pg_dumpall`, `pg_restore`, `psql`): which
//! directory they are taken from.
//!
//! Order: the directory given (`--pg-bin DIR`), else the directory of the `pg_dump` found
//! on `PATH`, else the newest `/usr/lib/postgresql/<major>/bin` (Debian and Ubuntu install
//! every major version there and put only a wrapper on `PATH`, if anything). All programs
//! come from one directory, so a dump and its restore use one version.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::conninfo::ConnInfo;

/// Where Debian-family packages install each major version's programs.
const VERSIONED_ROOT: &str = "/usr/lib/postgresql";

/// The program whose presence marks a directory as PostgreSQL's client programs.
const MARKER: &str = "pg_dump";

#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    #[error("{dir}: no {program} there (--pg-bin names the directory holding PostgreSQL's client programs)")]
    Missing { dir: PathBuf, program: String },
    #[error(
        "pg_dump is neither on PATH nor in {VERSIONED_ROOT}/<version>/bin; install the \
         PostgreSQL client programs or name their directory with --pg-bin"
    )]
    NotFound,
}

/// A directory of PostgreSQL client programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTools {
    dir: PathBuf,
}

impl PgTools {
    /// Finds the programs: `explicit` when given, else `PATH`, else the newest versioned
    /// directory.
    ///
    /// # Errors
    /// [`ToolsError::Missing`] when `explicit` lacks `pg_dump`, [`ToolsError::NotFound`]
    /// when nothing is found.
    pub fn locate(explicit: Option<&Path>) -> Result<PgTools, ToolsError> {
        if let Some(dir) = explicit {
            if !is_program(&dir.join(MARKER)) {
                return Err(ToolsError::Missing {
                    dir: dir.to_path_buf(),
                    program: MARKER.into(),
                });
            }
            return Ok(PgTools {
                dir: dir.to_path_buf(),
            });
        }
        let on_path = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .find(|dir| is_program(&dir.join(MARKER)));
        if let Some(dir) = on_path {
            return Ok(PgTools { dir });
        }
        newest_versioned(Path::new(VERSIONED_ROOT))
            .map(|dir| PgTools { dir })
            .ok_or(ToolsError::NotFound)
    }

    /// The directory the programs come from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A command running `program` (`pg_dump`, `psql`, …) from this directory.
    pub fn command(&self, program: &str) -> Command {
        Command::new(self.dir.join(program))
    }

    /// `program --no-password -d CONN`: a client program aimed at `conn`. A password in
    /// `conn` goes through `PGPASSWORD` (a command line is readable by every local user,
    /// `ps`); `--no-password` makes a missing one an error instead of a prompt that would
    /// hang a nightly job.
    pub fn client(&self, program: &str, conn: &ConnInfo) -> Command {
        let mut conn = conn.clone();
        let mut cmd = self.command(program);
        if let Some(password) = conn.take("password") {
            cmd.env("PGPASSWORD", password);
        }
        cmd.arg("--no-password")
            .arg("-d")
            .arg(conn.to_conninfo_string());
        cmd
    }
}

fn is_program(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `root/<N>/bin` with the highest numeric `N` that holds `pg_dump`.
fn newest_versioned(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let version: f64 = name.to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            is_program(&bin.join(MARKER)).then_some((version, bin))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, bin)| bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_program(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_newest_major_version_wins() {
        let root = tempfile::tempdir().unwrap();
        for v in ["9.6", "15", "17", "100-broken"] {
            fake_program(&root.path().join(v).join("bin").join("pg_dump"));
        }
        std::fs::create_dir_all(root.path().join("18/bin")).unwrap(); // no pg_dump
        assert_eq!(
            newest_versioned(root.path()),
            Some(root.path().join("17/bin"))
        );
        assert_eq!(newest_versioned(&root.path().join("none")), None);
    }

    #[test]
    fn an_explicit_directory_must_hold_pg_dump() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            PgTools::locate(Some(dir.path())),
            Err(ToolsError::Missing { .. })
        ));
        fake_program(&dir.path().join("pg_dump"));
        let tools = PgTools::locate(Some(dir.path())).unwrap();
        assert_eq!(tools.dir(), dir.path());
        assert_eq!(
            tools.command("pg_restore").get_program(),
            dir.path().join("pg_restore")
        );
    }
}
