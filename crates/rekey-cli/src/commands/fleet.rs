//! The commands that work on several vaults of a fleet file at once
//! (`--vault NAME…` or `--all`): init, preflight, start, status, finalize,
//! abort. The rules (all or nothing up to the code word, totals) live in
//! `rekey_engine::fleet`; this prints what it answers.

use super::{actor, prompt};
use crate::error::CliError;
use crate::output::Out;
use rekey_core::model::Phase;
use rekey_core::report::{FleetStartReport, FleetStatusReport, VaultStartOutcome};
use rekey_engine::{Engine, EngineError, Fleet, FleetEntry, FleetKeys, KeyDir, Names};
use serde::Serialize;
use std::fmt::Write;
use std::io::IsTerminal;

/// One vault's result of a command run on each vault in turn.
#[derive(Debug, Serialize)]
struct Each<T> {
    vault: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'static str>,
    exit_code: u8,
}

/// What a command run on each vault answers as JSON.
#[derive(Debug, Serialize)]
struct PerVault<T> {
    vaults: Vec<Each<T>>,
}

impl<T> PerVault<T> {
    /// The worst exit code (0 when every vault succeeded).
    fn exit_code(&self) -> u8 {
        self.vaults.iter().map(|v| v.exit_code).max().unwrap_or(0)
    }
}

fn each<T>(vault: &str, result: Result<(T, u8), CliError>) -> Each<T> {
    match result {
        Ok((report, exit_code)) => Each {
            vault: vault.to_owned(),
            report: Some(report),
            error: None,
            hint: None,
            exit_code,
        },
        Err(e) => Each {
            vault: vault.to_owned(),
            report: None,
            error: Some(e.to_string()),
            hint: e.hint(),
            exit_code: e.exit_code(),
        },
    }
}

fn per_vault_text<T>(r: &PerVault<T>, ok: impl Fn(&T) -> String) -> String {
    let mut t = String::new();
    for v in &r.vaults {
        match (&v.report, &v.error) {
            (Some(rep), _) => {
                let _ = writeln!(t, "{}: {}", v.vault, ok(rep).trim_end());
            }
            (None, Some(e)) => {
                let _ = writeln!(t, "{}: error: {e}", v.vault);
                if let Some(h) = v.hint {
                    let _ = writeln!(t, "{}  hint: {h}", " ".repeat(v.vault.len()));
                }
            }
            (None, None) => {}
        }
    }
    t
}

/// `rekey init --vault …`: creates (or upgrades) each vault.
pub(super) async fn init(out: Out, entries: &[FleetEntry]) -> Result<u8, CliError> {
    let mut vaults = Vec::new();
    for e in entries {
        let r = async {
            let keys = KeyDir::open(&e.key_dir)?;
            let engine = Engine::init(&e.db, Some(keys), actor()).await?;
            Ok::<_, CliError>((engine.vault_id().await?, 0))
        }
        .await;
        vaults.push(each(&e.name, r));
    }
    let report = PerVault { vaults };
    out.report(&report, |r| {
        per_vault_text(r, |id| format!("vault {id} ready"))
    });
    Ok(report.exit_code())
}

/// `rekey preflight --vault …`: each vault's report; the worst exit code.
pub(super) async fn preflight(
    out: Out,
    fleet: &Fleet,
    target: rekey_core::Target,
) -> Result<u8, CliError> {
    let mut vaults = Vec::new();
    let mut text = String::new();
    for (entry, engine) in fleet.members() {
        let r = engine.clone().with_target(target).preflight().await;
        if let Ok(report) = &r {
            let _ = writeln!(
                text,
                "== {} ==\n{}",
                entry.name,
                report.to_text().trim_end()
            );
        }
        let r = r.map_err(CliError::from).and_then(|report| {
            let doc: serde_json::Value = serde_json::from_str(&report.to_json())
                .map_err(|e| CliError::Io(format!("preflight report: {e}")))?;
            Ok((doc, report.exit_code()))
        });
        if let Err(e) = &r {
            let _ = writeln!(text, "== {} ==\nerror: {e}", entry.name);
        }
        vaults.push(each(&entry.name, r));
    }
    let report = PerVault { vaults };
    out.report(&report, |_| text.clone());
    Ok(report.exit_code())
}

