//! The status page at `/`: server-rendered HTML of the engine's status
//! report (inline CSS, no external assets, refreshes itself every 2 s).
//! `GET /v1/migration/status` sends the same report as JSON.

use rekey_core::model::Counts;
use rekey_core::report::{History, StatusReport};
use std::fmt::Write;

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

const HEAD: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<meta name="viewport" content="width=device-width, initial-scale=1">
"#;

const STYLE: &str = r#"<style>
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
"#;

/// The status page of `s`, as served by the server named `server`.
#[must_use]
pub fn render_page(s: &StatusReport, server: &str) -> String {
    render(s, server, None)
}

/// The status page of vault `vault` on a server of several (at
/// `/vaults/{vault}`): the single-vault page with the vault's name and a
/// link back to the list of vaults. Its links are relative, so the pages
/// work behind a proxy that serves them under a path prefix.
#[must_use]
pub fn render_vault_page(s: &StatusReport, server: &str, vault: &str) -> String {
    render(s, server, Some(vault))
}

fn render(s: &StatusReport, server: &str, vault: Option<&str>) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str(HEAD);
    match vault {
        None => out.push_str("<title>rekey migration status</title>\n"),
        Some(v) => {
            let _ = writeln!(out, "<title>rekey migration status · {}</title>", escape(v));
        }
    }
    out.push_str(STYLE);
    match vault {
        None => out.push_str("<h1>rekey migration</h1>\n"),
        Some(v) => {
            let _ = writeln!(
                out,
                r#"<p class="sub"><a id="all-vaults" href="../">all vaults</a></p>
<h1>rekey migration · vault <span id="vault">{}</span></h1>"#,
                escape(v)
            );
        }
    }
    let target = s
        .target
        .map(|t| format!(r#" · target <b id="target">{t}</b>"#))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        r#"<p class="sub">server <b>{}</b> · phase <span class="phase" id="phase">{}</span>{target}</p>"#,
        escape(server),
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
        r#"<dt>run</dt><dd id="run">{}</dd><dt>rate</dt><dd id="rate">{}</dd><dt>estimate</dt><dd id="eta">{}</dd><dt>non-migratable</dt><dd id="non-migratable">{} unresolved</dd><dt>role members</dt><dd id="unconfirmed">{} unconfirmed</dd>"#,
        s.run
            .map_or_else(|| "not started".to_owned(), |r| r.to_string()),
        s.rate_principals_per_minute
            .map_or_else(|| "–".to_owned(), |r| format!("{r:.1} principals/min")),
        s.eta_minutes
            .map_or_else(|| "–".to_owned(), |e| format!("{e:.1} min left")),
        s.progress.unresolved_non_migratable,
        s.progress.unconfirmed_role_members
    );
    let _ = write!(
        out,
        r#"</dl></div>\n<div class="card next"><b>next step</b><p id="next-step">{}</p></div>"#,
        escape(&s.next_step)
    );
    if let Some(h) = &s.history {
        chart(&mut out, h);
    }
    out.push_str("\n<div class=\"card\"><b>pending</b>");
    if let Some(h) = &s.history {
        let minutes = h.window_seconds * h.bundles.len() as u64 / 60;
        let _ = write!(
            out,
            r#"<p class="sub" id="pending-since">each pending since the start, about {minutes} min ago</p>"#
        );
    }
    let nobody = if s.names_withheld {
        "names are shown to the administrator only (rekey status)"
    } else {
        "nobody"
    };
    list(&mut out, "pending", &s.pending, nobody);
    out.push_str("</div>\n<div class=\"card blockers\"><b>blockers</b>");
    list(&mut out, "blockers", &s.blockers, "none");
    out.push_str("</div>\n</body></html>\n");
    out
}

