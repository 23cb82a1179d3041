//! libpq connection strings, as `--dbname` takes them: keyword/value (`host=db1
//! dbname=app`), a URI (`postgresql://backup@db1:5432/app?sslmode=require`) or a bare
//! database name (`app`).
//!
//! Why parse what libpq parses: the client programs get the string as given whenever
//! possible, but stowage itself needs three things from it. (1) The name of the database
//! a dump is of, with libpq's defaults (`PGDATABASE`, then the user name). (2) The same
//! connection with another database (`--all` runs one `pg_dump` per database). (3) A
//! `tokio-postgres` configuration, since that crate applies none of libpq's defaults:
//! no `PG*` environment variables, no default socket directory.
//!
//! A connection string may hold a password: [`ConnInfo`] has no `Display`, its `Debug`
//! hides values, and its errors never quote the string.

use std::str::FromStr;
use std::time::Duration;

/// Where libpq looks for the server's socket when no host is given (Debian's and most
/// packagers' build; upstream's default is `/tmp`, tried second).
const DEFAULT_SOCKET_DIRS: [&str; 2] = ["/var/run/postgresql", "/tmp"];

/// libpq waits forever by default; a nightly job should not.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ConnInfoError {
    #[error("invalid connection string: {reason}")]
    Syntax { reason: String },
    #[error("invalid connection string: {key} has an invalid value")]
    Value { key: String },
}

fn syntax(reason: impl Into<String>) -> ConnInfoError {
    ConnInfoError::Syntax {
        reason: reason.into(),
    }
}

/// A parsed connection string: its keywords in order, a later one replacing an earlier.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnInfo {
    params: Vec<(String, String)>,
}

impl std::fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.params.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ConnInfo").field("keys", &keys).finish()
    }
}

impl FromStr for ConnInfo {
    type Err = ConnInfoError;

    /// Parses keyword/value strings and URIs as libpq does; anything else is a database name.
    fn from_str(s: &str) -> Result<ConnInfo, ConnInfoError> {
        let mut info = ConnInfo { params: Vec::new() };
        if let Some(rest) = s
            .strip_prefix("postgresql://")
            .or_else(|| s.strip_prefix("postgres://"))
        {
            parse_uri(rest, &mut info)?;
        } else if s.contains('=') {
            parse_keyword_value(s, &mut info)?;
        } else if !s.is_empty() {
            info.set("dbname", s);
        }
        Ok(info)
    }
}

