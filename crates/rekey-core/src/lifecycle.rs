//! The migration lifecycle, as types.
//!
//! ```text
//! Legacy ──start──▶ ServerPhase ──server keys done──▶ UserPhase ──finalize──▶ Finalizing ──▶ Completed
//!                     ▲ │   ▲                                                                   │
//!                     │ ▼   │ certificates imported                                             │
//!                     │ AwaitingCertificates                                                    │
//!                     └────────────────────────── start again (to another target) ──────────────┘
//! abort: from ServerPhase, AwaitingCertificates or UserPhase back to the
//! state before the run (BeforeRun): Legacy, or the Completed vault of the
//! previous migration
//! ```
//!
//! Each state is a struct holding what that state needs; a transition
//! consumes the state and returns the next one or a [`TransitionError`]
//! naming the guard that failed. Illegal transitions do not compile; the
//! [`Lifecycle`] enum is only for loading a persisted phase.

use crate::ids::{GrantId, RunId};
use crate::model::Phase;

/// The code word an operator must type to start, exactly.
pub const CODE_WORD: &str = "Start";

/// How many names an error lists before saying "and N more".
pub const NAMES_SHOWN: usize = 5;

/// Why a transition was refused. Each variant names its guard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransitionError {
    /// The operator's answer was not the code word.
    #[error(
        "the code word was not entered: type `Start` exactly (capital S) to start the migration"
    )]
    WrongCodeWord,
    /// Preparation checks block.
    #[error("preparation checks block the start: {}", list(checks, checks.len()))]
    ChecksBlock {
        /// The blocking checks, by name.
        checks: Vec<String>,
    },
    /// The vault is not in the phase this operation needs.
    #[error("the vault is in phase `{actual}`, but this needs `{expected}`")]
    WrongPhase {
        /// What the operation needs.
        expected: &'static str,
        /// Where the vault is.
        actual: Phase,
    },
    /// Server-held principals still pending.
    #[error("{count} server-held key(s) not migrated yet: {}", list(first, *count))]
    ServerKeysPending {
        /// How many.
        count: u64,
        /// The first few names.
        first: Vec<String>,
    },
    /// Certificates whose private key is not in the key directory.
    #[error("certificate private key(s) missing from the key directory: {}", list(missing, missing.len() as u64))]
    CertificatesMissing {
        /// Certificate fingerprints or names.
        missing: Vec<String>,
    },
    /// Principals that have not migrated.
    #[error("{count} principal(s) still pending: {}", list(first, *count))]
    PrincipalsPending {
        /// How many.
        count: u64,
        /// The first few names.
        first: Vec<String>,
    },
    /// Non-migratable grants nobody resolved.
    #[error("{count} non-migratable grant(s) not resolved (re-share or write off each): {}", list(&first.iter().map(ToString::to_string).collect::<Vec<_>>(), *count))]
    NonMigratableUnresolved {
        /// How many.
        count: u64,
        /// The first few grant ids.
        first: Vec<GrantId>,
    },
    /// Registered servers that do not hold the new certificates.
    #[error("server(s) without the new certificates (run `rekey cert import` there): {}", list(servers, servers.len() as u64))]
    CertificatesNotOnEveryServer {
        /// Server names.
        servers: Vec<String>,
    },
    /// Principals counted as migrated that hold no current key pair: the
    /// flag is not borne out by the rows (a write around the guard).
    #[error("{count} principal(s) marked migrated have no new key pair; nothing was deleted: {}", list(first, *count))]
    MigratedWithoutKey {
        /// How many.
        count: u64,
        /// The first few names.
        first: Vec<String>,
    },
    /// Legacy grants of migrated principals with neither a replacement
    /// nor a resolved non-migratable entry: deleting them would lose what
    /// they open.
    #[error("{count} legacy grant(s) of migrated principals have no replacement; nothing was deleted: {}", list(first, *count))]
    LegacyGrantsUncovered {
        /// How many.
        count: u64,
        /// The first few, as `name: grant id`.
        first: Vec<String>,
    },
    /// Members of migrated roles whose clients have not confirmed that
    /// the role, as another member migrated it, opens for them: a hostile
    /// or broken client may have cut them off, and deleting the legacy
    /// material would make that final.
    #[error("{count} member(s) of migrated roles have not confirmed the role's new key; nothing was deleted: {}", list(first, *count))]
    RoleMembersUnconfirmed {
        /// How many.
        count: u64,
        /// The first few, as `member (role)`.
        first: Vec<String>,
    },
    /// Legacy material still present when completing.
    #[error("{count} legacy row(s) still to delete; run finalize again to resume")]
    LegacyMaterialLeft {
        /// Rows left.
        count: u64,
    },
    /// Abort is only possible before finalizing.
    #[error("the migration is already `{0}`: it can no longer be aborted")]
    TooLateToAbort(Phase),
}

