//! The header of a `pg_dump` custom-format archive (`pg_dump -Fc`): the magic that tells
//! a dump from any other stream, and the facts the dump records about itself.
//!
//! Layout, as `WriteHead` in `src/bin/pg_dump/pg_backup_archiver.c` writes it (archive
//! versions 1.10 to 1.16, PostgreSQL 8.4 to 17):
//!
//! ```text
//! Header = "PGDMP" || vmaj u8 || vmin u8 || vrev u8 || int_size u8 || off_size u8 || format u8
//!          || Compression || sec, min, hour, mday, mon, year, isdst (7 × Int, local time)
//!          || dbname Str || server_version Str || pg_dump_version Str
//! Compression = Int (zlib level: 0 none, -1 default)      before 1.15
//!             | u8 (0 none, 1 gzip, 2 lz4, 3 zstd)          from 1.15 (PostgreSQL 16)
//! Int = sign u8 (1: negative) || int_size bytes, magnitude little-endian
//! Str = Int length (-1: NULL) || length bytes
//! ```
//!
//! Only the header is read; the table of contents and data that follow are pg_restore's
//! business. Parsing takes untrusted bytes: it never panics and never allocates more than
//! a string's declared length, which is capped at [`MAX_STRING_BYTES`].

/// The first five bytes of every custom-format archive.
pub const MAGIC: &[u8; 5] = b"PGDMP";

/// `format` byte of a custom-format archive (`archCustom`).
const FORMAT_CUSTOM: u8 = 1;

/// Longest string accepted in a header (names are at most 63 bytes, versions short).
pub const MAX_STRING_BYTES: usize = 1024;

/// The facts a custom-format archive's header records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpHeader {
    /// Archive format version (major, minor, revision), e.g. 1.14.0 for PostgreSQL 12–15.
    pub archive_version: (u8, u8, u8),
    /// `none`, `gzip`, `lz4` or `zstd`, with the zlib level before archive version 1.15.
    pub compression: String,
    /// The database dumped (`PQdb` of pg_dump's connection).
    pub database: Option<String>,
    /// The server's version string (`server_version`).
    pub server_version: Option<String>,
    /// The version of pg_dump that wrote the archive.
    pub pg_dump_version: Option<String>,
    /// Length of the header in bytes.
    pub len: usize,
}

impl DumpHeader {
    /// `1.14.0`.
    pub fn archive_version_string(&self) -> String {
        let (major, minor, rev) = self.archive_version;
        format!("{major}.{minor}.{rev}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DumpHeaderError {
    #[error(
        "not a pg_dump custom-format archive: it starts with {found}, not \"PGDMP\" \
         (make it with pg_dump -Fc)"
    )]
    NotADump { found: String },
    #[error(
        "not a pg_dump custom-format archive: format byte {format} (make it with pg_dump -Fc)"
    )]
    OtherFormat { format: u8 },
    #[error("pg_dump archive version {version} is not supported (1.10 or later, major 1)")]
    Version { version: String },
    #[error("pg_dump archive header is malformed: {reason}")]
    Malformed { reason: &'static str },
}

/// Parses the header at the start of `buf`. `Ok(None)`: not enough bytes yet to tell.
///
/// ```
/// use stowage::pg::dump::{parse_header, DumpHeaderError};
///
/// assert_eq!(parse_header(b"PGD"), Ok(None)); // could still be a dump
/// assert!(matches!(
///     parse_header(b"--\n-- PostgreSQL database dump\n"),
///     Err(DumpHeaderError::NotADump { .. })
/// ));
/// ```
///
/// # Errors
/// [`DumpHeaderError`] when `buf` cannot start a custom-format archive.
pub fn parse_header(buf: &[u8]) -> Result<Option<DumpHeader>, DumpHeaderError> {
    let seen = buf.len().min(MAGIC.len());
    if buf[..seen] != MAGIC[..seen] {
        return Err(DumpHeaderError::NotADump {
            found: describe_start(buf),
        });
    }
    let mut reader = Cursor { buf, pos: 0 };
    match reader.header() {
        Ok(header) => Ok(Some(header)),
        Err(Short::NeedMore) => Ok(None),
        Err(Short::Bad(err)) => Err(err),
    }
}

/// The first bytes of a stream, quoted for a message (`"--\n-- Postg"`).
fn describe_start(buf: &[u8]) -> String {
    let head = &buf[..buf.len().min(12)];
    format!("\"{}\"", head.escape_ascii())
}

enum Short {
    NeedMore,
    Bad(DumpHeaderError),
}