/// `rekey start --vault …`: preflight everywhere, the code word once, each
/// vault in turn (see `rekey_engine::fleet`).
pub(super) async fn start(
    out: Out,
    fleet: &Fleet,
    code_word: Option<String>,
    target: Option<rekey_core::Target>,
) -> Result<u8, CliError> {
    // A code word given on the command line is checked before preflight
    // runs anywhere (cheap before expensive).
    if let Some(w) = &code_word {
        rekey_core::lifecycle::code_word_accepted(w).map_err(EngineError::from)?;
    }
    let plan = fleet.plan_start(target).await;
    let fresh = plan.fresh();
    let word = match code_word {
        Some(w) => w,
        None if plan.holding_back().is_empty() && !fresh.is_empty() => prompt(&format!(
            "Preflight passed on every vault. Type Start to put {} into migration mode (read-only until finalize): ",
            fresh.join(", ")
        ))?,
        None => String::new(),
    };
    let show = !out.is_json();
    let bars = std::sync::Mutex::new(std::collections::HashMap::new());
    let progress = |vault: &str, _service: &str, done: usize, total: usize| {
        if let Ok(mut bars) = bars.lock() {
            let bar = bars
                .entry(vault.to_owned())
                .or_insert_with(|| crate::progress::bar(format!("{vault}: server keys"), show));
            bar(done, total);
        }
    };
    let report = plan.start(&word, &progress).await?;
    out.report(&report, start_text);
    Ok(if report.all_started() {
        0
    } else if report.started_any {
        crate::error::code::OTHER
    } else {
        crate::error::code::REFUSED
    })
}

fn start_text(r: &FleetStartReport) -> String {
    let mut t = String::new();
    for v in &r.vaults {
        let line = match &v.outcome {
            VaultStartOutcome::Started { report } => format!(
                "started (run {}, target {}); phase: {}{}",
                report.run,
                report.target,
                report.phase,
                missing(report)
            ),
            VaultStartOutcome::Resumed { report } => format!(
                "resumed (run {}, target {}); phase: {}{}",
                report.run,
                report.target,
                report.phase,
                missing(report)
            ),
            VaultStartOutcome::AlreadyStarted { phase } => {
                format!("already started; phase: {phase} (nothing to do)")
            }
            VaultStartOutcome::Completed => "completed earlier (nothing to do)".to_owned(),
            VaultStartOutcome::Blocked { checks } => format!(
                "blocked by preflight: {} (`rekey preflight --vault {}` shows the remedies)",
                checks.join(", "),
                v.vault
            ),
            VaultStartOutcome::HeldBack { by } => format!(
                "ready, not started: {} must pass first (nothing was started anywhere)",
                by.join(", ")
            ),
            VaultStartOutcome::Failed { error } => format!("failed: {error}"),
        };
        let _ = writeln!(t, "{}: {line}", v.vault);
    }
    if !r.started_any
        && r.vaults.iter().any(|v| {
            matches!(
                v.outcome,
                VaultStartOutcome::Blocked { .. } | VaultStartOutcome::Failed { .. }
            )
        })
    {
        let _ = writeln!(
            t,
            "nothing was started; fix the vaults above and run the same command again"
        );
    } else if !r.all_started() {
        let _ = writeln!(
            t,
            "some vaults did not start; the others did: run the same command again once the failed ones are fixed"
        );
    }
    t
}

fn missing(r: &rekey_core::report::StartReport) -> String {
    match &r.server_phase {
        Some(s) if !s.missing_certificates.is_empty() => format!(
            "; missing certificate keys: {} (`rekey cert import`, then start again)",
            s.missing_certificates.join(", ")
        ),
        _ => String::new(),
    }
}

/// `rekey status --all`: one table, and `--watch` redraws it.
pub(super) async fn status(
    out: Out,
    fleet: &Fleet,
    all_pending: bool,
    watch: bool,
) -> Result<u8, CliError> {
    let names = if all_pending {
        Names::All
    } else {
        Names::First
    };
    loop {
        let report = fleet.status(names).await;
        if watch && !out.is_json() && std::io::stdout().is_terminal() {
            out.clear_screen();
        }
        let written = out.report(&report, status_text);
        let done = report.vaults.iter().all(|v| {
            v.status
                .as_ref()
                .is_some_and(|s| s.phase == Phase::Completed)
        });
        if !watch || !written || done {
            return Ok(if report.vaults.iter().any(|v| v.error.is_some()) {
                crate::error::code::DATABASE
            } else {
                0
            });
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(0),
        }
    }
}

fn minutes(m: Option<f64>) -> String {
    m.map_or_else(|| "-".to_owned(), |m| format!("{m:.1}"))
}