impl TransitionError {
    /// The stable machine-readable code of this refusal (`docs/PROTOCOL.md`).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            TransitionError::WrongCodeWord => "wrong_code_word",
            TransitionError::ChecksBlock { .. } => "preflight_blocks",
            TransitionError::WrongPhase { .. } => "wrong_phase",
            TransitionError::ServerKeysPending { .. } => "server_keys_pending",
            TransitionError::CertificatesMissing { .. } => "certificates_missing",
            TransitionError::PrincipalsPending { .. } => "principals_pending",
            TransitionError::NonMigratableUnresolved { .. } => "non_migratable_unresolved",
            TransitionError::CertificatesNotOnEveryServer { .. } => {
                "certificates_not_on_every_server"
            }
            TransitionError::MigratedWithoutKey { .. } => "migrated_without_key",
            TransitionError::LegacyGrantsUncovered { .. } => "legacy_grants_uncovered",
            TransitionError::RoleMembersUnconfirmed { .. } => "role_members_unconfirmed",
            TransitionError::LegacyMaterialLeft { .. } => "legacy_material_left",
            TransitionError::TooLateToAbort(_) => "too_late_to_abort",
        }
    }
}

fn list<S: AsRef<str>>(names: &[S], total: impl TryInto<u64>) -> String {
    let total = total.try_into().unwrap_or(0);
    let shown: Vec<&str> = names.iter().take(NAMES_SHOWN).map(AsRef::as_ref).collect();
    let more = total.saturating_sub(shown.len() as u64);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// A move from one phase to the next that the lifecycle allowed: storage
/// persists exactly this (see `Vault::transition`). Made only by
/// [`Transition::between`] from two states, and a state after `Legacy` is
/// made only by the transition functions below (or loaded back from the
/// vault with [`Lifecycle::load`]), so no frontend can name a move the
/// guards did not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    from: Phase,
    to: Phase,
}

impl Transition {
    /// The move from `from` to `to`, the state a transition function
    /// returned for it.
    #[must_use]
    pub fn between(from: &impl State, to: &impl State) -> Self {
        Self {
            from: from.phase(),
            to: to.phase(),
        }
    }

    /// The phase left.
    #[must_use]
    pub fn from(self) -> Phase {
        self.from
    }

    /// The phase entered.
    #[must_use]
    pub fn to(self) -> Phase {
        self.to
    }
}

/// A lifecycle state: one of the structs below.
pub trait State: sealed::Sealed {
    /// Its persisted phase.
    fn phase(&self) -> Phase;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! state {
    ($($ty:ident => $phase:ident),* $(,)?) => {$(
        impl sealed::Sealed for $ty {}
        impl State for $ty {
            fn phase(&self) -> Phase {
                Phase::$phase
            }
        }
    )*};
}

state! {
    Legacy => Legacy,
    ServerPhase => ServerPhase,
    AwaitingCertificates => AwaitingCertificates,
    UserPhase => UserPhase,
    Finalizing => Finalizing,
    Completed => Completed,
}

macro_rules! run_of {
    ($($ty:ident),*) => {$(
        impl $ty {
            /// This run.
            #[must_use]
            pub fn run(&self) -> RunId {
                self.run
            }
        }
    )*};
}

run_of!(ServerPhase, AwaitingCertificates, UserPhase, Finalizing);

/// Where an abort leaves the vault: exactly as it was before the run
/// started. That is the legacy vault for a first migration, and the
/// completed vault of the previous migration for a vault that migrated
/// again; storage knows which (`Vault::abort` restores it and answers the
/// phase).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeforeRun;

/// The vault before any migration (or after an abort).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Legacy;

/// Start done; the server migrates the keys it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerPhase {
    run: RunId,
}

/// The server phase stopped on certificates whose private key is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwaitingCertificates {
    run: RunId,
    missing: Vec<String>,
}

/// Server keys done; users migrate as they log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPhase {
    run: RunId,
}

/// Legacy material is being deleted (resumable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finalizing {
    run: RunId,
}

/// Done: only new keys remain and the vault is writable again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed;

