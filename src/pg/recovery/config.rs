//! Turning a restored data directory into one that recovers to the target.
//!
//! `reference/postgresql.md` §7: recovery settings are ordinary settings, and
//! `recovery.signal` asks for targeted archive recovery (`standby.signal` would win and
//! keep the server a standby forever, so it goes). Settings go into
//! `postgresql.auto.conf`, which the server reads after `postgresql.conf`, so they win
//! over the restored configuration; recovery settings already there (a backup of a
//! cluster that was itself restored) are commented out rather than left to conflict —
//! two different targets are an error to the server.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The settings this module owns in `postgresql.auto.conf`.
fn is_recovery_setting(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "restore_command" || key.starts_with("recovery_target") || key == "recovery_end_command"
}

/// The key a configuration line sets, if it sets one (`key = value` or `key value`).
fn line_key(line: &str) -> Option<&str> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    Some(&line[..end])
}

/// A value quoted for the server's configuration parser: single quotes doubled, and
/// backslashes escaped (the parser reads `\` escapes inside quoted values).
pub fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// A word quoted for `/bin/sh`, which runs `restore_command`.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r#"'"'"'"#))
}

/// Writes `recovery.signal` and `settings` (name, unquoted value) into the data
/// directory `pgdata`, removing `standby.signal`. New files get the owner of `pgdata`.
///
/// # Errors
/// The I/O error, with the file it concerns in its message.
pub fn write_recovery(
    pgdata: &Path,
    settings: &[(&str, String)],
    header: &str,
) -> std::io::Result<()> {
    let standby = pgdata.join("standby.signal");
    match fs::remove_file(&standby) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(named(&standby, e)),
        _ => {}
    }
    rewrite_auto_conf(pgdata, settings, header, is_recovery_setting)?;
    write_owned(pgdata, &pgdata.join("recovery.signal"), b"")
}

/// Appends `settings` to `postgresql.auto.conf` under a `# header` line, commenting out
/// earlier lines that set the same names.
///
/// # Errors
/// The I/O error, with the file it concerns in its message.
pub fn append_settings(
    pgdata: &Path,
    settings: &[(&str, String)],
    header: &str,
) -> std::io::Result<()> {
    rewrite_auto_conf(pgdata, settings, header, |_| false)
}

/// [`append_settings`], also commenting out every line whose key `also` matches.
fn rewrite_auto_conf(
    pgdata: &Path,
    settings: &[(&str, String)],
    header: &str,
    also: fn(&str) -> bool,
) -> std::io::Result<()> {
    let auto = pgdata.join("postgresql.auto.conf");
    let existing = match fs::read_to_string(&auto) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(named(&auto, e)),
    };
    let mut text = String::with_capacity(existing.len() + 512);
    for line in existing.lines() {
        let replaced = line_key(line).is_some_and(|key| {
            also(key) || settings.iter().any(|(k, _)| key.eq_ignore_ascii_case(k))
        });
        if replaced {
            text.push_str("# replaced by stowage: ");
        }
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&format!("# {header}\n"));
    for (key, value) in settings {
        text.push_str(&format!("{key} = {}\n", conf_quote(value)));
    }
    write_owned(pgdata, &auto, text.as_bytes())
}

fn named(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Replaces `path` with `content` atomically (a temporary file renamed over it, so a
/// crash leaves the old file or the new, never half of one), mode 0600 as the server
/// writes its own files, owned like `pgdata` (only root can give files away).
fn write_owned(pgdata: &Path, path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let owner = fs::metadata(pgdata).map_err(|e| named(pgdata, e))?;
    let tmp = path.with_extension("stowage-tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| named(&tmp, e))?;
    file.write_all(content).map_err(|e| named(&tmp, e))?;
    file.sync_all().map_err(|e| named(&tmp, e))?;
    let _ = std::os::unix::fs::chown(&tmp, Some(owner.uid()), Some(owner.gid()));
    fs::rename(&tmp, path).map_err(|e| named(path, e))?;
    fs::File::open(pgdata)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| named(pgdata, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_both_parsers() {
        assert_eq!(conf_quote(r"a'b\c"), r"'a''b\\c'");
        assert_eq!(shell_quote("/usr/bin/stowage"), "/usr/bin/stowage");
        assert_eq!(shell_quote("it's"), r#"'it'"'"'s'"#);
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn old_recovery_settings_are_commented_out_and_new_ones_appended() {
        let dir = tempfile::tempdir().unwrap();
        let pgdata = dir.path();
        fs::write(
            pgdata.join("postgresql.auto.conf"),
            "work_mem = '8MB'\nrestore_command = 'cp x %p'\nRecovery_Target_Time '2020-01-01 00:00:00+00'\n",
        )
        .unwrap();
        fs::write(pgdata.join("standby.signal"), "").unwrap();
        write_recovery(
            pgdata,
            &[
                ("restore_command", "stowage wal-fetch %f %p".into()),
                ("recovery_target_lsn", "0/3000000".into()),
            ],
            "written by a test",
        )
        .unwrap();
        let text = fs::read_to_string(pgdata.join("postgresql.auto.conf")).unwrap();
        assert_eq!(
            text,
            "work_mem = '8MB'\n\
             # replaced by stowage: restore_command = 'cp x %p'\n\
             # replaced by stowage: Recovery_Target_Time '2020-01-01 00:00:00+00'\n\
             # written by a test\n\
             restore_command = 'stowage wal-fetch %f %p'\n\
             recovery_target_lsn = '0/3000000'\n"
        );
        assert!(pgdata.join("recovery.signal").exists());
        assert!(!pgdata.join("standby.signal").exists());
    }
}
