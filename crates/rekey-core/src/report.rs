//! What the engine's operations answer, as plain data. The command line
//! prints these (`--format json` serializes them as they are) and the HTTP
//! server sends them, so the same question gets the same JSON from both;
//! the HTTP client reads them back.

use crate::ids::{PrincipalId, RunId};
use crate::model::{Counts, Phase, Progress, Timestamp};
use serde::{Deserialize, Serialize};

/// Names listed in a status by default (`rekey status --all-pending` lists all).
pub const NAMES_LISTED: u64 = 20;

/// Where the migration stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    /// The phase.
    pub phase: Phase,
    /// The run, once started.
    pub run: Option<RunId>,
    /// The run's target, once started: the kind of the new keys.
    pub target: Option<crate::Target>,
    /// When the run started (ms since the epoch).
    pub started_at: Option<Timestamp>,
    /// Migrated versus remaining.
    pub progress: Progress,
    /// The first pending principals by name (each pending since
    /// `started_at`). Empty when names are withheld (the public status).
    pub pending: Vec<String>,
    /// The first blocked principals by name (they can never log in).
    pub blocked: Vec<String>,
    /// Whether `pending` and `blocked` were left empty on purpose: the
    /// public status shows counts only.
    pub names_withheld: bool,
    /// Principals migrated per minute since the start.
    pub rate_principals_per_minute: Option<f64>,
    /// Minutes left at that rate.
    pub eta_minutes: Option<f64>,
    /// What stops the next step, in words (counts, never names).
    pub blockers: Vec<String>,
    /// What the operator does next, in words.
    pub next_step: String,
    /// Bundles applied over time since the start (the status page's
    /// chart); `None` before the start.
    pub history: Option<History>,
}

/// Bundles applied (the server phase's, then the logins') per window of
/// time since the start: at most [`History::MAX_WINDOWS`] windows of a
/// minute or more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct History {
    /// The start of the first window.
    pub since: Timestamp,
    /// Each window's length in seconds.
    pub window_seconds: u64,
    /// Bundles applied in each window, oldest first; the last window is
    /// the current one.
    pub bundles: Vec<u64>,
}

impl History {
    /// The most windows a history has.
    pub const MAX_WINDOWS: usize = 30;

    /// The windows for a run started at `since`, seen at `now`: one minute
    /// each, longer once a run outgrows [`Self::MAX_WINDOWS`] minutes.
    /// Answers (window length in ms, number of windows).
    #[must_use]
    pub fn windows(since: Timestamp, now: Timestamp) -> (i64, usize) {
        let elapsed = (now.0 - since.0).max(1);
        let max = Self::MAX_WINDOWS as i64;
        let width = (60_000_i64).max((elapsed + max - 1) / max);
        let count = ((elapsed + width - 1) / width).clamp(1, max);
        (width, usize::try_from(count).unwrap_or(1))
    }
}

impl StatusReport {
    /// The same status without any principal's name: what anyone may see.
    #[must_use]
    pub fn without_names(mut self) -> Self {
        self.pending.clear();
        self.blocked.clear();
        self.names_withheld = true;
        self
    }
}

/// Rate (principals per minute since `started_at`) and estimate (minutes
/// left at that rate) at `now`; `None` before the start, and no estimate
/// while nothing has migrated.
#[must_use]
pub fn rate_and_estimate(
    started_at: Option<Timestamp>,
    now: Timestamp,
    migrated: u64,
    remaining: u64,
) -> (Option<f64>, Option<f64>) {
    let Some(start) = started_at else {
        return (None, None);
    };
    // At least one second, so a status read right after the start does not
    // divide by zero.
    let minutes = ((now.0 - start.0) as f64 / 60_000.0).max(1.0 / 60.0);
    let rate = migrated as f64 / minutes;
    let eta = (rate > 0.0).then(|| remaining as f64 / rate);
    (Some(rate), eta)
}

/// What `rekey start --vault …` (or `--all`) did to each vault of a fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetStartReport {
    /// Whether any vault started or resumed. `false` when a vault held the
    /// fleet back: then nothing changed anywhere.
    pub started_any: bool,
    /// One entry per selected vault, in fleet-file order.
    pub vaults: Vec<VaultStart>,
}

impl FleetStartReport {
    /// Whether every vault is started (or past its start, or done).
    #[must_use]
    pub fn all_started(&self) -> bool {
        self.vaults.iter().all(|v| {
            matches!(
                v.outcome,
                VaultStartOutcome::Started { .. }
                    | VaultStartOutcome::Resumed { .. }
                    | VaultStartOutcome::AlreadyStarted { .. }
                    | VaultStartOutcome::Completed
            )
        })
    }
}