/// What `finalize` must know about the vault.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinalizeFacts {
    /// Principals pending or blocked.
    pub pending: u64,
    /// Their first names.
    pub first_pending: Vec<String>,
    /// Unresolved non-migratable grants.
    pub unresolved_non_migratable: u64,
    /// Their first ids.
    pub first_unresolved: Vec<GrantId>,
    /// Registered servers lacking the new certificate fingerprints.
    pub servers_without_new_certificates: Vec<String>,
    /// Principals counted as migrated without a current key pair.
    pub migrated_without_key: u64,
    /// Their first names.
    pub first_migrated_without_key: Vec<String>,
    /// Legacy grants of migrated principals with no replacement and no
    /// resolved non-migratable entry.
    pub uncovered_legacy_grants: u64,
    /// The first of them, as `name: grant id`.
    pub first_uncovered: Vec<String>,
    /// Members of migrated roles that have not confirmed the role's new
    /// key (`crate::confirm`).
    pub unconfirmed_members: u64,
    /// The first of them, as `member (role)`.
    pub first_unconfirmed: Vec<String>,
}

impl FinalizeFacts {
    /// The checks of the rows themselves, which every run of finalize
    /// makes before it deletes anything (also when it resumes): deleting
    /// is the one step that cannot be undone, so a principal's `migrated`
    /// flag alone is never enough.
    pub fn check_evidence(&self) -> Result<(), TransitionError> {
        if self.migrated_without_key > 0 {
            return Err(TransitionError::MigratedWithoutKey {
                count: self.migrated_without_key,
                first: self.first_migrated_without_key.clone(),
            });
        }
        if self.uncovered_legacy_grants > 0 {
            return Err(TransitionError::LegacyGrantsUncovered {
                count: self.uncovered_legacy_grants,
                first: self.first_uncovered.clone(),
            });
        }
        if self.unconfirmed_members > 0 {
            return Err(TransitionError::RoleMembersUnconfirmed {
                count: self.unconfirmed_members,
                first: self.first_unconfirmed.clone(),
            });
        }
        Ok(())
    }
}

/// Whether `answer` is [`CODE_WORD`], exactly: the first and cheapest
/// guard of a start, checked before preflight runs.
pub fn code_word_accepted(answer: &str) -> Result<(), TransitionError> {
    if answer == CODE_WORD {
        Ok(())
    } else {
        Err(TransitionError::WrongCodeWord)
    }
}

impl Legacy {
    /// Starts a migration. `answer` must be [`CODE_WORD`] exactly; no
    /// preparation check may block. Nothing changes on refusal.
    pub fn start(
        self,
        answer: &str,
        blocking_checks: &[String],
        run: RunId,
    ) -> Result<ServerPhase, TransitionError> {
        code_word_accepted(answer)?;
        if !blocking_checks.is_empty() {
            return Err(TransitionError::ChecksBlock {
                checks: blocking_checks.to_vec(),
            });
        }
        Ok(ServerPhase { run })
    }
}

impl Completed {
    /// Starts the next migration of a migrated vault (to another target,
    /// or the same one to replace every key): the same guards as
    /// [`Legacy::start`]. The previous migration's keys and grants become
    /// the legacy material of the new run.
    pub fn start(
        self,
        answer: &str,
        blocking_checks: &[String],
        run: RunId,
    ) -> Result<ServerPhase, TransitionError> {
        Legacy.start(answer, blocking_checks, run)
    }
}

impl ServerPhase {
    /// A certificate's private key is absent: wait for an import.
    pub fn certificates_missing(
        self,
        missing: Vec<String>,
    ) -> Result<AwaitingCertificates, TransitionError> {
        if missing.is_empty() {
            return Err(TransitionError::CertificatesMissing { missing });
        }
        Ok(AwaitingCertificates {
            run: self.run,
            missing,
        })
    }

    /// Every server-held principal migrated: users may log in.
    pub fn server_keys_done(
        self,
        pending: u64,
        first_pending: Vec<String>,
    ) -> Result<UserPhase, TransitionError> {
        if pending > 0 {
            return Err(TransitionError::ServerKeysPending {
                count: pending,
                first: first_pending,
            });
        }
        Ok(UserPhase { run: self.run })
    }

    /// Back to the exact state before the run.
    #[must_use]
    pub fn abort(self) -> BeforeRun {
        BeforeRun
    }
}

impl AwaitingCertificates {
    /// The certificates whose private key was missing.
    #[must_use]
    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    /// The missing keys are in the key directory now: resume.
    pub fn certificates_imported(
        self,
        still_missing: Vec<String>,
    ) -> Result<ServerPhase, TransitionError> {
        if !still_missing.is_empty() {
            return Err(TransitionError::CertificatesMissing {
                missing: still_missing,
            });
        }
        Ok(ServerPhase { run: self.run })
    }

