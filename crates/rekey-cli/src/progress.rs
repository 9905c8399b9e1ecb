//! Progress for long work: a bar with count, rate and estimate on stderr
//! (indicatif), hidden when stderr is not a terminal or the output is JSON.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rekey_demo::login::Progress;
use std::sync::Arc;

/// A progress callback `(done, total)` drawing a bar labelled `what`.
pub(crate) fn bar(what: impl Into<std::borrow::Cow<'static, str>>, show: bool) -> Progress {
    let target = if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:<24} [{bar:24}] {pos}/{len}  {per_sec}  ETA {eta}")
    {
        bar.set_style(style.progress_chars("#>-"));
    }
    bar.set_message(what);
    Arc::new(move |done, total| {
        let (done, total) = (done as u64, total as u64);
        if bar.length() != Some(total) {
            bar.set_length(total);
        }
        bar.set_position(done);
        if done >= total {
            bar.finish();
        }
    })
}

/// A running count labelled `what`, with its rate, for work whose total is
/// not known up front.
pub(crate) fn counter(what: &'static str, show: bool) -> impl Fn(u64) + Sync {
    let target = if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    if let Ok(style) = ProgressStyle::with_template("{msg:<24} {pos}  {per_sec}  {elapsed}") {
        bar.set_style(style);
    }
    bar.set_message(what);
    move |n| bar.set_position(n)
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
