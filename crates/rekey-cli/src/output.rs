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
    pub(crate) fn report<T: Serialize>(self, report: &T, text: impl FnOnce(&T) -> String) {
        if self.json {
            match serde_json::to_string_pretty(report) {
                Ok(s) => line(&s),
                Err(e) => eprintln_safe(&format!("error: could not write the report: {e}")),
            }
        } else {
            let t = text(report);
            if !t.is_empty() {
                line(t.trim_end_matches('\n'));
            }
        }
    }

    /// A document that has its own JSON form: `json` or `text`.
    pub(crate) fn document(self, json: &str, text: &str) {
        line(if self.json {
            json
        } else {
            text.trim_end_matches('\n')
        });
    }

    /// A line for people (nothing in JSON mode).
    pub(crate) fn say(self, text: &str) {
        if !self.json {
            line(text);
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
            line(&out.to_string());
        } else {
            eprintln_safe(&format!("error: {e}"));
            if let Some(hint) = e.hint() {
                eprintln_safe(&format!("hint: {hint}"));
            }
        }
    }
}

fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn eprintln_safe(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