fn malformed(reason: &'static str) -> Short {
    Short::Bad(DumpHeaderError::Malformed { reason })
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Short> {
        let end = self.pos.checked_add(n).ok_or(Short::NeedMore)?;
        let bytes = self.buf.get(self.pos..end).ok_or(Short::NeedMore)?;
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, Short> {
        Ok(self.take(1)?[0])
    }

    fn int(&mut self, int_size: usize) -> Result<i64, Short> {
        let negative = match self.byte()? {
            0 => false,
            1 => true,
            _ => return Err(malformed("an integer's sign byte is neither 0 nor 1")),
        };
        let mut magnitude: u64 = 0;
        for (i, b) in self.take(int_size)?.iter().enumerate() {
            magnitude |= u64::from(*b) << (8 * i);
        }
        let value = i64::try_from(magnitude).map_err(|_| malformed("an integer overflows"))?;
        Ok(if negative { -value } else { value })
    }

    fn string(&mut self, int_size: usize) -> Result<Option<String>, Short> {
        let len = self.int(int_size)?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len)
            .ok()
            .filter(|n| *n <= MAX_STRING_BYTES)
            .ok_or_else(|| malformed("a string length is out of range"))?;
        Ok(Some(String::from_utf8_lossy(self.take(len)?).into_owned()))
    }

    fn header(&mut self) -> Result<DumpHeader, Short> {
        self.take(MAGIC.len())?;
        let version = (self.byte()?, self.byte()?, self.byte()?);
        let (major, minor, _) = version;
        if major != 1 || minor < 10 {
            let (a, b, c) = version;
            return Err(Short::Bad(DumpHeaderError::Version {
                version: format!("{a}.{b}.{c}"),
            }));
        }
        let int_size = usize::from(self.byte()?);
        if !(1..=8).contains(&int_size) {
            return Err(malformed("integer size is not 1 to 8 bytes"));
        }
        let _off_size = self.byte()?;
        let format = self.byte()?;
        if format != FORMAT_CUSTOM {
            return Err(Short::Bad(DumpHeaderError::OtherFormat { format }));
        }
        let compression = if minor >= 15 {
            match self.byte()? {
                0 => "none".to_string(),
                1 => "gzip".to_string(),
                2 => "lz4".to_string(),
                3 => "zstd".to_string(),
                other => format!("unknown ({other})"),
            }
        } else {
            match self.int(int_size)? {
                0 => "none".to_string(),
                level => format!("gzip (level {level})"),
            }
        };
        for _ in 0..7 {
            self.int(int_size)?;
        }
        let database = self.string(int_size)?;
        let server_version = self.string(int_size)?;
        let pg_dump_version = self.string(int_size)?;
        Ok(DumpHeader {
            archive_version: version,
            compression,
            database,
            server_version,
            pg_dump_version,
            len: self.pos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: i64) -> Vec<u8> {
        let mut out = vec![u8::from(v < 0)];
        out.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        out
    }

    fn string(s: &str) -> Vec<u8> {
        let mut out = int(s.len() as i64);
        out.extend_from_slice(s.as_bytes());
        out
    }

    /// A PostgreSQL 15 header as `pg_dump -Fc -Z0` writes it.
    fn pg15_header(db: &str) -> Vec<u8> {
        let mut out = b"PGDMP".to_vec();
        out.extend_from_slice(&[1, 14, 0, 4, 8, 1]);
        out.extend(int(0));
        for v in [5, 4, 3, 25, 10, 126, 0] {
            out.extend(int(v));
        }
        out.extend(string(db));
        out.extend(string("15.8 (Debian 15.8-1.pgdg120+1)"));
        out.extend(string("15.8 (Debian 15.8-1.pgdg120+1)"));
        out
    }

    #[test]
    fn a_pg15_header_parses_and_every_prefix_asks_for_more() {
        let mut bytes = pg15_header("app");
        let len = bytes.len();
        bytes.extend_from_slice(b"toc follows");
        let header = parse_header(&bytes).unwrap().unwrap();
        assert_eq!(header.archive_version_string(), "1.14.0");
        assert_eq!(header.compression, "none");
        assert_eq!(header.database.as_deref(), Some("app"));
        assert!(header.server_version.unwrap().starts_with("15.8"));
        assert_eq!(header.len, len);
        for cut in 0..len {
            assert_eq!(parse_header(&bytes[..cut]), Ok(None), "prefix {cut}");
        }
    }

    #[test]
    fn a_pg16_header_has_a_compression_byte() {
        let mut out = b"PGDMP".to_vec();
        out.extend_from_slice(&[1, 15, 0, 4, 8, 1, 3]);
        for v in [0, 0, 0, 1, 0, 124, 0] {
            out.extend(int(v));
        }
        out.extend(int(-1));
        out.extend(string("16.1"));
        out.extend(string("16.1"));
        let header = parse_header(&out).unwrap().unwrap();
        assert_eq!(header.compression, "zstd");
        assert_eq!(header.database, None);
    }

    #[test]
    fn other_streams_are_refused_with_what_they_start_with() {
        let err = parse_header(b"--\n-- PostgreSQL database dump").unwrap_err();
        assert!(err.to_string().contains("\"--\\n-- Postgr\""), "{err}");
        assert!(matches!(
            parse_header(b"\x1f\x8b\x08"),
            Err(DumpHeaderError::NotADump { .. })
        ));
        let mut tar_like = pg15_header("x");
        tar_like[10] = 3;
        assert_eq!(
            parse_header(&tar_like),
            Err(DumpHeaderError::OtherFormat { format: 3 })
        );
        let mut future = pg15_header("x");
        future[5] = 2;
        assert!(matches!(
            parse_header(&future),
            Err(DumpHeaderError::Version { .. })
        ));
    }

    #[test]
    fn hostile_lengths_are_refused_not_allocated() {
        let mut bytes = b"PGDMP".to_vec();
        bytes.extend_from_slice(&[1, 14, 0, 8, 8, 1]);
        bytes.extend_from_slice(&[0; 9]);
        for _ in 0..7 {
            bytes.extend_from_slice(&[0; 9]);
        }
        bytes.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(matches!(
            parse_header(&bytes),
            Err(DumpHeaderError::Malformed { .. })
        ));
        let mut bad_sign = b"PGDMP".to_vec();
        bad_sign.extend_from_slice(&[1, 14, 0, 4, 8, 1, 7, 0, 0, 0, 0]);
        assert!(matches!(
            parse_header(&bad_sign),
            Err(DumpHeaderError::Malformed { .. })
        ));
    }
}
