//! Finding PostgreSQL's client programs (`pg_dump`, `pg_basebackup`, `pg_restore`).

use std::path::{Path, PathBuf};

/// Where Debian and Ubuntu install each major version's programs.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The path of `program`: from `PATH` when it is there, else from the newest
/// `/usr/lib/postgresql/<major>/bin` (Debian keeps those off `PATH`), else the bare name
/// (so the error names what was looked for).
pub fn find(program: &str) -> PathBuf {
    find_in(
        program,
        std::env::var_os("PATH").as_deref(),
        Path::new(DEBIAN_ROOT),
    )
}

fn find_in(program: &str, path: Option<&std::ffi::OsStr>, debian: &Path) -> PathBuf {
    if let Some(path) = path {
        if let Some(found) = std::env::split_paths(path)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
        {
            return found;
        }
    }
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir(debian)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin").join(program)))
        })
        .filter(|(_, p)| p.is_file())
        .collect();
    majors.sort();
    majors
        .pop()
        .map_or_else(|| PathBuf::from(program), |(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_first_then_the_newest_debian_version() {
        let root = tempfile::tempdir().unwrap();
        for major in ["13", "15", "9.6"] {
            let bin = root.path().join(major).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("pg_dump"), "").unwrap();
        }
        let on_path = tempfile::tempdir().unwrap();
        std::fs::write(on_path.path().join("pg_dump"), "").unwrap();
        let found = find_in("pg_dump", Some(on_path.path().as_os_str()), root.path());
        assert_eq!(found, on_path.path().join("pg_dump"));
        let found = find_in("pg_dump", None, root.path());
        assert_eq!(found, root.path().join("15/bin/pg_dump"));
        assert_eq!(find_in("nope", None, root.path()), PathBuf::from("nope"));
    }
}
