//! Restore drills: restore into scratch space, bring the data up, check it, measure,
//! and throw it away — so the RTO and RPO in a runbook are measured, not hoped.
//!
//! | piece | what it rehearses |
//! |---|---|
//! | [`pg`] | point-in-time recovery of a cluster: base backup, WAL replay to the target, a real server |
//! | [`dump`] | a `pg-dump` snapshot restored into a scratch server's database |
//! | [`sqlite`] | a `sqlite` snapshot restored to a scratch file, `integrity_check`, the check SQL |
//!
//! Every drill fills one [`Report`]: each step with its duration and outcome, then the
//! figures (files restored, WAL replayed, RTO, the last commit reached and so the RPO
//! against the point asked for). A failed step ends the drill and the report says which.

pub mod dump;
pub mod pg;
pub mod sqlite;

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One step of a drill.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub ok: bool,
    pub seconds: f64,
    /// What it did, or why it failed.
    pub detail: String,
}

/// What a drill found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// `pg-base` (point-in-time recovery), `pg-dump` or `sqlite`.
    pub kind: String,
    pub snapshot: Option<String>,
    pub snapshot_time: Option<DateTime<Utc>>,
    /// The point asked for, in words.
    pub target: String,
    /// The point asked for as a time (a time target, or the drill's start for "latest").
    pub requested_time: Option<DateTime<Utc>>,
    pub steps: Vec<Step>,
    pub bytes_restored: u64,
    pub restore_seconds: Option<f64>,
    pub replay_seconds: Option<f64>,
    pub wal_replayed_bytes: Option<u64>,
    pub wal_segments: Option<u64>,
    /// Where recovery ended, and why (the server's words from the new timeline's history).
    pub recovery_end_lsn: Option<String>,
    pub recovery_end_reason: Option<String>,
    pub timeline: Option<u32>,
    /// Time from the drill's start until the data answered queries at the target.
    pub rto_seconds: Option<f64>,
    /// The last commit the restored data holds.
    pub last_commit: Option<DateTime<Utc>>,
    /// `requested_time - last_commit`: what a restore to that point loses.
    pub rpo_seconds: Option<f64>,
    /// The check SQL's output (shortened).
    pub check_output: Option<String>,
    pub ok: bool,
}

