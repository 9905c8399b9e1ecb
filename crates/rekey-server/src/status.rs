//! The migration status: `GET /v1/migration/status` (JSON, the same
//! fields `rekey status --format json` prints, plus what the status page
//! shows) and the page at `/` (server-rendered HTML, inline CSS, no
//! external assets, refreshes itself every 2 s).

use crate::error::ServerError;
use crate::state::AppState;
use rekey_core::RunId;
use rekey_core::model::{Counts, MigrationState, Phase, Progress, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// Pending names listed.
pub const PENDING_SHOWN: u64 = 20;

/// The migration status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationStatus {
    /// The phase.
    pub phase: Phase,
    /// The run, once started.
    pub run: Option<RunId>,
    /// When it started (ms since the epoch).
    pub started_at: Option<Timestamp>,
    /// Migrated versus remaining.
    pub progress: Progress,
    /// The first pending principals, by name (at most [`PENDING_SHOWN`]).
    pub pending: Vec<String>,
    /// Principals migrated per minute since the start.
    pub rate_principals_per_minute: Option<f64>,
    /// Minutes left at that rate.
    pub eta_minutes: Option<f64>,
    /// The first blocked principals (they can never log in), by name.
    pub blocked: Vec<String>,
    /// What stops the next step, in words (preflight blockers before the
    /// start, blocked principals, unresolved non-migratable grants, missing
    /// certificate keys).
    pub blockers: Vec<String>,
    /// The server answering.
    pub server: String,
}

/// Loads the status from the vault.
pub async fn load(state: &AppState) -> Result<MigrationStatus, ServerError> {
    let vault = state.engine().vault();
    let row = vault.migration().await.map_err(ServerError::from_storage)?;
    let progress = vault.progress().await.map_err(ServerError::from_storage)?;
    let names = |ps: Vec<rekey_core::model::Principal>| ps.into_iter().map(|p| p.name).collect();
    let pending: Vec<String> = names(
        vault
            .principals_in_state(MigrationState::Pending, None, PENDING_SHOWN)
            .await
            .map_err(ServerError::from_storage)?,
    );
    let blocked: Vec<String> = names(
        vault
            .principals_in_state(MigrationState::Blocked, None, PENDING_SHOWN)
            .await
            .map_err(ServerError::from_storage)?,
    );
    let elapsed_min = row
        .started_at
        .map(|s| ((Timestamp::now().0 - s.0) as f64 / 60_000.0).max(1.0 / 60.0));
    let p = &progress;
    let migrated = p.users.migrated + p.roles.migrated + p.services.migrated;
    let remaining = p.users.remaining + p.roles.remaining + p.services.remaining;
    let rate = elapsed_min.map(|m| migrated as f64 / m);
    let eta = rate.filter(|r| *r > 0.0).map(|r| remaining as f64 / r);

    let mut blockers = Vec::new();
    if row.phase == Phase::Legacy {
        match state.preflight_blocking() {
            Some(b) if !b.is_empty() => {
                blockers.push(format!(
                    "preflight checks block the start: {}",
                    b.join(", ")
                ));
            }
            Some(_) => {}
            None => blockers.push("no preflight run by this server yet".to_owned()),
        }
    }
    if p.blocked > 0 {
        blockers.push(format!(
            "{} principal(s) can never log in (deactivated or deleted): {}",
            p.blocked,
            blocked.join(", ")
        ));
    }
    if p.unresolved_non_migratable > 0 {
        blockers.push(format!(
            "{} non-migratable grant(s) not resolved (POST /v1/admin/non-migratable/{{grant}}/resolve)",
            p.unresolved_non_migratable
        ));
    }
    if row.phase == Phase::AwaitingCertificates {
        if let Some(keys) = state.engine().key_dir() {
            let missing = state
                .engine()
                .missing_certificates(keys)
                .await
                .map_err(ServerError::from_admin_engine)?;
            for m in missing {
                blockers.push(format!(
                    "certificate key missing from the key directory: {m}"
                ));
            }
        }
    }
    Ok(MigrationStatus {
        phase: row.phase,
        run: row.run,
        started_at: row.started_at,
        progress,
        pending,
        rate_principals_per_minute: rate,
        eta_minutes: eta,
        blocked,
        blockers,
        server: state.name().to_owned(),
    })
}

