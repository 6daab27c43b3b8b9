//! A progress bar on stderr, drawn from the library's shared counters.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wmbackup::progress::Progress;

use crate::common::human;

/// Draws the library's [`Progress`] on stderr until dropped.
pub struct ProgressBar {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressBar {
    /// Only on a terminal and without -q; otherwise a disabled progress.
    pub fn start(quiet: bool, label: fn(&'static str) -> &'static str) -> (Progress, Option<ProgressBar>) {
        if quiet || !io::stderr().is_terminal() {
            return (Progress::disabled(), None);
        }
        let progress = Progress::enabled();
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (progress.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    // Parked, not asleep: Drop wakes it at once instead of waiting out the tick.
                    std::thread::park_timeout(Duration::from_millis(150));
                    if s.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Some((phase, done)) = p.read() {
                        let line = render(label(phase.name), done, phase.total, phase.started.elapsed());
                        let _ = write!(io::stderr(), "\r\x1b[2K{line}");
                    }
                }
                let _ = write!(io::stderr(), "\r\x1b[2K");
            })
            .ok();
        (progress, Some(ProgressBar { stop, thread }))
    }
}

impl Drop for ProgressBar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// `snapshot [#####-----]  120.0 MiB / 512.0 MiB  310.2 MiB/s  ETA 1 s`
fn render(phase: &str, done: u64, total: Option<u64>, elapsed: Duration) -> String {
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    let rate_s = format!("{}/s", human(rate as u64));
    match total {
        Some(t) if t > 0 => {
            let frac = (done as f64 / t as f64).clamp(0.0, 1.0);
            let filled = (frac * 20.0).round() as usize;
            let eta = if rate > 0.0 { (t.saturating_sub(done)) as f64 / rate } else { 0.0 };
            format!(
                "{phase:<9} [{}{}] {:>10} / {:<10} {rate_s:>12}  ETA {:.0} s",
                "#".repeat(filled),
                "-".repeat(20 - filled),
                human(done),
                human(t),
                eta
            )
        }
        // A phase that moves no bytes (integrity check, sync): how long it has run.
        _ if done == 0 => format!("{phase:<9} {:.0} s", elapsed.as_secs_f64()),
        _ => format!("{phase:<9} {:>10} {rate_s:>12}", human(done)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_without_bytes_shows_its_elapsed_time_not_zero_bytes() {
        assert_eq!(render("check", 0, None, Duration::from_secs(3)), "check     3 s");
        let line = render("decrypt", 1 << 20, None, Duration::from_secs(1));
        assert!(line.contains("1.0 MiB") && line.contains("/s"), "{line}");
    }
}