impl Report {
    /// Records a step.
    pub fn step(&mut self, name: &str, took: Duration, result: Result<String, String>) {
        let (ok, detail) = match result {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        self.steps.push(Step {
            name: name.into(),
            ok,
            seconds: took.as_secs_f64(),
            detail,
        });
    }

    /// The first failed step, if any.
    pub fn failure(&self) -> Option<&Step> {
        self.steps.iter().find(|s| !s.ok)
    }

    /// Sets the RPO from the requested time and the last commit reached.
    pub fn set_rpo(&mut self) {
        if let (Some(want), Some(got)) = (self.requested_time, self.last_commit) {
            self.rpo_seconds = Some((want - got).num_microseconds().unwrap_or(0) as f64 / 1e6);
        }
    }

    /// The figures as (label, value) pairs, for text and markdown alike.
    fn figures(&self) -> Vec<(&'static str, String)> {
        let secs = |s: Option<f64>| s.map(|s| format!("{s:.1} s"));
        let time =
            |t: Option<DateTime<Utc>>| t.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
        let mut out = vec![
            ("kind", Some(self.kind.clone())),
            (
                "snapshot",
                self.snapshot.as_ref().map(|s| match self.snapshot_time {
                    Some(t) => format!("{s} (written {})", t.format("%Y-%m-%dT%H:%M:%SZ")),
                    None => s.clone(),
                }),
            ),
            ("target", Some(self.target.clone())),
            ("restored", Some(crate::human::bytes(self.bytes_restored))),
            ("files restored in", secs(self.restore_seconds)),
            (
                "WAL replayed",
                self.wal_replayed_bytes.map(|b| match self.wal_segments {
                    Some(n) => format!("{} ({n} segments)", crate::human::bytes(b)),
                    None => crate::human::bytes(b),
                }),
            ),
            ("replay took", secs(self.replay_seconds)),
            (
                "recovery ended",
                self.recovery_end_lsn
                    .as_ref()
                    .map(|lsn| match &self.recovery_end_reason {
                        Some(why) => format!("at {lsn}: {why}"),
                        None => format!("at {lsn}"),
                    }),
            ),
            ("new timeline", self.timeline.map(|t| t.to_string())),
            ("RTO", secs(self.rto_seconds)),
            ("last commit", time(self.last_commit)),
            ("requested point", time(self.requested_time)),
            ("RPO", secs(self.rpo_seconds)),
        ];
        out.retain(|(_, v)| v.is_some());
        out.into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect()
    }

    /// For a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let verdict = if self.ok { "PASSED" } else { "FAILED" };
        let _ = writeln!(out, "restore drill {verdict}");
        for step in &self.steps {
            let mark = if step.ok { "ok  " } else { "FAIL" };
            let _ = writeln!(
                out,
                "  {mark} {:<24} {:>7.1} s  {}",
                step.name,
                step.seconds,
                first_line(&step.detail)
            );
            if !step.ok {
                for line in step.detail.lines().skip(1) {
                    let _ = writeln!(out, "         {line}");
                }
            }
        }
        for (label, value) in self.figures() {
            let _ = writeln!(out, "  {label:<18} {value}");
        }
        if let Some(output) = &self.check_output {
            let _ = writeln!(out, "  check output:");
            for line in output.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
        out
    }

    /// For the DR report of a runbook.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let verdict = if self.ok { "passed" } else { "**FAILED**" };
        let _ = writeln!(out, "## Restore drill: {verdict}\n");
        let _ = writeln!(out, "| figure | value |\n|---|---|");
        for (label, value) in self.figures() {
            let _ = writeln!(out, "| {label} | {} |", value.replace('|', "\\|"));
        }
        let _ = writeln!(
            out,
            "\n| step | result | seconds | detail |\n|---|---|---|---|"
        );
        for step in &self.steps {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {} |",
                step.name,
                if step.ok { "ok" } else { "FAILED" },
                step.seconds,
                first_line(&step.detail).replace('|', "\\|")
            );
        }
        if let Some(output) = &self.check_output {
            let _ = writeln!(out, "\nCheck output:\n\n```\n{}\n```", output.trim_end());
        }
        out
    }
}

/// Runs `body`, records it as step `name`, and returns its value or the failure.
pub(crate) async fn step<T>(
    report: &mut Report,
    name: &str,
    body: impl std::future::Future<Output = Result<(T, String), String>>,
) -> Result<T, String> {
    let t = std::time::Instant::now();
    match body.await {
        Ok((value, detail)) => {
            report.step(name, t.elapsed(), Ok(detail));
            Ok(value)
        }
        Err(why) => {
            report.step(name, t.elapsed(), Err(why.clone()));
            Err(why)
        }
    }
}

/// Ends a drill whatever happened: records an unrecorded failure, stops the server,
/// removes the scratch directory unless it is to be kept, and sets the RPO.
pub(crate) fn finish(
    report: &mut Report,
    result: Result<(), String>,
    started: std::time::Instant,
    server: Option<crate::pg::scratch::ScratchServer>,
    scratch: &std::path::Path,
    keep: bool,
) {
    report.ok = result.is_ok();
    if let Err(why) = result {
        if report.failure().is_none() {
            report.step("drill", started.elapsed(), Err(why));
        }
    }
    let t = std::time::Instant::now();
    if let Some(mut server) = server {
        server.stop();
    }
    let cleanup = if keep {
        Ok(format!("kept {}", scratch.display()))
    } else {
        match std::fs::remove_dir_all(scratch) {
            Ok(()) => Ok(format!("removed {}", scratch.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok("nothing to remove".into()),
            Err(e) => Err(format!("removing {}: {e}", scratch.display())),
        }
    };
    if cleanup.is_err() {
        report.ok = false;
    }
    report.step("stop and clean up", t.elapsed(), cleanup);
    report.set_rpo();
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// Keeps the first `max` bytes of `text` (on a character boundary), marking the cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n… ({} more bytes)", &text[..end], text.len() - end)
}
