//! Check 7: directory-sync tokens issued after preparation began.

use crate::check::{Check, CheckResult, Findings, NOTHING_TO_DO, Outcome};
use crate::facts::Facts;
use crate::time::iso8601;

/// Every directory-sync profile (Entra ID, SCIM) has a token issued at or
/// after the time preparation began; a profile with an older token, or
/// none, blocks. No profiles passes.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirectoryTokens;

impl Check for DirectoryTokens {
    fn name(&self) -> &'static str {
        "directory-tokens"
    }

    fn run(&self, facts: &Facts) -> CheckResult {
        let since = facts.preparation_started_at;
        let mut f = Findings::new();
        f.note(
            Outcome::Pass,
            format!("preparation began {}", iso8601(since)),
        );
        let mut stale = Vec::new();
        let mut fresh = Vec::new();
        for p in &facts.directory_profiles {
            match p.token_issued_at {
                Some(at) if at >= since => fresh.push(format!("{} ({})", p.name, p.kind)),
                Some(at) => stale.push(format!("{} ({}, issued {})", p.name, p.kind, iso8601(at))),
                None => stale.push(format!("{} ({}, no token)", p.name, p.kind)),
            }
        }
        f.note_list(
            Outcome::Block,
            "token issued before preparation began",
            &stale,
        );
        f.note_list(Outcome::Pass, "token renewed", &fresh);
        f.finish(self.name(), |o| match o {
            Outcome::Block => "Run `rekey directory renew-token PROFILE` for each listed profile and paste the new token into the directory's provisioning settings.".to_owned(),
            _ => NOTHING_TO_DO.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::test_support::NOW;
    use rekey_core::model::{DirectoryProfile, Timestamp};

    fn profile(name: &str, issued: Option<i64>) -> DirectoryProfile {
        DirectoryProfile {
            name: name.to_owned(),
            kind: "scim".to_owned(),
            token_issued_at: issued.map(Timestamp),
        }
    }

    #[test]
    fn renewed_tokens_pass() {
        let mut f = Facts::new(NOW);
        f.preparation_started_at = Timestamp(NOW.0 - 10_000);
        f.directory_profiles = vec![profile("okta", Some(NOW.0 - 10_000))];
        let r = DirectoryTokens.run(&f);
        assert_eq!(r.outcome, Outcome::Pass);
        assert_eq!(r.evidence[1], "token renewed (1): okta (scim)");
        assert_eq!(DirectoryTokens.run(&Facts::new(NOW)).outcome, Outcome::Pass);
    }

    #[test]
    fn old_or_missing_tokens_block() {
        let mut f = Facts::new(NOW);
        f.directory_profiles = vec![profile("entra", Some(0)), profile("scim", None)];
        let r = DirectoryTokens.run(&f);
        assert_eq!(r.outcome, Outcome::Block);
        assert_eq!(
            r.evidence[0],
            "token issued before preparation began (2): entra (scim, issued 1970-01-01T00:00:00Z), scim (scim, no token)"
        );
    }
}