impl ConnInfo {
    /// The value of `key`, if the string set it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, key: &str, value: &str) {
        match self.params.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.params.push((key.to_string(), value.to_string())),
        }
    }

    /// The user libpq connects as: `user`, else `PGUSER`, else the OS user.
    pub fn user(&self) -> String {
        self.get("user")
            .map(str::to_string)
            .or_else(|| env_nonempty("PGUSER"))
            .unwrap_or_else(crate::host::username)
    }

    /// The database libpq connects to: `dbname`, else `PGDATABASE`, else the user name.
    pub fn dbname(&self) -> String {
        self.get("dbname")
            .map(str::to_string)
            .or_else(|| env_nonempty("PGDATABASE"))
            .unwrap_or_else(|| self.user())
    }

    /// The same connection to database `name`.
    pub fn with_dbname(&self, name: &str) -> ConnInfo {
        let mut info = self.clone();
        info.set("dbname", name);
        info
    }

    /// Removes `key` and returns its value (a password to pass another way).
    pub fn take(&mut self, key: &str) -> Option<String> {
        let at = self.params.iter().position(|(k, _)| k == key)?;
        Some(self.params.remove(at).1)
    }

    /// The keyword/value form libpq reads (`pg_dump -d`), every value quoted. It may hold a
    /// password: pass it to a program, never print it.
    pub fn to_conninfo_string(&self) -> String {
        let quoted: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| {
                let escaped = v.replace('\\', "\\\\").replace('\'', "\\'");
                format!("{k}='{escaped}'")
            })
            .collect();
        quoted.join(" ")
    }

    /// A `tokio-postgres` configuration that connects where libpq would: the string's
    /// settings, then `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, then the
    /// default socket directory; a password not given is looked up in the password file
    /// (`passfile`, `PGPASSFILE` or `~/.pgpass`). Keywords tokio-postgres does not know
    /// (`sslrootcert`, `service`, …) are left out. TLS modes that need certificate checks become
    /// `require`, which a connection without TLS support then refuses rather than weakens.
    ///
    /// # Errors
    /// [`ConnInfoError::Value`] for a port, timeout or mode that does not parse.
    pub fn client_config(&self) -> Result<tokio_postgres::Config, ConnInfoError> {
        use tokio_postgres::config::{SslMode, TargetSessionAttrs};
        let invalid = |key: &str| ConnInfoError::Value {
            key: key.to_string(),
        };
        let mut config = tokio_postgres::Config::new();
        config.user(self.user());
        config.dbname(self.dbname());
        let hosts = self
            .get("host")
            .map(str::to_string)
            .or_else(|| env_nonempty("PGHOST"));
        let password = self
            .get("password")
            .map(str::to_string)
            .or_else(|| env_nonempty("PGPASSWORD"))
            .or_else(|| self.password_from_file(hosts.as_deref()));
        if let Some(password) = password {
            config.password(password);
        }
        let hostaddrs = self.get("hostaddr");
        match (hosts, hostaddrs) {
            (Some(hosts), _) => {
                for host in hosts.split(',') {
                    config.host(host.trim());
                }
            }
            (None, Some(_)) => {}
            (None, None) => {
                let dir = DEFAULT_SOCKET_DIRS
                    .iter()
                    .find(|d| std::path::Path::new(d).is_dir())
                    .unwrap_or(&DEFAULT_SOCKET_DIRS[1]);
                config.host(*dir);
            }
        }
        if let Some(addrs) = hostaddrs {
            for addr in addrs.split(',') {
                config.hostaddr(addr.trim().parse().map_err(|_| invalid("hostaddr"))?);
            }
        }
        let ports = self
            .get("port")
            .map(str::to_string)
            .or_else(|| env_nonempty("PGPORT"));
        if let Some(ports) = ports {
            for port in ports.split(',').map(str::trim) {
                // An empty entry in a list means the default, as in libpq.
                let port = if port.is_empty() { "5432" } else { port };
                config.port(port.parse().map_err(|_| invalid("port"))?);
            }
        }
        let timeout = match self.get("connect_timeout") {
            Some(secs) => Duration::from_secs(
                secs.trim()
                    .parse()
                    .map_err(|_| invalid("connect_timeout"))?,
            ),
            None => DEFAULT_CONNECT_TIMEOUT,
        };
        config.connect_timeout(timeout);
        if let Some(name) = self.get("application_name") {
            config.application_name(name);
        }
        if let Some(options) = self.get("options") {
            config.options(options);
        }
        if let Some(mode) = self.get("sslmode") {
            config.ssl_mode(match mode {
                "disable" => SslMode::Disable,
                "allow" | "prefer" => SslMode::Prefer,
                "require" | "verify-ca" | "verify-full" => SslMode::Require,
                _ => return Err(invalid("sslmode")),
            });
        }
        if let Some(attrs) = self.get("target_session_attrs") {
            config.target_session_attrs(match attrs {
                "any" => TargetSessionAttrs::Any,
                "read-write" => TargetSessionAttrs::ReadWrite,
                "read-only" => TargetSessionAttrs::ReadOnly,
                _ => return Err(invalid("target_session_attrs")),
            });
        }
        Ok(config)
    }
}