    /// Back to the exact state before the run.
    #[must_use]
    pub fn abort(self) -> BeforeRun {
        BeforeRun
    }
}

impl UserPhase {
    /// Starts deleting legacy material. Refused while anything is pending,
    /// a non-migratable grant is unresolved, or a server lacks the new
    /// certificates.
    pub fn finalize(self, facts: &FinalizeFacts) -> Result<Finalizing, TransitionError> {
        if facts.pending > 0 {
            return Err(TransitionError::PrincipalsPending {
                count: facts.pending,
                first: facts.first_pending.clone(),
            });
        }
        if facts.unresolved_non_migratable > 0 {
            return Err(TransitionError::NonMigratableUnresolved {
                count: facts.unresolved_non_migratable,
                first: facts.first_unresolved.clone(),
            });
        }
        if !facts.servers_without_new_certificates.is_empty() {
            return Err(TransitionError::CertificatesNotOnEveryServer {
                servers: facts.servers_without_new_certificates.clone(),
            });
        }
        facts.check_evidence()?;
        Ok(Finalizing { run: self.run })
    }

    /// Back to the exact state before the run.
    #[must_use]
    pub fn abort(self) -> BeforeRun {
        BeforeRun
    }
}

impl Finalizing {
    /// All legacy material deleted: done.
    pub fn complete(self, legacy_rows_left: u64) -> Result<Completed, TransitionError> {
        if legacy_rows_left > 0 {
            return Err(TransitionError::LegacyMaterialLeft {
                count: legacy_rows_left,
            });
        }
        Ok(Completed)
    }
}

/// A persisted lifecycle state, as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// See [`Legacy`].
    Legacy(Legacy),
    /// See [`ServerPhase`].
    ServerPhase(ServerPhase),
    /// See [`AwaitingCertificates`].
    AwaitingCertificates(AwaitingCertificates),
    /// See [`UserPhase`].
    UserPhase(UserPhase),
    /// See [`Finalizing`].
    Finalizing(Finalizing),
    /// See [`Completed`].
    Completed(Completed),
}

impl Lifecycle {
    /// Rebuilds the state from the stored phase. A phase after Legacy
    /// needs its run id; `None` for one means the row is inconsistent.
    #[must_use]
    pub fn load(phase: Phase, run: Option<RunId>, missing: Vec<String>) -> Option<Self> {
        Some(match phase {
            Phase::Legacy => Lifecycle::Legacy(Legacy),
            Phase::Completed => Lifecycle::Completed(Completed),
            Phase::ServerPhase => Lifecycle::ServerPhase(ServerPhase { run: run? }),
            Phase::AwaitingCertificates => {
                Lifecycle::AwaitingCertificates(AwaitingCertificates { run: run?, missing })
            }
            Phase::UserPhase => Lifecycle::UserPhase(UserPhase { run: run? }),
            Phase::Finalizing => Lifecycle::Finalizing(Finalizing { run: run? }),
        })
    }

    /// The phase to persist.
    #[must_use]
    pub fn phase(&self) -> Phase {
        match self {
            Lifecycle::Legacy(_) => Phase::Legacy,
            Lifecycle::ServerPhase(_) => Phase::ServerPhase,
            Lifecycle::AwaitingCertificates(_) => Phase::AwaitingCertificates,
            Lifecycle::UserPhase(_) => Phase::UserPhase,
            Lifecycle::Finalizing(_) => Phase::Finalizing,
            Lifecycle::Completed(_) => Phase::Completed,
        }
    }

    /// The run, for every phase but Legacy and Completed.
    #[must_use]
    pub fn run(&self) -> Option<RunId> {
        match self {
            Lifecycle::ServerPhase(s) => Some(s.run),
            Lifecycle::AwaitingCertificates(s) => Some(s.run),
            Lifecycle::UserPhase(s) => Some(s.run),
            Lifecycle::Finalizing(s) => Some(s.run),
            Lifecycle::Legacy(_) | Lifecycle::Completed(_) => None,
        }
    }