/// Escapes text for HTML.
#[must_use]
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn bar(out: &mut String, id: &str, label: &str, c: Counts) {
    let total = c.migrated + c.remaining;
    let pct = if total == 0 {
        100.0
    } else {
        c.migrated as f64 * 100.0 / total as f64
    };
    let _ = write!(
        out,
        r#"<div class="row" id="{id}"><span class="label">{label}</span><div class="bar" role="progressbar" aria-valuenow="{pct:.0}" aria-valuemin="0" aria-valuemax="100"><div class="fill" style="width:{pct:.1}%"></div></div><span class="count"><b class="migrated">{}</b> / <span class="total">{total}</span> migrated, <span class="remaining">{}</span> remaining</span></div>"#,
        c.migrated, c.remaining
    );
}

/// The status page.
#[must_use]
pub fn render_page(s: &MigrationStatus) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str(r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rekey migration status</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:52rem;padding:0 1rem;color:#1d2530;background:#f6f7f9}
h1{font-size:1.4rem;margin-bottom:.2rem}.sub{color:#5b6675;margin-top:0}
.phase{display:inline-block;padding:.15rem .6rem;border-radius:1rem;background:#243b6b;color:#fff;font-weight:600}
.card{background:#fff;border:1px solid #dde2e8;border-radius:.5rem;padding:1rem 1.2rem;margin:1rem 0}
.row{display:grid;grid-template-columns:8rem 1fr 17rem;gap:.8rem;align-items:center;margin:.5rem 0}
.bar{height:.9rem;background:#e4e8ee;border-radius:.45rem;overflow:hidden}.fill{height:100%;background:#2f7d4f}
.count{font-variant-numeric:tabular-nums;font-size:.9rem}.label{font-weight:600}
ul{margin:.3rem 0;padding-left:1.2rem}.blockers li{color:#9b2c2c}.none{color:#5b6675}
dl{display:grid;grid-template-columns:10rem 1fr;margin:0}dt{color:#5b6675}dd{margin:0;font-variant-numeric:tabular-nums}
</style></head><body>
<h1>rekey migration</h1>
"#);
    let _ = writeln!(
        out,
        r#"<p class="sub">server <b>{}</b> · phase <span class="phase" id="phase">{}</span></p>"#,
        escape(&s.server),
        s.phase.as_str()
    );
    out.push_str(r#"<div class="card">"#);
    bar(&mut out, "users", "users", s.progress.users);
    bar(&mut out, "roles", "roles", s.progress.roles);
    bar(&mut out, "server-keys", "server keys", s.progress.services);
    bar(&mut out, "grants", "grants", s.progress.grants);
    out.push_str("</div>\n<div class=\"card\"><dl>");
    let _ = write!(
        out,
        r#"<dt>run</dt><dd id="run">{}</dd><dt>rate</dt><dd id="rate">{}</dd><dt>estimate</dt><dd id="eta">{}</dd><dt>non-migratable</dt><dd id="non-migratable">{} unresolved</dd>"#,
        s.run
            .map_or_else(|| "not started".to_owned(), |r| r.to_string()),
        s.rate_principals_per_minute
            .map_or_else(|| "–".to_owned(), |r| format!("{r:.1} principals/min")),
        s.eta_minutes
            .map_or_else(|| "–".to_owned(), |e| format!("{e:.1} min left")),
        s.progress.unresolved_non_migratable
    );
    out.push_str("</dl></div>\n<div class=\"card\"><b>pending</b>");
    list(&mut out, "pending", &s.pending, "nobody");
    out.push_str("</div>\n<div class=\"card blockers\"><b>blockers</b>");
    list(&mut out, "blockers", &s.blockers, "none");
    out.push_str("</div>\n</body></html>\n");
    out
}

fn list(out: &mut String, id: &str, items: &[String], empty: &str) {
    if items.is_empty() {
        let _ = write!(out, r#"<p class="none" id="{id}">{empty}</p>"#);
        return;
    }
    let _ = write!(out, r#"<ul id="{id}">"#);
    for i in items {
        let _ = write!(out, "<li>{}</li>", escape(i));
    }
    out.push_str("</ul>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_escapes_names_and_shows_counts() {
        let s = MigrationStatus {
            phase: Phase::UserPhase,
            run: None,
            started_at: None,
            progress: Progress {
                users: Counts {
                    migrated: 3,
                    remaining: 1,
                },
                ..Progress::default()
            },
            pending: vec!["<script>alert(1)</script>".into()],
            rate_principals_per_minute: Some(2.0),
            eta_minutes: Some(0.5),
            blocked: Vec::new(),
            blockers: Vec::new(),
            server: "s&1".into(),
        };
        let html = render_page(&s);
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("s&amp;1"));
        assert!(html.contains(r#"<b class="migrated">3</b> / <span class="total">4</span>"#));
        assert!(html.contains("user_phase"));
        assert!(html.contains("2.0 principals/min"));
    }
}