/// One vault's part of a [`FleetStartReport`]. (Not `deny_unknown_fields`:
/// serde cannot combine it with the flattened outcome.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaultStart {
    /// The vault's name in the fleet file.
    pub vault: String,
    /// What happened to it.
    #[serde(flatten)]
    pub outcome: VaultStartOutcome,
}

/// What happened to one vault of a fleet start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum VaultStartOutcome {
    /// Started now (the code word was given).
    Started {
        /// What its start did.
        report: StartReport,
    },
    /// Its server phase resumed (it had started before).
    Resumed {
        /// What the resumed start did.
        report: StartReport,
    },
    /// Already past its server phase: nothing to start.
    AlreadyStarted {
        /// Where it is.
        phase: Phase,
    },
    /// Already migrated and finalized: nothing to start.
    Completed,
    /// Preflight blocks it: nothing started anywhere.
    Blocked {
        /// The checks that block.
        checks: Vec<String>,
    },
    /// Ready, but not started because other vaults blocked or failed.
    HeldBack {
        /// The vaults that held it back.
        by: Vec<String>,
    },
    /// It could not be checked or started (the error, in words).
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// `rekey status --all`: every vault of a fleet and the totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetStatusReport {
    /// One entry per selected vault, in fleet-file order.
    pub vaults: Vec<VaultStatus>,
    /// Summed over the vaults whose status could be read.
    pub total: FleetTotals,
}

/// One vault's part of a [`FleetStatusReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultStatus {
    /// The vault's name in the fleet file.
    pub vault: String,
    /// Its status, when it could be read.
    pub status: Option<StatusReport>,
    /// Why it could not be read.
    pub error: Option<String>,
}

/// The totals of a [`FleetStatusReport`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetTotals {
    /// Vaults counted.
    pub vaults: u64,
    /// Vaults whose migration is completed.
    pub completed: u64,
    /// Users, roles, services and grants summed.
    pub progress: Progress,
    /// Principals migrated per minute, summed over the vaults migrating.
    pub rate_principals_per_minute: Option<f64>,
    /// Minutes until the slowest vault is done at its own rate (`None`
    /// while a vault that has work left has no estimate: not started yet,
    /// or nobody migrated yet).
    pub eta_minutes: Option<f64>,
    #[serde(skip)]
    eta_unknown: bool,
}

impl FleetTotals {
    /// Counts one vault's status in.
    pub fn add(&mut self, s: &StatusReport) {
        fn sum(a: &mut Counts, b: &Counts) {
            a.migrated += b.migrated;
            a.remaining += b.remaining;
        }
        self.vaults += 1;
        if s.phase == Phase::Completed {
            self.completed += 1;
        }
        let p = &mut self.progress;
        sum(&mut p.users, &s.progress.users);
        sum(&mut p.roles, &s.progress.roles);
        sum(&mut p.services, &s.progress.services);
        sum(&mut p.grants, &s.progress.grants);
        p.blocked += s.progress.blocked;
        p.unresolved_non_migratable += s.progress.unresolved_non_migratable;
        p.unconfirmed_role_members += s.progress.unconfirmed_role_members;
        if s.phase.is_read_only() {
            if let Some(r) = s.rate_principals_per_minute {
                *self.rate_principals_per_minute.get_or_insert(0.0) += r;
            }
        }
        if s.phase != Phase::Completed {
            // A vault not started yet has work left and no rate: the
            // fleet's end cannot be estimated.
            let left = s.progress.users.remaining
                + s.progress.roles.remaining
                + s.progress.services.remaining;
            match s.eta_minutes.filter(|_| s.phase.is_read_only()) {
                Some(m) => self.eta_minutes = Some(self.eta_minutes.map_or(m, |e| e.max(m))),
                None if left > 0 => self.eta_unknown = true,
                None => {}
            }
        }
    }

    /// Ends the counting: an estimate is only given when every vault with
    /// work left has one.
    pub fn finish(&mut self) {
        if self.eta_unknown {
            self.eta_minutes = None;
        }
    }
}

/// What the server phase did (run by `start`, or resumed by it). The
/// default is a server phase that has done nothing yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServerPhaseReport {
    /// Server-held principals migrated now, by name.
    pub migrated: Vec<String>,
    /// Principals migrated along with them (managed users, and roles
    /// reached through them).
    pub migrated_along: usize,
    /// Grants re-wrapped.
    pub grants: usize,
    /// Certificates whose private key is missing from the key directory
    /// (the vault then waits in `awaiting_certificates`).
    pub missing_certificates: Vec<String>,
    /// The phase afterwards.
    pub phase: Phase,
}

