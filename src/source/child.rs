//! A child process as a byte stream: read what it writes to stdout ([`ChildStream`]), or
//! write what it reads on stdin ([`ChildSink`]), keeping the end of its stderr for the
//! error that reports it.
//!
//! Why: `pg_dump`, `pg_dumpall`, `pg_basebackup`, `pg_restore` and `psql` say that they
//! failed only through their exit status, and why only on stderr. A stream that ends is
//! not a stream that is complete: a dump cut short by a killed `pg_dump` looks like a
//! short dump until the exit status is read. Invariants:
//! 1. A [`ChildStream`] reports the end of its data only after the child exited 0. Any
//!    other end (non-zero exit, killed by a signal) is an `io::Error` at the end of the
//!    stream carrying a [`ChildError::Failed`] that names the command and holds the end
//!    of its stderr, so whoever reads the stream (the pipeline) fails with it.
//! 2. stderr is drained on its own thread, so a chatty child never blocks on a full pipe;
//!    at most [`STDERR_TAIL_BYTES`] of it are kept.
//! 3. Dropped before the end (the reader failed), the child is killed and reaped: no
//!    orphan keeps writing and no zombie is left.
//!
//! The label given at spawn names the command in errors. It is chosen by the caller and
//! must not carry secrets: connection strings, which may hold a password, never appear.

use std::io::{self, Read};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// How much of a child's stderr is kept: the last lines are the ones that say why.
pub const STDERR_TAIL_BYTES: usize = 4096;

/// How long to wait for stderr to close after the child exited (a grandchild may hold it).
const STDERR_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("cannot start {label}")]
    Spawn {
        label: String,
        #[source]
        source: io::Error,
    },
    #[error("{label} failed ({status}){}", render_tail(stderr))]
    Failed {
        label: String,
        status: ExitStatus,
        /// The end of its stderr, trimmed.
        stderr: String,
    },
    #[error("waiting for {label}")]
    Wait {
        label: String,
        #[source]
        source: io::Error,
    },
}

