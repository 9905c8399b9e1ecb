//! Check 5: users who can never log in, roles no active user belongs to,
//! and e2ee users who have not logged in for a long time.

use crate::check::{Check, CheckResult, Findings, NOTHING_TO_DO, Outcome};
use crate::facts::Facts;
use crate::time::{DAY_MS, age};

/// An e2ee user who has not logged in for this long (90 days) is warned
/// about: they will hold up completion.
pub const INACTIVE_AFTER_MS: i64 = 90 * DAY_MS;

/// Users deactivated or deleted but not purged block (they can never log
/// in, so the migration could never finish), and so do roles none of whose
/// members is an active user (nobody could ever open their key). Active e2ee users not seen for
/// [`INACTIVE_AFTER_MS`] (or never) warn, when the vault records logins.
#[derive(Clone, Copy, Debug, Default)]
pub struct Users;

impl Check for Users {
    fn name(&self) -> &'static str {
        "users"
    }

    fn run(&self, facts: &Facts) -> CheckResult {
        let mut f = Findings::new();
        let unpurged: Vec<String> = facts
            .unpurged_users
            .iter()
            .map(|u| format!("{} ({})", u.name, u.status))
            .collect();
        f.note_list(
            Outcome::Block,
            "deactivated or deleted, not purged",
            &unpurged,
        );
        f.note_list(
            Outcome::Block,
            "roles no active user belongs to",
            &facts.roles_without_active_member,
        );
        let users_block = !unpurged.is_empty();
        let roles_block = !facts.roles_without_active_member.is_empty();
        match &facts.e2ee_logins {
            None => f.note(
                Outcome::Pass,
                "last logins are not recorded in this vault: inactive e2ee users not looked for",
            ),
            Some(logins) => {
                let stale: Vec<String> = logins
                    .iter()
                    .filter_map(|l| match l.at {
                        None => Some(format!("{} (never)", l.name)),
                        Some(at) if facts.now.0.saturating_sub(at.0) > INACTIVE_AFTER_MS => {
                            Some(format!("{} ({})", l.name, age(facts.now, at)))
                        }
                        Some(_) => None,
                    })
                    .collect();
                f.note(Outcome::Pass, format!("{} active e2ee users", logins.len()));
                f.note_list(Outcome::Warn, "not logged in for 90 days", &stale);
            }
        }
        let blocked = f.outcome() == Outcome::Block;
        f.finish(self.name(), move |o| match o {
            Outcome::Block => {
                let mut remedy = Vec::new();
                if users_block {
                    remedy.push("Purge or restore each listed user (`rekey user purge NAME` or `rekey user restore NAME`): a deactivated or deleted user can never log in, so the migration could never finish.");
                }
                if roles_block {
                    remedy.push("Add an active member to each listed role, or delete the role once its records are shared elsewhere: a role migrates only when one of its members logs in (or through a directory-managed member), so a role without one would hold up finalization for ever.");
                }
                remedy.join(" ")
            }
            Outcome::Warn if !blocked => "Ask the listed users to log in once the migration starts, or deactivate and purge the accounts no longer needed.".to_owned(),
            _ => NOTHING_TO_DO.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::test_support::NOW;
    use crate::facts::LastLogin;
    use rekey_core::ids::PrincipalId;
    use rekey_core::model::{
        KeyCustody, MigrationState, Principal, PrincipalKind, Timestamp, UserStatus,
    };

    fn user(name: &str, status: UserStatus) -> Principal {
        Principal {
            id: PrincipalId::random(),
            kind: PrincipalKind::User,
            name: name.to_owned(),
            status,
            custody: KeyCustody::E2ee,
            service: None,
            migration: MigrationState::Pending,
        }
    }

    #[test]
    fn nothing_to_report_passes() {
        let f = Facts::new(NOW);
        let r = Users.run(&f);
        assert_eq!(r.outcome, Outcome::Pass);
        assert!(r.evidence[0].starts_with("last logins are not recorded"));
        let mut f = Facts::new(NOW);
        f.e2ee_logins = Some(vec![LastLogin {
            name: "alice".to_owned(),
            at: Some(Timestamp(NOW.0 - DAY_MS)),
        }]);
        assert_eq!(Users.run(&f).outcome, Outcome::Pass);
    }

    #[test]
    fn unpurged_users_block() {
        let mut f = Facts::new(NOW);
        f.unpurged_users = vec![
            user("bob", UserStatus::Deactivated),
            user("carol", UserStatus::Deleted),
        ];
        let r = Users.run(&f);
        assert_eq!(r.outcome, Outcome::Block);
        assert_eq!(
            r.evidence[0],
            "deactivated or deleted, not purged (2): bob (deactivated), carol (deleted)"
        );
    }

    #[test]
    fn roles_without_an_active_member_block_with_their_own_remedy() {
        let mut f = Facts::new(NOW);
        f.roles_without_active_member = vec!["finance".to_owned()];
        let r = Users.run(&f);
        assert_eq!(r.outcome, Outcome::Block);
        assert_eq!(
            r.evidence[0],
            "roles no active user belongs to (1): finance"
        );
        assert!(r.remedy.starts_with("Add an active member"), "{}", r.remedy);
        assert!(!r.remedy.contains("Purge or restore"), "{}", r.remedy);
        // With unpurged users too, both remedies are given.
        f.unpurged_users = vec![user("bob", UserStatus::Deleted)];
        let r = Users.run(&f);
        assert!(r.remedy.contains("Purge or restore") && r.remedy.contains("Add an active member"));
    }

    #[test]
    fn long_absent_users_warn() {
        let mut f = Facts::new(NOW);
        f.e2ee_logins = Some(vec![
            LastLogin {
                name: "dave".to_owned(),
                at: Some(Timestamp(NOW.0 - 120 * DAY_MS)),
            },
            LastLogin {
                name: "erin".to_owned(),
                at: None,
            },
        ]);
        let r = Users.run(&f);
        assert_eq!(r.outcome, Outcome::Warn);
        assert_eq!(
            r.evidence[0],
            "not logged in for 90 days (2): dave (120 days ago), erin (never)"
        );
    }
}