impl Default for ServerPhaseReport {
    fn default() -> Self {
        Self {
            migrated: Vec::new(),
            migrated_along: 0,
            grants: 0,
            missing_certificates: Vec::new(),
            phase: Phase::ServerPhase,
        }
    }
}

/// What `start` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartReport {
    /// The run.
    pub run: RunId,
    /// The run's target: the kind of every new key pair.
    pub target: crate::Target,
    /// Whether this resumed a migration started earlier (after a crash or a
    /// certificate import) instead of starting one.
    pub resumed: bool,
    /// Users who can never log in (deactivated, deleted), by name.
    pub blocked_users: Vec<String>,
    /// Purged users (exempt from the migration).
    pub exempt: usize,
    /// The server phase, when the key directory was there to run it.
    pub server_phase: Option<ServerPhaseReport>,
    /// The phase afterwards.
    pub phase: Phase,
}

/// What `finalize` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FinalizeReport {
    /// Legacy rows deleted (by this run of finalize).
    pub deleted_legacy_rows: u64,
    /// The phase afterwards (`completed`).
    pub phase: Phase,
}

/// What `abort` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AbortReport {
    /// The phase the migration was in.
    pub from: Phase,
    /// The phase afterwards (`legacy`).
    pub phase: Phase,
}

/// What applying one bundle did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApplyReport {
    /// Principals migrated.
    pub principals: Vec<PrincipalId>,
    /// Grants written (re-wrapped and holder grants).
    pub grants: usize,
    /// Grants listed as non-migratable.
    pub non_migratable: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_windows_are_a_minute_until_thirty_then_grow() {
        let at = |ms: i64| History::windows(Timestamp(1_000), Timestamp(1_000 + ms));
        assert_eq!(at(0), (60_000, 1));
        assert_eq!(at(59_999), (60_000, 1));
        assert_eq!(at(60_001), (60_000, 2));
        assert_eq!(at(30 * 60_000), (60_000, 30));
        assert_eq!(at(60 * 60_000), (120_000, 30));
        assert_eq!(at(-5), (60_000, 1), "a clock step back");
    }

    #[test]
    fn rate_counts_from_the_start_and_estimates_what_is_left() {
        let start = Timestamp(1_000_000);
        assert_eq!(rate_and_estimate(None, start, 5, 5), (None, None));
        // 30 migrated in 10 minutes: 3 a minute; 60 left take 20 minutes.
        let (rate, eta) = rate_and_estimate(Some(start), Timestamp(1_000_000 + 600_000), 30, 60);
        assert_eq!(rate, Some(3.0));
        assert_eq!(eta, Some(20.0));
        // Nothing migrated yet: a rate of zero and no estimate.
        let (rate, eta) = rate_and_estimate(Some(start), Timestamp(1_000_000 + 600_000), 0, 60);
        assert_eq!((rate, eta), (Some(0.0), None));
        // Read in the same millisecond as the start: no division by zero.
        let (rate, _) = rate_and_estimate(Some(start), start, 1, 0);
        assert_eq!(rate, Some(60.0));
    }

    #[test]
    fn the_public_status_keeps_counts_and_drops_names() {
        let s = StatusReport {
            history: None,
            phase: Phase::UserPhase,
            run: None,
            target: None,
            started_at: None,
            progress: Progress {
                blocked: 1,
                ..Progress::default()
            },
            pending: vec!["alice".into()],
            blocked: vec!["mallory".into()],
            names_withheld: false,
            rate_principals_per_minute: None,
            eta_minutes: None,
            blockers: vec!["1 principal can never log in".into()],
            next_step: "wait".into(),
        };
        let public = s.without_names();
        assert!(public.pending.is_empty() && public.blocked.is_empty());
        assert!(public.names_withheld);
        assert_eq!(public.progress.blocked, 1);
        let text = serde_json::to_string(&public).unwrap();
        assert!(
            !text.contains("alice") && !text.contains("mallory"),
            "{text}"
        );
        assert!(text.contains("can never log in"), "{text}");
    }

    #[test]
    fn a_fleet_start_report_reads_back_as_it_was_written() {
        let report = FleetStartReport {
            started_any: false,
            vaults: vec![
                VaultStart {
                    vault: "a".into(),
                    outcome: VaultStartOutcome::HeldBack {
                        by: vec!["b".into()],
                    },
                },
                VaultStart {
                    vault: "b".into(),
                    outcome: VaultStartOutcome::Blocked {
                        checks: vec!["certificates".into()],
                    },
                },
            ],
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["vaults"][0]["outcome"], "held_back");
        assert_eq!(json["vaults"][1]["checks"][0], "certificates");
        let back: FleetStartReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
        assert!(!back.all_started());
    }
}
