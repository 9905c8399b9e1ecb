//! What one check returns, and the trait every check implements.

use crate::facts::Facts;
use serde::{Deserialize, Serialize};

/// How bad a check's finding is. Ordered: `Pass < Warn < Block`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Nothing stands in the way.
    Pass,
    /// The migration can start, but something will hurt (data lost on a
    /// device nobody cares about, a user who will hold up completion…).
    Warn,
    /// `rekey start` refuses until this is resolved.
    Block,
}

impl Outcome {
    /// The stable lower-case name (`pass`, `warn`, `block`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Warn => "warn",
            Outcome::Block => "block",
        }
    }

    /// The process exit code for this outcome: 0, 1 or 2.
    #[must_use]
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Pass => 0,
            Outcome::Warn => 1,
            Outcome::Block => 2,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one check.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckResult {
    /// The check's stable name (e.g. `certificates`).
    pub check: String,
    /// Pass, warn or block.
    pub outcome: Outcome,
    /// What was found, one finding per line: names of users, devices,
    /// servers, certificate fingerprints, counts and ids. Never key
    /// material.
    pub evidence: Vec<String>,
    /// What to do, in one sentence.
    pub remedy: String,
}

/// One preparation check: a pure function of the loaded [`Facts`].
pub trait Check: std::fmt::Debug + Send + Sync {
    /// The stable name, used in the report and by `rekey start`.
    fn name(&self) -> &'static str;

    /// Looks at the facts and says pass, warn or block.
    fn run(&self, facts: &Facts) -> CheckResult;
}

/// Lists at most this many items in one evidence line; the rest are
/// counted.
pub const EVIDENCE_LIMIT: usize = 10;

/// Builds a result while a check goes through its facts: the outcome is
/// the worst one noted.
#[derive(Debug)]
pub(crate) struct Findings {
    outcome: Outcome,
    evidence: Vec<(Outcome, String)>,
}

impl Findings {
    pub(crate) fn new() -> Self {
        Self {
            outcome: Outcome::Pass,
            evidence: Vec::new(),
        }
    }

    /// Notes a finding with its outcome.
    pub(crate) fn note(&mut self, outcome: Outcome, line: impl Into<String>) {
        self.outcome = self.outcome.max(outcome);
        self.evidence.push((outcome, line.into()));
    }

    /// Notes a list of items under one heading, at most
    /// [`EVIDENCE_LIMIT`] named, the rest counted. Nothing if empty.
    pub(crate) fn note_list(&mut self, outcome: Outcome, heading: &str, items: &[String]) {
        if items.is_empty() {
            return;
        }
        self.note(
            outcome,
            format!("{heading} ({}): {}", items.len(), list(items)),
        );
    }

    pub(crate) fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The result, with the remedy for the outcome reached. The evidence
    /// lists the worst findings first (blocking, then warnings, then the
    /// rest), each group in the order noted, so the first line says what
    /// is wrong.
    pub(crate) fn finish(
        mut self,
        check: &str,
        remedy: impl FnOnce(Outcome) -> String,
    ) -> CheckResult {
        self.evidence.sort_by_key(|e| std::cmp::Reverse(e.0));
        CheckResult {
            check: check.to_owned(),
            outcome: self.outcome,
            evidence: self.evidence.into_iter().map(|(_, line)| line).collect(),
            remedy: remedy(self.outcome),
        }
    }
}

/// `a, b, c` with at most [`EVIDENCE_LIMIT`] items, then `… and N more`.
pub(crate) fn list(items: &[String]) -> String {
    let shown: Vec<&str> = items
        .iter()
        .take(EVIDENCE_LIMIT)
        .map(String::as_str)
        .collect();
    let mut out = shown.join(", ");
    if items.len() > EVIDENCE_LIMIT {
        out.push_str(&format!(" … and {} more", items.len() - EVIDENCE_LIMIT));
    }
    out
}

/// The remedy shown for a check that passed.
pub(crate) const NOTHING_TO_DO: &str = "Nothing to do.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_order_and_exit_codes() {
        assert!(Outcome::Pass < Outcome::Warn && Outcome::Warn < Outcome::Block);
        assert_eq!(
            [Outcome::Pass, Outcome::Warn, Outcome::Block].map(Outcome::exit_code),
            [0, 1, 2]
        );
    }

    #[test]
    fn long_lists_are_cut() {
        let items: Vec<String> = (0..12).map(|i| format!("u{i}")).collect();
        assert_eq!(
            list(&items),
            "u0, u1, u2, u3, u4, u5, u6, u7, u8, u9 … and 2 more"
        );
        assert_eq!(list(&items[..2]), "u0, u1");
    }
}