fn status_text(r: &FleetStatusReport) -> String {
    let mut t = String::new();
    let name_w = r
        .vaults
        .iter()
        .map(|v| v.vault.len())
        .chain([5])
        .max()
        .unwrap_or(5);
    let _ = writeln!(
        t,
        "{:<name_w$}  {:<22}  {:<20}  {:>15}  {:>11}  {:>19}  {:>8}  {:>8}",
        "VAULT", "PHASE", "TARGET", "USERS", "ROLES", "GRANTS", "RATE/min", "ETA min"
    );
    let pair =
        |c: rekey_core::model::Counts| format!("{}/{}", c.migrated, c.migrated + c.remaining);
    for v in &r.vaults {
        match (&v.status, &v.error) {
            (Some(s), _) => {
                let _ = writeln!(
                    t,
                    "{:<name_w$}  {:<22}  {:<20}  {:>15}  {:>11}  {:>19}  {:>8}  {:>8}",
                    v.vault,
                    s.phase.as_str(),
                    s.target.map_or("-", |t| t.name()),
                    pair(s.progress.users),
                    pair(s.progress.roles),
                    pair(s.progress.grants),
                    minutes(s.rate_principals_per_minute),
                    minutes(s.eta_minutes),
                );
            }
            (None, Some(e)) => {
                let _ = writeln!(t, "{:<name_w$}  error: {e}", v.vault);
            }
            (None, None) => {}
        }
    }
    let tot = &r.total;
    let _ = writeln!(
        t,
        "{:<name_w$}  {:<22}  {:<20}  {:>15}  {:>11}  {:>19}  {:>8}  {:>8}",
        "total",
        format!("{} of {} completed", tot.completed, tot.vaults),
        "",
        pair(tot.progress.users),
        pair(tot.progress.roles),
        pair(tot.progress.grants),
        minutes(tot.rate_principals_per_minute),
        minutes(tot.eta_minutes),
    );
    for v in &r.vaults {
        if let Some(s) = &v.status {
            if s.phase != Phase::Completed && s.phase != Phase::Legacy {
                let _ = writeln!(t, "{}: next: {}", v.vault, s.next_step);
            }
        }
    }
    t
}

/// `rekey finalize --vault …`: each vault in turn; the worst exit code.
pub(super) async fn finalize(out: Out, fleet: &Fleet) -> Result<u8, CliError> {
    let mut vaults = Vec::new();
    for (entry, engine) in fleet.members() {
        let count = crate::progress::counter("legacy rows deleted", !out.is_json());
        let r = engine
            .finalize(&count)
            .await
            .map(|r| (r, 0))
            .map_err(CliError::from);
        vaults.push(each(&entry.name, r));
    }
    let report = PerVault { vaults };
    out.report(&report, |r| {
        per_vault_text(r, |f| {
            format!(
                "finalized: {} legacy rows deleted; the vault is writable again",
                f.deleted_legacy_rows
            )
        })
    });
    Ok(report.exit_code())
}

/// `rekey abort --vault …`: asks once, aborts each vault in turn.
pub(super) async fn abort(out: Out, fleet: &Fleet, yes: bool) -> Result<u8, CliError> {
    if !yes {
        let names: Vec<&str> = fleet.members().map(|(e, _)| e.name.as_str()).collect();
        let a = prompt(&format!(
            "Abort the migration of {} and return to the keys each had before it started? Type yes: ",
            names.join(", ")
        ))?;
        if a != "yes" {
            return Err(CliError::Declined(
                "not aborted (the answer was not `yes`)".into(),
            ));
        }
    }
    let mut vaults = Vec::new();
    for (entry, engine) in fleet.members() {
        let r = engine.abort().await.map(|r| (r, 0)).map_err(CliError::from);
        vaults.push(each(&entry.name, r));
    }
    let report = PerVault { vaults };
    out.report(&report, |r| {
        per_vault_text(r, |a| {
            format!(
                "aborted (from {}): back to its {} state",
                a.from,
                if a.phase == rekey_core::model::Phase::Completed {
                    "completed previous migration's"
                } else {
                    "legacy"
                }
            )
        })
    });
    Ok(report.exit_code())
}

/// Opens the selected vaults (every one before any is used).
pub(super) async fn open(entries: Vec<FleetEntry>, keys: FleetKeys) -> Result<Fleet, CliError> {
    Ok(Fleet::open(entries, keys, &actor()).await?)
}
