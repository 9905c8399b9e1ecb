//! Where the migration stands, with rate, estimate, what blocks and what
//! to do next: `rekey status`, `GET /v1/migration/status`, the status page
//! and the metrics all read this one report.

use super::Engine;
use crate::error::EngineError;
use rekey_core::model::{Counts, GrantOrigin, MigrationState, Phase, Progress, Timestamp};
use rekey_core::report::{History, NAMES_LISTED, StatusReport, rate_and_estimate};

/// Which principals a status names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// None: counts only (what anyone may see).
    Withheld,
    /// The first [`NAMES_LISTED`] pending and blocked principals.
    First,
    /// Every pending and blocked principal.
    All,
}

impl Engine {
    /// The migration's status. Reads only.
    pub async fn status(&self, names: Names) -> Result<StatusReport, EngineError> {
        let row = self.vault.migration().await?;
        let mut progress = self.vault.progress().await?;
        if row.phase == Phase::Completed {
            // Finalize deleted the legacy grants the counts are made of;
            // what is left to count is what the migration wrote.
            progress.grants = Counts {
                migrated: self.vault.count_grants(GrantOrigin::Migration).await?,
                remaining: 0,
            };
        }
        let limit = match names {
            Names::Withheld => 0,
            Names::First => NAMES_LISTED,
            Names::All => u64::MAX,
        };
        let pending = self.names_in(MigrationState::Pending, limit).await?;
        let blocked = self.names_in(MigrationState::Blocked, limit).await?;
        let p = &progress;
        let migrated = p.users.migrated + p.roles.migrated + p.services.migrated;
        let remaining = p.users.remaining + p.roles.remaining + p.services.remaining;
        let (rate, eta) = rate_and_estimate(row.started_at, Timestamp::now(), migrated, remaining);
        let history = match row.started_at {
            Some(since) if row.phase != Phase::Legacy => {
                let (width, windows) = History::windows(since, Timestamp::now());
                Some(History {
                    since,
                    window_seconds: u64::try_from(width / 1000).unwrap_or(60),
                    bundles: self
                        .vault
                        .audit_counts(super::apply::BUNDLE_APPLIED, since, width, windows)
                        .await?,
                })
            }
            _ => None,
        };
        let missing = match (row.phase, &self.keys) {
            (Phase::AwaitingCertificates, Some(keys)) => self.missing_certificates(keys).await?,
            _ => Vec::new(),
        };
        Ok(StatusReport {
            phase: row.phase,
            run: row.run,
            target: row.run.map(|_| row.target),
            started_at: row.started_at,
            blockers: blockers(&progress, &missing),
            next_step: next_step(row.phase, &progress, remaining),
            progress,
            pending,
            blocked,
            names_withheld: names == Names::Withheld,
            rate_principals_per_minute: rate,
            eta_minutes: eta,
            history,
        })
    }

    async fn names_in(
        &self,
        state: MigrationState,
        limit: u64,
    ) -> Result<Vec<String>, EngineError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Page through the principals in this state (a `status --all-pending` of a
        // large vault names thousands).
        let mut names = Vec::new();
        let mut after = None;
        while (names.len() as u64) < limit {
            let want = (limit - names.len() as u64).min(super::PAGE);
            let page = self.vault.principals_in_state(state, after, want).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let full = page.len() as u64 == want;
            names.extend(page.into_iter().map(|p| p.name));
            if !full {
                break;
            }
        }
        Ok(names)
    }
}

/// What stops the next step, in counts (never names: the public status
/// shows these too).
fn blockers(p: &Progress, missing_certificates: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if p.blocked > 0 {
        out.push(format!(
            "{} principal(s) can never log in (deactivated or deleted users): \
             finalize waits until each is purged or restored",
            p.blocked
        ));
    }
    if p.unresolved_non_migratable > 0 {
        out.push(format!(
            "{} non-migratable grant(s) not resolved: reshare each record or write the grant off",
            p.unresolved_non_migratable
        ));
    }
    if p.unconfirmed_role_members > 0 {
        out.push(format!(
            "{} member(s) of migrated roles have not confirmed the role's new key: \
             each logs in once more, or `rekey waive-role` accepts one who will not",
            p.unconfirmed_role_members
        ));
    }
    for m in missing_certificates {
        out.push(format!(
            "certificate key missing from the key directory: {m}"
        ));
    }
    out
}