    /// Abort from any state before Finalizing.
    pub fn abort(self) -> Result<BeforeRun, TransitionError> {
        match self {
            Lifecycle::ServerPhase(s) => Ok(s.abort()),
            Lifecycle::AwaitingCertificates(s) => Ok(s.abort()),
            Lifecycle::UserPhase(s) => Ok(s.abort()),
            Lifecycle::Legacy(_) => Err(TransitionError::WrongPhase {
                expected: "a migration in progress",
                actual: Phase::Legacy,
            }),
            other => Err(TransitionError::TooLateToAbort(other.phase())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> RunId {
        RunId::from_bytes([7; 16])
    }

    #[test]
    fn only_the_exact_code_word_starts() {
        for wrong in [
            "start", "START", "Start ", " Start", "Start\n", "", "Starts", "yes",
        ] {
            assert_eq!(
                Legacy.start(wrong, &[], run()),
                Err(TransitionError::WrongCodeWord),
                "{wrong:?}"
            );
        }
        assert_eq!(
            Legacy.start("Start", &[], run()),
            Ok(ServerPhase { run: run() })
        );
    }

    #[test]
    fn a_completed_vault_starts_again_behind_the_same_guards() {
        assert_eq!(
            Completed.start("start", &[], run()),
            Err(TransitionError::WrongCodeWord)
        );
        let err = Completed
            .start("Start", &["legacy-data".into()], run())
            .unwrap_err();
        assert!(err.to_string().contains("legacy-data"), "{err}");
        let server = Completed.start("Start", &[], run()).unwrap();
        assert_eq!(server, ServerPhase { run: run() });
        let step = Transition::between(&Completed, &server);
        assert_eq!(
            (step.from(), step.to()),
            (Phase::Completed, Phase::ServerPhase)
        );
        // Its abort goes back to what was before the run, as any run's.
        assert_eq!(server.abort(), BeforeRun);
    }

    #[test]
    fn blocking_checks_refuse_the_start_by_name() {
        let err = Legacy
            .start("Start", &["certificates".into()], run())
            .unwrap_err();
        assert!(err.to_string().contains("certificates"));
    }

    #[test]
    fn finalize_guards_name_what_holds_it_up() {
        let phase = UserPhase { run: run() };
        let facts = FinalizeFacts {
            pending: 7,
            first_pending: vec!["alice".into(), "bob".into()],
            ..FinalizeFacts::default()
        };
        let err = phase.finalize(&facts).unwrap_err();
        assert_eq!(
            err.to_string(),
            "7 principal(s) still pending: alice, bob and 5 more"
        );
        let facts = FinalizeFacts {
            unresolved_non_migratable: 1,
            first_unresolved: vec![GrantId::from_bytes([1; 16])],
            ..FinalizeFacts::default()
        };
        assert!(matches!(
            phase.finalize(&facts),
            Err(TransitionError::NonMigratableUnresolved { .. })
        ));
        let facts = FinalizeFacts {
            servers_without_new_certificates: vec!["srv-2".into()],
            ..FinalizeFacts::default()
        };
        assert!(
            phase
                .finalize(&facts)
                .unwrap_err()
                .to_string()
                .contains("srv-2")
        );
        assert_eq!(
            phase.finalize(&FinalizeFacts::default()),
            Ok(Finalizing { run: run() })
        );
    }

    #[test]
    fn abort_is_possible_until_finalizing() {
        for phase in [
            Phase::ServerPhase,
            Phase::AwaitingCertificates,
            Phase::UserPhase,
        ] {
            let state = Lifecycle::load(phase, Some(run()), vec![]).unwrap();
            assert_eq!(state.abort(), Ok(BeforeRun));
        }
        for phase in [Phase::Finalizing, Phase::Completed] {
            let state = Lifecycle::load(phase, Some(run()), vec![]).unwrap();
            assert_eq!(state.abort(), Err(TransitionError::TooLateToAbort(phase)));
        }
        assert!(Lifecycle::load(Phase::UserPhase, None, vec![]).is_none());
    }

    #[test]
    fn load_and_phase_round_trip() {
        for &phase in Phase::ALL {
            let state = Lifecycle::load(phase, Some(run()), vec!["c".into()]).unwrap();
            assert_eq!(state.phase(), phase);
        }
    }

    #[test]
    fn certificates_flow() {
        let server = ServerPhase { run: run() };
        let waiting = server.certificates_missing(vec!["cert-a".into()]).unwrap();
        assert!(
            waiting
                .clone()
                .certificates_imported(vec!["cert-a".into()])
                .is_err()
        );
        let server = waiting.certificates_imported(vec![]).unwrap();
        assert!(
            server
                .server_keys_done(1, vec!["vault key".into()])
                .is_err()
        );
        assert_eq!(
            server.server_keys_done(0, vec![]),
            Ok(UserPhase { run: run() })
        );
        let fin = Finalizing { run: run() };
        assert!(fin.complete(3).is_err());
        assert_eq!(fin.complete(0), Ok(Completed));
    }
}