/// Bundles applied per window since the start, as an inline SVG bar chart
/// (no script, no external asset); each bar carries its count.
fn chart(out: &mut String, h: &History) {
    const W: f64 = 300.0;
    const H: f64 = 60.0;
    let max = h.bundles.iter().copied().max().unwrap_or(0).max(1) as f64;
    let n = h.bundles.len().max(1) as f64;
    let step = W / n;
    let minutes = (h.window_seconds / 60).max(1);
    let total: u64 = h.bundles.iter().sum();
    let _ = write!(
        out,
        r#"<div class="card"><b>bundles applied (server keys, then logins) per {minutes} min</b> <span class="sub" id="history-total">{total} since the start</span><svg id="history" viewBox="0 0 {W} {H}" width="100%" height="70" role="img" aria-label="bundles applied per {minutes} minutes since the start">"#
    );
    for (i, &c) in h.bundles.iter().enumerate() {
        let height = (c as f64 / max) * (H - 4.0);
        let _ = write!(
            out,
            r##"<rect data-count="{c}" x="{:.1}" y="{:.1}" width="{:.1}" height="{height:.1}" fill="#2f7d4f"><title>{c}</title></rect>"##,
            i as f64 * step + 1.0,
            H - height,
            (step - 2.0).max(1.0)
        );
    }
    out.push_str("</svg></div>");
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

/// One vault on the index page of a server of several: its name and its
/// public status, or `None` when its database does not answer.
pub type VaultRow<'a> = (&'a str, Option<&'a StatusReport>);

fn cell(out: &mut String, class: &str, c: Counts) {
    let total = c.migrated + c.remaining;
    let _ = write!(
        out,
        r#"<td class="{class}"><b class="migrated">{}</b> / <span class="total">{total}</span> migrated, <span class="remaining">{}</span> remaining</td>"#,
        c.migrated, c.remaining
    );
}

/// The index page of a server of several vaults (at `/`): one row per
/// vault with its phase, target and progress, linking to its page at
/// `vaults/{name}` (relative, as on [`render_vault_page`]). Names only
/// vaults, never principals.
#[must_use]
pub fn render_index(server: &str, vaults: &[VaultRow<'_>]) -> String {
    let mut out = String::with_capacity(2048 + 512 * vaults.len());
    out.push_str(HEAD);
    out.push_str("<title>rekey migration status · vaults</title>\n");
    out.push_str(STYLE);
    out.push_str("<style>table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e4e8ee}td{font-variant-numeric:tabular-nums;font-size:.9rem}th{color:#5b6675;font-weight:600}</style>\n");
    out.push_str("<h1>rekey migration</h1>\n");
    let _ = writeln!(
        out,
        r#"<p class="sub">server <b>{}</b> · <span id="vault-count">{}</span> vaults</p>"#,
        escape(server),
        vaults.len()
    );
    out.push_str(r#"<div class="card"><table id="vaults"><thead><tr><th>vault</th><th>phase</th><th>target</th><th>users</th><th>grants</th></tr></thead><tbody>"#);
    for (name, status) in vaults {
        let name = escape(name);
        let _ = write!(
            out,
            r#"<tr id="vault-{name}"><td><a class="vault" href="vaults/{name}">{name}</a></td>"#
        );
        match status {
            Some(s) => {
                let _ = write!(
                    out,
                    r#"<td><span class="phase">{}</span></td><td class="target">{}</td>"#,
                    s.phase.as_str(),
                    s.target.map_or_else(|| "–".to_owned(), |t| t.to_string())
                );
                cell(&mut out, "users", s.progress.users);
                cell(&mut out, "grants", s.progress.grants);
            }
            None => out.push_str(
                r#"<td class="unavailable" colspan="4">its database does not answer</td>"#,
            ),
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>\n</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_core::model::{Phase, Progress};

    #[test]
    fn page_escapes_names_and_shows_counts() {
        let s = StatusReport {
            history: None,
            phase: Phase::UserPhase,
            run: None,
            target: None,
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
            names_withheld: false,
            blockers: Vec::new(),
            next_step: "wait for <everyone>".into(),
        };
        let html = render_page(&s, "s&1");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("s&amp;1"));
        assert!(html.contains(r#"<b class="migrated">3</b> / <span class="total">4</span>"#));
        assert!(html.contains("user_phase"));
        assert!(
            !html.contains(r#"id="target""#),
            "no target before the start"
        );
        assert!(html.contains("2.0 principals/min"));
        assert!(html.contains("wait for &lt;everyone&gt;"));
        assert!(
            !html.contains(r#"id="history""#),
            "no chart before the start"
        );
    }

    #[test]
    fn the_chart_has_a_bar_per_window_scaled_to_the_busiest() {
        let s = StatusReport {
            history: Some(History {
                since: rekey_core::model::Timestamp(0),
                window_seconds: 120,
                bundles: vec![1, 0, 4, 2],
            }),
            phase: Phase::UserPhase,
            run: None,
            target: None,
            started_at: Some(rekey_core::model::Timestamp(0)),
            progress: Progress::default(),
            pending: Vec::new(),
            rate_principals_per_minute: None,
            eta_minutes: None,
            blocked: Vec::new(),
            names_withheld: true,
            blockers: Vec::new(),
            next_step: String::new(),
        };
        let html = render_page(&s, "s");
        assert_eq!(html.matches("<rect ").count(), 4);
        assert!(
            html.contains(r#"<rect data-count="4" x="151.0" y="4.0" width="73.0" height="56.0""#),
            "{html}"
        );
        assert!(
            html.contains(r#"<rect data-count="0" x="76.0" y="60.0""#),
            "{html}"
        );
        assert!(html.contains("per 2 min"));
        assert!(html.contains(">7 since the start<"));
        assert!(html.contains("about 8 min ago"));
    }
}
