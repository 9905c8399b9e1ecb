//! The report: every check's result, the overall outcome and exit code,
//! rendered as a text table or as JSON.

use crate::check::{CheckResult, Outcome};
use rekey_core::model::Timestamp;
use serde::{Deserialize, Serialize};

/// The `format` field of the JSON report. Changes only when the shape does.
pub const JSON_FORMAT: &str = "rekey-preflight/1";

/// Every check's result.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Report {
    /// When the facts were loaded.
    pub checked_at: Timestamp,
    /// One result per check, in check order.
    pub results: Vec<CheckResult>,
}

/// The JSON document (see the crate docs for the shape).
#[derive(Serialize, Deserialize, Debug)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = PreflightReport))]
pub struct JsonReport {
    /// `rekey-preflight/1`.
    pub format: String,
    /// When the checks ran (ms since the epoch).
    pub checked_at: Timestamp,
    /// The worst outcome.
    pub overall: Outcome,
    /// The exit code `rekey preflight` gives for it.
    pub exit_code: u8,
    /// The checks that block the start.
    pub blocking: Vec<String>,
    /// Every check.
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// The worst outcome of any check (`pass` for no checks).
    #[must_use]
    pub fn overall(&self) -> Outcome {
        self.results
            .iter()
            .map(|r| r.outcome)
            .max()
            .unwrap_or(Outcome::Pass)
    }

