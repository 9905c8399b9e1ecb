//! Where the command line writes: a report as text for people or as JSON
//! for scripts (`--format json`), and errors with their hint. Writes to a
//! closed pipe (`rekey status | head -1`) are ignored rather than panicking:
//! the command's work is done by then and its exit code must say so.

use crate::cli::Format;
use crate::error::CliError;
use serde::Serialize;
use std::io::Write;

/// The output of one command.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Out {
    json: bool,
}

impl Out {
    pub(crate) fn new(format: Format) -> Self {
        Self {
            json: format == Format::Json,
        }
    }

    /// Whether the output is JSON (no text lines, no progress bars).
    pub(crate) fn is_json(self) -> bool {
        self.json
    }

    /// Prints `report` as JSON in JSON mode, or calls `text` otherwise.
    /// `false` when stdout is gone (a closed pipe): a command that repeats
    /// its report stops then.
    pub(crate) fn report<T: Serialize>(self, report: &T, text: impl FnOnce(&T) -> String) -> bool {
        if self.json {
            match serde_json::to_string_pretty(report) {
                Ok(s) => line(&s),
                Err(e) => {
                    eprintln_safe(&format!("error: could not write the report: {e}"));
                    true
                }
            }
        } else {
            let t = text(report);
            t.is_empty() || line(t.trim_end_matches('\n'))
        }
    }

    /// Clears a terminal before a redraw (`status --watch`).
    pub(crate) fn clear_screen(self) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b"\x1b[2J\x1b[H");
    }

    /// A document that has its own JSON form: `json` or `text`.
    pub(crate) fn document(self, json: &str, text: &str) {
        let _ = line(if self.json {
            json
        } else {
            text.trim_end_matches('\n')
        });
    }

    /// A line for people (nothing in JSON mode).
    pub(crate) fn say(self, text: &str) {
        if !self.json {
            let _ = line(text);
        }
    }

    /// Prints an error with its hint (stderr), or as JSON (stdout).
    pub(crate) fn error(self, e: &CliError) {
        if self.json {
            let out = serde_json::json!({
                "error": e.to_string(),
                "hint": e.hint(),
                "exit_code": e.exit_code(),
            });
            let _ = line(&out.to_string());
        } else {
            eprintln_safe(&format!("error: {e}"));
            if let Some(hint) = e.hint() {
                eprintln_safe(&format!("hint: {hint}"));
            }
        }
    }
}

/// Writes a line; `false` if stdout is closed.
fn line(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
}

fn eprintln_safe(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