/// What the operator does next, by phase and progress.
fn next_step(phase: Phase, p: &Progress, remaining: u64) -> String {
    match phase {
        Phase::Legacy => "run `rekey preflight`, back up the certificate keys with \
            `rekey cert backup`, then `rekey start`"
            .to_owned(),
        Phase::ServerPhase => "the server keys are migrating; if `rekey start` was \
            interrupted, run it again to resume"
            .to_owned(),
        Phase::AwaitingCertificates => "import the missing certificate keys with \
            `rekey cert import BACKUP`, then run `rekey start` again to resume"
            .to_owned(),
        Phase::UserPhase
            if remaining == 0
                && p.unresolved_non_migratable == 0
                && p.unconfirmed_role_members == 0 =>
        {
            "every principal has migrated: run `rekey finalize` \
             (POST /v1/admin/finalize) to delete the legacy keys and lift read-only mode"
                .to_owned()
        }
        Phase::UserPhase if remaining == p.blocked && p.blocked > 0 => {
            "only blocked principals are left: purge or restore them, then finalize".to_owned()
        }
        Phase::UserPhase if remaining == 0 && p.unresolved_non_migratable > 0 => {
            "resolve the non-migratable grants, then run `rekey finalize`".to_owned()
        }
        Phase::UserPhase if remaining == 0 => format!(
            "wait for the {} role member(s) to log in once more (their client confirms \
             the role's new key) or accept them with `rekey waive-role`, then run \
             `rekey finalize`; `rekey finalize` names them",
            p.unconfirmed_role_members
        ),
        Phase::UserPhase => format!(
            "wait for the {remaining} pending principal(s) to log in once; \
             `rekey status --all-pending` names them"
        ),
        Phase::Finalizing => {
            "finalize was interrupted: run `rekey finalize` again to finish".to_owned()
        }
        Phase::Completed => "done: the vault uses its new keys and is writable again (to move it to another target later, back up the certificates and `rekey start --target-scheme …` again)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(remaining: u64, blocked: u64, unresolved: u64) -> Progress {
        Progress {
            users: Counts {
                migrated: 5,
                remaining,
            },
            blocked,
            unresolved_non_migratable: unresolved,
            ..Progress::default()
        }
    }

    #[test]
    fn the_next_step_follows_the_phase_and_what_is_left() {
        let step = |phase, r, b, u| next_step(phase, &progress(r, b, u), r);
        assert!(step(Phase::UserPhase, 0, 0, 0).contains("rekey finalize"));
        assert!(step(Phase::UserPhase, 3, 0, 0).contains("3 pending"));
        assert!(step(Phase::UserPhase, 2, 2, 0).contains("purge or restore"));
        assert!(step(Phase::UserPhase, 0, 0, 1).contains("non-migratable"));
        let unconfirmed = Progress {
            unconfirmed_role_members: 4,
            ..progress(0, 0, 0)
        };
        let waiting = next_step(Phase::UserPhase, &unconfirmed, 0);
        assert!(waiting.contains("4 role member(s)"), "{waiting}");
        assert!(waiting.contains("waive-role"), "{waiting}");
        assert_eq!(blockers(&unconfirmed, &[]).len(), 1);
        assert!(step(Phase::AwaitingCertificates, 0, 0, 0).contains("cert import"));
        assert!(step(Phase::Finalizing, 0, 0, 0).contains("again"));
        assert!(step(Phase::Legacy, 0, 0, 0).contains("rekey start"));
    }

    #[test]
    fn blockers_give_counts_not_names() {
        let b = blockers(&progress(2, 2, 1), &["ab12 (vault-key)".to_owned()]);
        assert_eq!(b.len(), 3);
        assert!(b[0].starts_with("2 principal(s)"));
        assert!(b[1].starts_with("1 non-migratable"));
        assert!(b[2].contains("vault-key"));
        assert!(blockers(&Progress::default(), &[]).is_empty());
    }
}
