//! A one-line progress display on stderr: count, rate and estimate.
//! Silent when stderr is not a terminal or the output is JSON.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct Progress {
    label: String,
    start: Instant,
    last: Mutex<Instant>,
    enabled: bool,
}

impl Progress {
    pub(crate) fn new(label: &str, enabled: bool) -> Self {
        Self {
            label: label.to_owned(),
            start: Instant::now(),
            last: Mutex::new(Instant::now() - Duration::from_secs(1)),
            enabled: enabled && std::io::stderr().is_terminal(),
        }
    }

    pub(crate) fn update(&self, done: usize, total: usize) {
        if !self.enabled {
            return;
        }
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.elapsed() < Duration::from_millis(100) && done < total {
            return;
        }
        *last = Instant::now();
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let eta = if rate > 0.0 {
            (total.saturating_sub(done)) as f64 / rate
        } else {
            0.0
        };
        let width = 24usize;
        let filled = (done.min(total) * width)
            .checked_div(total)
            .unwrap_or(width);
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r{:<24} [{bar}] {done}/{total}  {rate:.0}/s  ETA {eta:.0}s   ",
            self.label
        );
        if done >= total {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

/// This process's peak resident set size so far (Linux: `VmHWM` in
/// `/proc/self/status`); `None` where that is not available.
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let rss = super::peak_rss_bytes().expect("VmHWM is readable");
            assert!(rss > 1024 * 1024, "{rss}");
        }
    }
}
