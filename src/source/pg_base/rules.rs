//! What of a data directory a base backup copies: the rules of the server's own base
//! backup (`basebackup.c`, `reference/postgresql.md` §6), applied as a file walk's rules.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::source::files::{Keep, WalkRules};

/// Files never copied, at any level: the server's runtime state and leftovers of earlier
/// backups. `pg_internal.init` is matched as a prefix (13+).
const SKIP_FILES: &[&[u8]] = &[
    b"postgresql.auto.conf.tmp",
    b"current_logfiles.tmp",
    b"backup_label",
    b"tablespace_map",
    b"backup_manifest",
    b"postmaster.pid",
    b"postmaster.opts",
    b".DS_Store",
];

/// Directories kept empty: their contents are rebuilt by the server at startup.
const EMPTY_DIRS: &[&[u8]] = &[
    b"pg_stat_tmp",
    b"pg_replslot",
    b"pg_dynshmem",
    b"pg_notify",
    b"pg_serial",
    b"pg_snapshots",
    b"pg_subtrans",
];

/// The rules for one data directory (or tablespace directory) at `root`.
pub struct DataDirRules {
    pub root: PathBuf,
    pub block_size: usize,
}

impl WalkRules for DataDirRules {
    fn keep(&self, path: &Path, name: &[u8], is_dir: bool) -> Keep {
        if name.starts_with(b"pgsql_tmp") || name.starts_with(b"pg_internal.init") {
            return Keep::No;
        }
        if SKIP_FILES.contains(&name) {
            return Keep::No;
        }
        // Kept empty even when a symlink leads elsewhere (a tmpfs for pg_stat_tmp, say).
        if EMPTY_DIRS.contains(&name) && (is_dir || path.is_dir()) {
            return Keep::EmptyDir;
        }
        // pg_wal (a directory or a symlink to one) is stored as an empty directory by
        // the source itself: WAL comes from the archive.
        if name == b"pg_wal" && path.parent() == Some(self.root.as_path()) {
            return Keep::No;
        }
        Keep::Yes
    }

    fn visit_order(&self, dir: &Path, names: &mut Vec<OsString>) {
        if is_database_dir(dir) {
            drop_unlogged_and_temp(names);
        }
        // pg_control last: on a standby its minimum recovery point must cover every
        // page copied before it. So `global` is read last, and pg_control last in it.
        let last = if dir == self.root {
            "global"
        } else if dir == self.root.join("global") {
            "pg_control"
        } else {
            return;
        };
        if let Some(at) = names.iter().position(|n| n.as_bytes() == last.as_bytes()) {
            let name = names.remove(at);
            names.push(name);
        }
    }

    fn page_size(&self) -> Option<usize> {
        Some(self.block_size)
    }

    fn live_files(&self) -> bool {
        true
    }
}

/// `base/<oid>` or a tablespace's `PG_<major>_<catversion>/<oid>`.
fn is_database_dir(dir: &Path) -> bool {
    let parent = dir.parent().and_then(Path::file_name).map(|n| n.as_bytes());
    let own = dir.file_name().map(|n| n.as_bytes()).unwrap_or_default();
    !own.is_empty()
        && own.iter().all(u8::is_ascii_digit)
        && parent.is_some_and(|p| p == b"base" || p.starts_with(b"PG_"))
}

/// The relfilenode a relation file name starts with (`16384`, `16384_fsm`, `16384.1`).
fn relfilenode(name: &[u8]) -> Option<&[u8]> {
    let end = name
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(name.len());
    let rest = &name[end..];
    let is_fork = rest.is_empty() || rest[0] == b'.' || rest[0] == b'_';
    (end > 0 && is_fork).then_some(&name[..end])
}

/// Removes every fork of an unlogged relation except its init fork (an unlogged
/// relation is one with a `<relfilenode>_init` file; recovery rebuilds the rest from the
/// init fork), and temporary relations (`t<backend>_<relfilenode>…`).
fn drop_unlogged_and_temp(names: &mut Vec<OsString>) {
    let unlogged: Vec<Vec<u8>> = names
        .iter()
        .filter_map(|n| n.as_bytes().strip_suffix(b"_init").map(<[u8]>::to_vec))
        .filter(|base| !base.is_empty() && base.iter().all(u8::is_ascii_digit))
        .collect();
    names.retain(|n| {
        let name = n.as_bytes();
        if is_temp_relation(name) {
            return false;
        }
        match relfilenode(name) {
            Some(node) if unlogged.iter().any(|u| u == node) => {
                // Keep the init fork itself (and its segments, were there any).
                name[node.len()..].starts_with(b"_init")
            }
            _ => true,
        }
    });
}

fn is_temp_relation(name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(b"t") else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && rest.get(digits) == Some(&b'_') && relfilenode(&rest[digits + 1..]).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn unlogged_forks_and_temp_relations_are_dropped() {
        let mut list = names(&[
            "16384",
            "16384.1",
            "16384_fsm",
            "16384_init",
            "16384_vm",
            "16390",
            "16390_fsm",
            "t3_16400",
            "t3_16400_fsm",
            "PG_VERSION",
            "pg_filenode.map",
            "1638",
        ]);
        drop_unlogged_and_temp(&mut list);
        assert_eq!(
            list,
            names(&[
                "16384_init",
                "16390",
                "16390_fsm",
                "PG_VERSION",
                "pg_filenode.map",
                "1638"
            ])
        );
    }

    #[test]
    fn skips_what_the_server_skips_and_reads_pg_control_last() {
        let rules = DataDirRules {
            root: PathBuf::from("/pg"),
            block_size: 8192,
        };
        let keep = |path: &str, dir| {
            let path = Path::new(path);
            let name = path.file_name().unwrap().as_bytes();
            rules.keep(path, name, dir)
        };
        assert_eq!(keep("/pg/postmaster.pid", false), Keep::No);
        assert_eq!(keep("/pg/base/1/pgsql_tmp12.3", false), Keep::No);
        assert_eq!(keep("/pg/global/pg_internal.init.123", false), Keep::No);
        assert_eq!(keep("/pg/pg_stat_tmp", true), Keep::EmptyDir);
        assert_eq!(keep("/pg/pg_wal", true), Keep::No);
        assert_eq!(keep("/pg/base/1/16384", false), Keep::Yes);
        assert_eq!(keep("/pg/postgresql.conf", false), Keep::Yes);
        let mut top = names(&["base", "global", "pg_xact", "postgresql.conf"]);
        rules.visit_order(Path::new("/pg"), &mut top);
        assert_eq!(top.last().unwrap(), "global");
        let mut global = names(&["1260", "pg_control", "pg_filenode.map"]);
        rules.visit_order(Path::new("/pg/global"), &mut global);
        assert_eq!(global.last().unwrap(), "pg_control");
        assert!(is_database_dir(Path::new("/pg/base/16384")));
        assert!(is_database_dir(Path::new("/ts/PG_15_202209061/16384")));
        assert!(!is_database_dir(Path::new("/pg/global")));
    }
}