    /// 0 when every check passes, 1 when the worst is a warning, 2 when a
    /// check blocks.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        self.overall().exit_code()
    }

    /// The names of the checks that block, in check order.
    #[must_use]
    pub fn blocking(&self) -> Vec<&str> {
        self.results
            .iter()
            .filter(|r| r.outcome == Outcome::Block)
            .map(|r| r.check.as_str())
            .collect()
    }

    /// The result of one check by name.
    #[must_use]
    pub fn result(&self, check: &str) -> Option<&CheckResult> {
        self.results.iter().find(|r| r.check == check)
    }

    /// The JSON report, pretty-printed, with a final newline.
    #[must_use]
    pub fn to_json(&self) -> String {
        let doc = JsonReport {
            format: JSON_FORMAT.to_owned(),
            checked_at: self.checked_at,
            overall: self.overall(),
            exit_code: self.exit_code(),
            blocking: self.blocking().into_iter().map(str::to_owned).collect(),
            checks: self.results.clone(),
        };
        // Serialising plain strings, numbers and vectors cannot fail.
        let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
        out.push('\n');
        out
    }

    /// Reads a JSON report back (for the server and tests).
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        let doc: JsonReport = serde_json::from_str(json)?;
        Ok(Self {
            checked_at: doc.checked_at,
            results: doc.checks,
        })
    }

    /// The report as a text table: one row per check (outcome, check, the
    /// first evidence line with a count of the others, remedy), then the
    /// full evidence of every check that did not pass, then the overall
    /// line.
    #[must_use]
    pub fn to_text(&self) -> String {
        let header = ["OUTCOME", "CHECK", "EVIDENCE", "REMEDY"];
        let rows: Vec<[String; 4]> = self
            .results
            .iter()
            .map(|r| {
                let summary = match r.evidence.as_slice() {
                    [] => String::new(),
                    [one] => one.clone(),
                    [first, rest @ ..] => format!("{first} (+{} more)", rest.len()),
                };
                [
                    r.outcome.as_str().to_uppercase(),
                    r.check.clone(),
                    shorten(&summary, 70),
                    r.remedy.clone(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: [&str; 4]| {
            let mut l = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i == 3 {
                    l.push_str(cell);
                } else {
                    l.push_str(cell);
                    l.push_str(&" ".repeat(w - cell.chars().count() + 2));
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(header);
        for row in &rows {
            line([&row[0], &row[1], &row[2], &row[3]]);
        }
        let details: Vec<&CheckResult> = self
            .results
            .iter()
            .filter(|r| r.outcome != Outcome::Pass)
            .collect();
        if !details.is_empty() {
            out.push('\n');
            for r in details {
                out.push_str(&format!("{} ({}):\n", r.check, r.outcome));
                for e in &r.evidence {
                    out.push_str(&format!("  - {e}\n"));
                }
                out.push_str(&format!("  remedy: {}\n", r.remedy));
            }
        }
        out.push('\n');
        out.push_str(&format!(
            "overall: {} (exit {})",
            self.overall(),
            self.exit_code()
        ));
        let blocking = self.blocking();
        if !blocking.is_empty() {
            out.push_str(&format!("; blocking: {}", blocking.join(", ")));
        }
        out.push('\n');
        out
    }
}

/// Cuts text to at most `max` characters, ending with `…`.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> Report {
        Report {
            checked_at: Timestamp(1_748_779_200_000),
            results: vec![
                CheckResult {
                    check: "active-server".to_owned(),
                    outcome: Outcome::Pass,
                    evidence: vec!["active (1): a (heartbeat 30 s ago)".to_owned()],
                    remedy: "Nothing to do.".to_owned(),
                },
                CheckResult {
                    check: "users".to_owned(),
                    outcome: Outcome::Block,
                    evidence: vec![
                        "deactivated or deleted, not purged (1): bob (deleted)".to_owned(),
                        "3 active e2ee users".to_owned(),
                    ],
                    remedy: "Purge or restore each listed user.".to_owned(),
                },
                CheckResult {
                    check: "disk-space".to_owned(),
                    outcome: Outcome::Warn,
                    evidence: vec![],
                    remedy: "Free disk space.".to_owned(),
                },
            ],
        }
    }

    #[test]
    fn overall_exit_code_and_blocking() {
        let r = fixed();
        assert_eq!(r.overall(), Outcome::Block);
        assert_eq!(r.exit_code(), 2);
        assert_eq!(r.blocking(), ["users"]);
        let mut warn = fixed();
        warn.results.remove(1);
        assert_eq!((warn.overall(), warn.exit_code()), (Outcome::Warn, 1));
        warn.results.remove(1);
        assert_eq!((warn.overall(), warn.exit_code()), (Outcome::Pass, 0));
        assert!(warn.blocking().is_empty());
    }

    #[test]
    fn json_shape_is_pinned() {
        let expected = r#"{
  "format": "rekey-preflight/1",
  "checked_at": 1748779200000,
  "overall": "block",
  "exit_code": 2,
  "blocking": [
    "users"
  ],
  "checks": [
    {
      "check": "active-server",
      "outcome": "pass",
      "evidence": [
        "active (1): a (heartbeat 30 s ago)"
      ],
      "remedy": "Nothing to do."
    },
    {
      "check": "users",
      "outcome": "block",
      "evidence": [
        "deactivated or deleted, not purged (1): bob (deleted)",
        "3 active e2ee users"
      ],
      "remedy": "Purge or restore each listed user."
    },
    {
      "check": "disk-space",
      "outcome": "warn",
      "evidence": [],
      "remedy": "Free disk space."
    }
  ]
}
"#;
        assert_eq!(fixed().to_json(), expected);
        assert_eq!(Report::from_json(expected).unwrap(), fixed());
    }

    #[test]
    fn text_table_is_pinned() {
        let expected = "\
OUTCOME  CHECK          EVIDENCE                                                         REMEDY
PASS     active-server  active (1): a (heartbeat 30 s ago)                               Nothing to do.
BLOCK    users          deactivated or deleted, not purged (1): bob (deleted) (+1 more)  Purge or restore each listed user.
WARN     disk-space                                                                      Free disk space.

users (block):
  - deactivated or deleted, not purged (1): bob (deleted)
  - 3 active e2ee users
  remedy: Purge or restore each listed user.
disk-space (warn):
  remedy: Free disk space.

overall: block (exit 2); blocking: users
";
        assert_eq!(fixed().to_text(), expected);
    }

    #[test]
    fn long_evidence_is_shortened_in_the_table() {
        let mut r = fixed();
        r.results[0].evidence = vec!["x".repeat(100)];
        let text = r.to_text();
        let row = text.lines().nth(1).unwrap();
        assert!(row.contains(&format!("{}…", "x".repeat(69))), "{row}");
        assert!(!row.contains(&"x".repeat(70)));
    }
}
