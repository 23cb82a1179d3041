//! Recovery targets as a user names them, and as `postgresql.auto.conf` spells them.
//!
//! The server's own rules are in `reference/postgresql.md` §4 ("How recovery targets
//! stop") and §7 (the settings and their defaults). Times are kept as PostgreSQL
//! `TimestampTz` values (microseconds since 2000-01-01 UTC), the unit the WAL summaries
//! record, so comparing a target with the archive needs no conversion.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};

use crate::pg::wal::{pg_timestamp_to_utc, Lsn};

use super::RecoveryError;

/// Microseconds between 1970-01-01 and 2000-01-01 (`reference/postgresql.md` §4).
const POSTGRES_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// Where recovery should stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The end of the archived WAL (no `recovery_target_*` setting).
    Latest,
    /// `recovery_target_time`, as a TimestampTz.
    Time(i64),
    Lsn(Lsn),
    Xid(u32),
    /// `recovery_target_name`: a `pg_create_restore_point` name.
    Name(String),
}

/// `recovery_target_timeline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineChoice {
    /// The newest timeline the archive has a history file for (the server's default).
    Latest,
    Id(u32),
}

/// `recovery_target_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetAction {
    Promote,
    Pause,
    Shutdown,
}

/// Everything recovery is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryTarget {
    pub target: Target,
    /// `recovery_target_inclusive = off`: stop just before the target instead of after.
    pub exclusive: bool,
    pub timeline: TimelineChoice,
    pub action: TargetAction,
}

impl Target {
    /// The target as a user would read it back.
    pub fn describe(&self) -> String {
        match self {
            Target::Latest => "the end of the archived WAL".into(),
            Target::Time(t) => format!("time {}", show_time(*t)),
            Target::Lsn(lsn) => format!("LSN {lsn}"),
            Target::Xid(xid) => format!("transaction {xid}"),
            Target::Name(name) => format!("restore point {name:?}"),
        }
    }
}

impl fmt::Display for TimelineChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimelineChoice::Latest => f.write_str("latest"),
            TimelineChoice::Id(id) => write!(f, "{id}"),
        }
    }
}

impl std::str::FromStr for TimelineChoice {
    type Err = RecoveryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("latest") {
            return Ok(TimelineChoice::Latest);
        }
        match text.parse::<u32>() {
            Ok(id) if id >= 1 => Ok(TimelineChoice::Id(id)),
            _ => Err(RecoveryError::BadTarget {
                what: "--target-timeline",
                text: text.into(),
                expected: "`latest` or a timeline number (1, 2, …)",
            }),
        }
    }
}

impl RecoveryTarget {
    /// The `postgresql.auto.conf` lines for this target (without `restore_command`).
    /// Inclusiveness, timeline and action are always written, so values left in the
    /// restored `postgresql.conf` cannot change where recovery stops (`postgresql.auto.conf`
    /// is read last and wins). The unused targets cannot be written empty: the server's
    /// assign hooks take an empty second target for a second target ("multiple recovery
    /// targets specified").
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match &self.target {
            Target::Latest => {}
            Target::Time(t) => out.push(("recovery_target_time", pg_time_literal(*t))),
            Target::Lsn(lsn) => out.push(("recovery_target_lsn", lsn.to_string())),
            Target::Xid(xid) => out.push(("recovery_target_xid", xid.to_string())),
            Target::Name(name) => out.push(("recovery_target_name", name.clone())),
        }
        let action = match self.action {
            TargetAction::Promote => "promote",
            TargetAction::Pause => "pause",
            TargetAction::Shutdown => "shutdown",
        };
        out.push((
            "recovery_target_inclusive",
            if self.exclusive { "off" } else { "on" }.into(),
        ));
        out.push(("recovery_target_timeline", self.timeline.to_string()));
        out.push(("recovery_target_action", action.into()));
        out
    }
}

/// A TimestampTz as the server's input accepts it, always with an explicit offset
/// (`reference/postgresql.md` §7: the server parses in its own TimeZone otherwise).
pub fn pg_time_literal(t: i64) -> String {
    match pg_timestamp_to_utc(t) {
        Some(utc) => utc.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
        // Unreachable for parsed times (they come from chrono); the server rejects it.
        None => format!("invalid TimestampTz {t}"),
    }
}

/// A TimestampTz for people: RFC 3339 in UTC, microseconds kept when there are any.
pub fn show_time(t: i64) -> String {
    match pg_timestamp_to_utc(t) {
        Some(utc) if t % 1_000_000 == 0 => utc.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(utc) => utc.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => format!("TimestampTz {t}"),
    }
}

/// A UTC time as a TimestampTz.
pub fn utc_to_pg(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros() - POSTGRES_EPOCH_UNIX_MICROS
}