impl ConnInfo {
    /// The password libpq would take from the password file for the first host.
    fn password_from_file(&self, hosts: Option<&str>) -> Option<String> {
        let path = self
            .get("passfile")
            .map(std::path::PathBuf::from)
            .or_else(|| env_nonempty("PGPASSFILE").map(Into::into))
            .or_else(|| env_nonempty("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")))?;
        // libpq ignores a password file others can read; so do we.
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&path).ok()?;
        if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
            return None;
        }
        let text = std::fs::read_to_string(&path).ok()?;
        let host = hosts
            .and_then(|h| h.split(',').next())
            .map(str::trim)
            .filter(|h| !h.is_empty() && !h.starts_with('/'))
            .unwrap_or("localhost");
        let port = self
            .get("port")
            .map(str::to_string)
            .or_else(|| env_nonempty("PGPORT"))
            .and_then(|p| p.split(',').next().map(|p| p.trim().to_string()))
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "5432".into());
        lookup_passfile(&text, [host, &port, &self.dbname(), &self.user()])
    }
}

/// The password of the first `host:port:database:user:password` line of a password
/// file matching `wanted` (`*` matches anything; `\` escapes `:` and `\`).
fn lookup_passfile(text: &str, wanted: [&str; 4]) -> Option<String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let mut fields = Vec::with_capacity(5);
            let mut field = String::new();
            let mut chars = line.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => field.extend(chars.next()),
                    ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
                    c => field.push(c),
                }
            }
            fields.push(field);
            let [host, port, db, user, password] = <[String; 5]>::try_from(fields).ok()?;
            let matches = [host, port, db, user]
                .iter()
                .zip(wanted)
                .all(|(have, want)| have == "*" || have == want);
            matches.then_some(password)
        })
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `keyword = value …`, values bare or single-quoted, `\` escaping the next character.
fn parse_keyword_value(s: &str, info: &mut ConnInfo) -> Result<(), ConnInfoError> {
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(());
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if key.is_empty() {
            return Err(syntax("a \"=\" without a keyword"));
        }
        if chars.next() != Some('=') {
            return Err(syntax(format!("missing \"=\" after {key:?}")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(syntax(format!("unterminated quoted value of {key}"))),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        info.set(&key, &value);
    }
}

/// `[user[:password]@][host[:port][,…]][/dbname][?key=value&…]` (after the scheme).
fn parse_uri(rest: &str, info: &mut ConnInfo) -> Result<(), ConnInfoError> {
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = main.split_once('/').unwrap_or((main, ""));
    let hostlist = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                info.set("user", &percent_decode(user)?);
            }
            if let Some(password) = password {
                info.set("password", &percent_decode(password)?);
            }
            hosts
        }
        None => authority,
    };
    if !hostlist.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for spec in hostlist.split(',') {
            let (host, port) = if let Some(v6) = spec.strip_prefix('[') {
                let (addr, after) = v6
                    .split_once(']')
                    .ok_or_else(|| syntax("unterminated [ in the host of a URI"))?;
                (addr, after.strip_prefix(':').unwrap_or(""))
            } else {
                spec.split_once(':').unwrap_or((spec, ""))
            };
            hosts.push(percent_decode(host)?);
            ports.push(percent_decode(port)?);
        }
        if hosts.iter().any(|h| !h.is_empty()) {
            info.set("host", &hosts.join(","));
        }
        if ports.iter().any(|p| !p.is_empty()) {
            info.set("port", &ports.join(","));
        }
    }
    if !path.is_empty() {
        info.set("dbname", &percent_decode(path)?);
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| syntax("a URI parameter lacks \"=\""))?;
        info.set(&percent_decode(key)?, &percent_decode(value)?);
    }
    Ok(())
}

fn percent_decode(s: &str) -> Result<String, ConnInfoError> {
    let raw = s.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = raw
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| syntax("invalid percent-encoding in a URI"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| syntax("a URI decodes to invalid UTF-8"))
}

/// Where a connection goes, for messages: `user@host:port/database` as libpq's defaults
/// resolve them, never the password.
pub fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("?");
    let db = config.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{db}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ConnInfo {
        s.parse().unwrap()
    }

    #[test]
    fn keyword_value_strings() {
        let info = parse("host=/run/pg port = 5433 user=backup dbname='my db' password='it\\'s'");
        assert_eq!(info.get("host"), Some("/run/pg"));
        assert_eq!(info.get("port"), Some("5433"));
        assert_eq!(info.dbname(), "my db");
        assert_eq!(info.get("password"), Some("it's"));
        assert_eq!(
            parse("dbname=a dbname=b").dbname(),
            "b",
            "later wins, as in libpq"
        );
        assert!(
            "host".parse::<ConnInfo>().is_ok(),
            "a bare word is a database name"
        );
        assert!("host=x port".parse::<ConnInfo>().is_err());
        assert!("dbname='open".parse::<ConnInfo>().is_err());
    }

    #[test]
    fn uris() {
        let info = parse("postgresql://backup:s%40cret@db1:5433,db2/app%2Fx?sslmode=require");
        assert_eq!(info.get("user"), Some("backup"));
        assert_eq!(info.get("password"), Some("s@cret"));
        assert_eq!(info.get("host"), Some("db1,db2"));
        assert_eq!(info.get("port"), Some("5433,"));
        assert_eq!(info.dbname(), "app/x");
        assert_eq!(info.get("sslmode"), Some("require"));
        let socket = parse("postgres://%2Fvar%2Frun%2Fpostgresql/app");
        assert_eq!(socket.get("host"), Some("/var/run/postgresql"));
        let v6 = parse("postgresql://[::1]:5432");
        assert_eq!(v6.get("host"), Some("::1"));
        assert_eq!(v6.get("dbname"), None);
        assert!("postgresql://h/db?x".parse::<ConnInfo>().is_err());
        assert!("postgresql://h/%zz".parse::<ConnInfo>().is_err());
    }

    #[test]
    fn another_database_on_the_same_connection() {
        let info = parse("postgresql://u@h:1/first?application_name=x");
        let other = info.with_dbname("it's");
        assert_eq!(
            other.to_conninfo_string(),
            "user='u' host='h' port='1' dbname='it\\'s' application_name='x'"
        );
        assert_eq!(parse(&other.to_conninfo_string()), other, "round trip");
        assert_eq!(
            parse("app").with_dbname("b").to_conninfo_string(),
            "dbname='b'"
        );
    }

    #[test]
    fn client_config_keeps_what_matters() {
        let config = parse("host=/s port=6000 user=u dbname=d sslmode=verify-full service=x")
            .client_config()
            .unwrap();
        assert_eq!(config.get_user(), Some("u"));
        assert_eq!(config.get_dbname(), Some("d"));
        assert_eq!(config.get_ports(), &[6000]);
        assert_eq!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert!(parse("port=x").client_config().is_err());
    }

    #[test]
    fn password_file_lines_match_like_libpq() {
        let file = "# comment\ndb1:5432:app:backup:first\n*:*:*:backup:any\\:colon\nlocalhost:*:*:*:local\n";
        assert_eq!(
            lookup_passfile(file, ["db1", "5432", "app", "backup"]).as_deref(),
            Some("first")
        );
        assert_eq!(
            lookup_passfile(file, ["db2", "5432", "app", "backup"]).as_deref(),
            Some("any:colon")
        );
        assert_eq!(
            lookup_passfile(file, ["localhost", "5433", "x", "postgres"]).as_deref(),
            Some("local")
        );
        assert_eq!(lookup_passfile(file, ["db2", "5432", "app", "other"]), None);
    }

    #[test]
    fn debug_never_shows_values() {
        let text = format!("{:?}", parse("password=hunter2 user=u"));
        assert!(!text.contains("hunter2"), "{text}");
    }
}