fn render_tail(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// The last [`STDERR_TAIL_BYTES`] of a child's stderr, collected on a thread.
struct StderrTail {
    kept: Arc<Mutex<Vec<u8>>>,
    closed: mpsc::Receiver<()>,
}

impl StderrTail {
    fn start(mut stderr: impl Read + Send + 'static) -> StderrTail {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let (done, closed) = mpsc::channel();
        let sink = kept.clone();
        // Detached: it ends when the pipe closes; `finish` waits for it only briefly.
        let _ = std::thread::Builder::new()
            .name("stowage-stderr".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match stderr.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if let Ok(mut kept) = sink.lock() {
                                kept.extend_from_slice(&buf[..n]);
                                let excess = kept.len().saturating_sub(STDERR_TAIL_BYTES);
                                kept.drain(..excess);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                let _ = done.send(());
            });
        StderrTail { kept, closed }
    }

    /// What was kept, trimmed, starting at a line boundary when one is in reach.
    fn finish(self) -> String {
        let _ = self.closed.recv_timeout(STDERR_GRACE);
        let kept = match self.kept.lock() {
            Ok(kept) => kept.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let text = String::from_utf8_lossy(&kept);
        let text = if kept.len() >= STDERR_TAIL_BYTES {
            // Cut off at the front: drop the partial first line.
            text.split_once('\n').map_or(&*text, |(_, rest)| rest)
        } else {
            &text
        };
        text.trim().to_string()
    }
}

fn spawn(
    mut command: Command,
    label: &str,
    stdin: Stdio,
    stdout: Stdio,
) -> Result<(Child, StderrTail), ChildError> {
    command.stdin(stdin).stdout(stdout).stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|source| ChildError::Spawn {
        label: label.to_string(),
        source,
    })?;
    let tail = match child.stderr.take() {
        Some(stderr) => StderrTail::start(stderr),
        None => StderrTail::start(io::empty()),
    };
    Ok((child, tail))
}

/// Grows a pipe to 1 MiB (the most an unprivileged process may ask for by default) from
/// Linux's 64 KiB: a dump arriving at 300 MB/s then wakes the reader a sixteenth as often,
/// and both sides spend less time switching. Best effort: a refusal changes nothing else.
fn widen_pipe(pipe: &impl std::os::fd::AsRawFd) {
    #[cfg(target_os = "linux")]
    // SAFETY: F_SETPIPE_SZ on a descriptor we own; it fails harmlessly on a non-pipe.
    unsafe {
        libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = pipe;
}

/// Waits for `child` and turns anything but exit 0 into [`ChildError::Failed`]. Returns
/// the end of stderr on success (warnings a caller may show).
fn reap(child: &mut Child, tail: StderrTail, label: &str) -> Result<String, ChildError> {
    let status = child.wait().map_err(|source| ChildError::Wait {
        label: label.to_string(),
        source,
    })?;
    let stderr = tail.finish();
    if status.success() {
        Ok(stderr)
    } else {
        Err(ChildError::Failed {
            label: label.to_string(),
            status,
            stderr,
        })
    }
}

/// Kills and reaps a child that is no longer wanted.
fn abandon(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A child's stdout as a [`Read`] that fails at the end unless the child exited 0.
///
/// ```no_run
/// use std::io::Read;
/// use std::process::Command;
/// use stowage::source::child::ChildStream;
///
/// let mut cmd = Command::new("pg_dump");
/// cmd.args(["-Fc", "-d", "app"]);
/// let mut dump = ChildStream::spawn(cmd, "pg_dump of database app")?;
/// let mut bytes = Vec::new();
/// dump.read_to_end(&mut bytes)?; // Err when pg_dump fails, with its stderr
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ChildStream {
    label: String,
    child: Child,
    stdout: Option<ChildStdout>,
    stderr: Option<StderrTail>,
    /// The end of stderr of a child that exited 0.
    warnings: String,
}

impl ChildStream {
    /// Starts `command` with stdin closed, stdout to this stream and stderr collected.
    ///
    /// # Errors
    /// [`ChildError::Spawn`] when the program cannot be started.
    pub fn spawn(command: Command, label: impl Into<String>) -> Result<ChildStream, ChildError> {
        let label = label.into();
        let (mut child, stderr) = spawn(command, &label, Stdio::null(), Stdio::piped())?;
        let Some(stdout) = child.stdout.take() else {
            abandon(&mut child);
            return Err(ChildError::Spawn {
                label,
                source: io::Error::other("no stdout pipe"),
            });
        };
        widen_pipe(&stdout);
        Ok(ChildStream {
            label,
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
            warnings: String::new(),
        })
    }

    /// What the child wrote to stderr although it succeeded (empty until the stream ended).
    pub fn warnings(&self) -> &str {
        &self.warnings
    }

    fn end(&mut self) -> Result<(), ChildError> {
        self.stdout = None;
        let Some(tail) = self.stderr.take() else {
            return Ok(());
        };
        self.warnings = reap(&mut self.child, tail, &self.label)?;
        if !self.warnings.is_empty() {
            tracing::warn!("{}: {}", self.label, self.warnings);
        }
        Ok(())
    }
}

impl Read for ChildStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(stdout) = self.stdout.as_mut() else {
            return Ok(0);
        };
        match stdout.read(buf) {
            Ok(0) if !buf.is_empty() => match self.end() {
                Ok(()) => Ok(0),
                Err(e) => Err(io::Error::other(e)),
            },
            other => other,
        }
    }
}

impl Drop for ChildStream {
    fn drop(&mut self) {
        if self.stderr.is_some() {
            self.stdout = None;
            abandon(&mut self.child);
        }
    }
}

/// A child that reads its input from us: take its stdin with [`ChildSink::stdin`], write
/// everything, drop it, then [`ChildSink::finish`].
pub struct ChildSink {
    label: String,
    child: Child,
    stderr: Option<StderrTail>,
}

impl ChildSink {
    /// Starts `command` with stdin from a pipe, stdout discarded and stderr collected.
    ///
    /// # Errors
    /// [`ChildError::Spawn`] when the program cannot be started.
    pub fn spawn(command: Command, label: impl Into<String>) -> Result<ChildSink, ChildError> {
        let label = label.into();
        let (child, stderr) = spawn(command, &label, Stdio::piped(), Stdio::null())?;
        Ok(ChildSink {
            label,
            child,
            stderr: Some(stderr),
        })
    }

    /// The child's stdin, once; dropping it is the end of the input.
    pub fn stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Closes stdin if still held, waits for the child and returns the end of its stderr.
    ///
    /// # Errors
    /// [`ChildError::Failed`] when it exits other than 0.
    pub fn finish(mut self) -> Result<String, ChildError> {
        drop(self.child.stdin.take());
        let Some(tail) = self.stderr.take() else {
            return Ok(String::new());
        };
        reap(&mut self.child, tail, &self.label)
    }
}

impl Drop for ChildSink {
    fn drop(&mut self) {
        if self.stderr.is_some() {
            drop(self.child.stdin.take());
            abandon(&mut self.child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn a_child_that_exits_0_is_a_plain_stream() {
        let mut stream = ChildStream::spawn(sh("printf hello; echo note >&2"), "greeter").unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello");
        assert_eq!(stream.warnings(), "note");
    }

    #[test]
    fn a_failing_child_fails_the_stream_with_its_stderr() {
        let script =
            "printf partial; echo 'pg_dump: error: database \"x\" does not exist' >&2; exit 1";
        let mut stream = ChildStream::spawn(sh(script), "pg_dump of database x").unwrap();
        let mut out = Vec::new();
        let err = stream.read_to_end(&mut out).unwrap_err();
        assert_eq!(out, b"partial");
        let text = err.to_string();
        assert!(
            text.starts_with("pg_dump of database x failed (exit status: 1)"),
            "{text}"
        );
        assert!(text.contains("does not exist"), "{text}");
    }

    #[test]
    fn a_killed_child_fails_the_stream() {
        let mut stream = ChildStream::spawn(sh("printf abc; kill -9 $$"), "dumper").unwrap();
        let mut out = Vec::new();
        let err = stream.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("signal: 9"), "{err}");
    }

    #[test]
    fn only_the_tail_of_stderr_is_kept() {
        let script =
            "i=0; while [ $i -lt 2000 ]; do echo \"line $i\" >&2; i=$((i+1)); done; exit 3";
        let mut stream = ChildStream::spawn(sh(script), "chatty").unwrap();
        let err = stream.read_to_end(&mut Vec::new()).unwrap_err();
        let inner = err.into_inner().unwrap();
        let Ok(child) = inner.downcast::<ChildError>() else {
            panic!("not a ChildError")
        };
        let ChildError::Failed { stderr, .. } = *child else {
            panic!("not Failed")
        };
        assert!(stderr.len() <= STDERR_TAIL_BYTES);
        assert!(stderr.starts_with("line "), "{stderr:.40}");
        assert!(stderr.ends_with("line 1999"));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = ChildStream::spawn(Command::new("/nonexistent/pg_dump"), "pg_dump").err();
        assert!(matches!(err, Some(ChildError::Spawn { .. })));
    }

    #[test]
    fn dropping_a_stream_early_kills_the_child() {
        let mut stream = ChildStream::spawn(sh("yes"), "yes").unwrap();
        let mut buf = [0u8; 16];
        stream.read_exact(&mut buf).unwrap();
        let pid = stream.child.id();
        drop(stream);
        // Reaped: the pid no longer names our child.
        // SAFETY: kill with signal 0 only checks for existence.
        let alive = unsafe { libc::kill(pid as i32, 0) } == 0;
        assert!(!alive, "child {pid} still running");
    }

    #[test]
    fn a_sink_reports_the_childs_verdict() {
        let mut sink = ChildSink::spawn(sh("cat >/dev/null; echo done >&2"), "eater").unwrap();
        sink.stdin().unwrap().write_all(b"data").unwrap();
        assert_eq!(sink.finish().unwrap(), "done");
        let sink =
            ChildSink::spawn(sh("echo 'no such database' >&2; exit 1"), "pg_restore").unwrap();
        let err = sink.finish().unwrap_err().to_string();
        assert!(
            err.contains("pg_restore failed (exit status: 1): no such database"),
            "{err}"
        );
    }
}