/// Parses a target time: RFC 3339 (`2026-11-26T07:00:00Z`, `…+01:00`) or PostgreSQL's
/// output syntax (`2026-11-26 07:00:00.123456+00`, `… UTC`, `…+0100`). A zone is
/// required: a time without one means different instants to the operator and to the
/// server. Fractions beyond microseconds are rounded, as the server rounds them.
///
/// ```
/// use stowage::pg::recovery::target::{parse_time, pg_time_literal};
///
/// let t = parse_time("2026-11-26 08:30:00.25+01")?;
/// assert_eq!(pg_time_literal(t), "2026-11-26 07:30:00.250000+00");
/// assert_eq!(parse_time("2026-11-26T07:30:00.25Z")?, t);
/// assert!(parse_time("2026-11-26 07:30:00").is_err());
/// # Ok::<(), stowage::pg::recovery::RecoveryError>(())
/// ```
///
/// # Errors
/// [`RecoveryError::BadTarget`] showing the accepted forms.
pub fn parse_time(text: &str) -> Result<i64, RecoveryError> {
    let bad = || RecoveryError::BadTarget {
        what: "--target-time",
        text: text.into(),
        expected: "a time with its zone: 2026-11-26T07:00:00Z, 2026-11-26 07:00:00+01, \
                   2026-11-26 07:00:00.5 UTC",
    };
    let parsed = DateTime::parse_from_rfc3339(text)
        .ok()
        .or_else(|| parse_pg_style(text.trim()))
        .ok_or_else(bad)?;
    let seconds = parsed.timestamp();
    let nanos = i64::from(parsed.timestamp_subsec_nanos());
    let micros = seconds
        .checked_mul(1_000_000)
        .and_then(|m| m.checked_add((nanos + 500) / 1000))
        .ok_or_else(bad)?;
    Ok(micros - POSTGRES_EPOCH_UNIX_MICROS)
}

/// `YYYY-MM-DD[ T]HH:MM[:SS[.f]]` then a zone: `Z`, `UTC`, `GMT`, `±HH`, `±HHMM`, `±HH:MM`.
fn parse_pg_style(text: &str) -> Option<DateTime<FixedOffset>> {
    let (clock, offset_secs) = split_zone(text)?;
    let clock = clock.trim_end().replacen('T', " ", 1);
    let naive = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&clock, f).ok())?;
    let zone = FixedOffset::east_opt(offset_secs)?;
    naive.and_local_timezone(zone).single()
}

/// Splits a trailing zone off `text`: the clock part and the offset east of UTC.
fn split_zone(text: &str) -> Option<(&str, i32)> {
    for name in ["UTC", "GMT", "Z"] {
        if let Some(clock) = text.strip_suffix(name) {
            return Some((clock, 0));
        }
    }
    // The sign of the offset is the last '+' or a '-' after the date's own dashes.
    let at = text.rfind(['+', '-']).filter(|&i| i > 10)?;
    let (clock, zone) = text.split_at(at);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (digits[..2].parse().ok()?, digits[2..].parse().ok()?),
        _ => return None,
    };
    if hours > 15 || minutes > 59 {
        return None;
    }
    Some((clock, sign * (hours * 3600 + minutes * 60)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_accepted_form_agree() {
        let want = parse_time("2026-11-26T07:00:00Z").unwrap();
        for text in [
            "2026-11-26 07:00:00+00",
            "2026-11-26 07:00:00 UTC",
            "2026-11-26 08:00:00+01",
            "2026-11-26 08:00:00+0100",
            "2026-11-26T08:00:00+01:00",
            "2026-11-26 02:30:00-04:30",
            "2026-11-26 07:00+00",
        ] {
            assert_eq!(parse_time(text).unwrap(), want, "{text}");
        }
        assert_eq!(pg_time_literal(want), "2026-11-26 07:00:00.000000+00");
        assert_eq!(show_time(want), "2026-11-26T07:00:00Z");
    }

    #[test]
    fn times_without_a_zone_or_malformed_are_refused() {
        for text in [
            "2026-11-26 07:00:00",
            "now",
            "2026-11-26",
            "2026-13-01 00:00:00Z",
            "2026-11-26 07:00:00+25",
        ] {
            assert!(parse_time(text).is_err(), "{text}");
        }
    }

    #[test]
    fn settings_spell_the_target_as_the_server_reads_it() {
        let target = RecoveryTarget {
            target: Target::Lsn("0/3000028".parse().unwrap()),
            exclusive: true,
            timeline: TimelineChoice::Id(2),
            action: TargetAction::Promote,
        };
        let settings = target.settings();
        let get = |k: &str| {
            settings
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("recovery_target_lsn"), Some("0/3000028"));
        assert_eq!(get("recovery_target_time"), None);
        assert_eq!(get("recovery_target_inclusive"), Some("off"));
        assert_eq!(get("recovery_target_timeline"), Some("2"));
        assert_eq!(get("recovery_target_action"), Some("promote"));
        let latest = RecoveryTarget {
            target: Target::Latest,
            exclusive: false,
            timeline: TimelineChoice::Latest,
            action: TargetAction::Pause,
        }
        .settings();
        assert!(latest
            .iter()
            .filter(|(k, _)| k.starts_with("recovery_target_") && *k != "recovery_target_inclusive")
            .all(|(k, v)| v.is_empty()
                || *k == "recovery_target_timeline"
                || *k == "recovery_target_action"));
    }
}
