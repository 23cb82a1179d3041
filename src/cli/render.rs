//! Human-readable sizes, durations and the progress bar.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use stowage::pipeline::Progress;

pub use stowage::human::bytes;

/// Bytes per second as `MiB/s`.
pub fn rate(n: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    format!("{:.0} MiB/s", n as f64 / secs / (1024.0 * 1024.0))
}

/// A live byte counter on stderr while a backup runs; nothing when not interactive.
pub struct ProgressDisplay {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressDisplay {
    pub fn start(progress: Arc<Progress>, interactive: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = interactive.then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let bar = ProgressBar::new_spinner();
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {elapsed} read {bytes} ({bytes_per_sec}) {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                while !stop.load(Ordering::Relaxed) {
                    bar.set_position(progress.bytes_read.load(Ordering::Relaxed));
                    bar.set_message(format!(
                        "stored {}",
                        bytes(progress.bytes_stored.load(Ordering::Relaxed))
                    ));
                    bar.tick();
                    std::thread::sleep(Duration::from_millis(100));
                }
                bar.finish_and_clear();
            })
        });
        ProgressDisplay { stop, thread }
    }
}

impl Drop for ProgressDisplay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
