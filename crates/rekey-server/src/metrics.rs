//! In-memory counters for `/metrics`: bundles applied and refused (by
//! reason), and a request latency histogram per route, all atomics. The
//! vault's own numbers (principals and grants by state) are read from the
//! vault when `/metrics` is scraped.

use crate::error::REFUSAL_REASONS;
use crate::routes::ROUTES;
use rekey_core::model::Progress;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
struct Histogram {
    /// One count per bucket (not cumulative), then +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// The server's counters (of one vault, when a process serves several).
#[derive(Debug)]
pub struct Metrics {
    /// One histogram per route of the table it was made for ([`ROUTES`],
    /// or the process routes of a [`crate::VaultSet`]), in order.
    latency: Vec<Histogram>,
    applied: AtomicU64,
    grants_applied: AtomicU64,
    refused: [AtomicU64; REFUSAL_REASONS.len()],
    logins: [AtomicU64; LOGIN_OUTCOMES.len()],
}

/// How a client login ends: a session, wrong credentials, or refused
/// unheard past the failure limit.
pub const LOGIN_OUTCOMES: [&str; 3] = ["opened", "refused", "limited"];

impl Default for Metrics {
    fn default() -> Self {
        Self::for_routes(ROUTES.len())
    }
}

/// One vault's numbers in a scrape.
pub(crate) struct Scrape<'a> {
    /// Its name, as the `vault` label (none on a single-vault server).
    pub(crate) vault: Option<&'a str>,
    /// Its counters.
    pub(crate) metrics: &'a Metrics,
    /// Its principals and grants by state, if its status could be read.
    pub(crate) progress: Option<&'a Progress>,
    /// Its phase, if its status could be read.
    pub(crate) phase: Option<&'a str>,
}

/// One latency histogram in a scrape: route `index` of the table
/// `metrics` was made for, labelled with `method` and `route`.
pub(crate) struct Latency<'a> {
    pub(crate) vault: Option<&'a str>,
    pub(crate) method: &'a str,
    pub(crate) route: &'a str,
    pub(crate) metrics: &'a Metrics,
    pub(crate) index: usize,
}

impl Metrics {
    /// Counters with a latency histogram for each of `routes` routes.
    pub(crate) fn for_routes(routes: usize) -> Self {
        Self {
            latency: (0..routes).map(|_| Histogram::default()).collect(),
            applied: AtomicU64::new(0),
            grants_applied: AtomicU64::new(0),
            refused: Default::default(),
            logins: Default::default(),
        }
    }

    /// Records the latency of a request to route `index` of [`ROUTES`].
    pub(crate) fn observe(&self, index: usize, d: Duration) {
        if let Some(h) = self.latency.get(index) {
            h.observe(d);
        }
    }

    /// A bundle was applied.
    pub(crate) fn applied(&self, grants: usize) {
        self.applied.fetch_add(1, Ordering::Relaxed);
        self.grants_applied
            .fetch_add(grants as u64, Ordering::Relaxed);
    }

    /// A bundle was refused.
    pub(crate) fn refused(&self, reason: &str) {
        let i = REFUSAL_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(REFUSAL_REASONS.len() - 1);
        self.refused[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A client login ended with `outcome` (one of [`LOGIN_OUTCOMES`]).
    pub(crate) fn login(&self, outcome: &str) {
        if let Some(i) = LOGIN_OUTCOMES.iter().position(|o| *o == outcome) {
            self.logins[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Bundles applied so far.
    #[must_use]
    pub fn bundles_applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// Bundles refused so far for `reason`.
    #[must_use]
    pub fn bundles_refused(&self, reason: &str) -> u64 {
        REFUSAL_REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.refused[i].load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition (format 0.0.4) of a single-vault
    /// server.
    #[must_use]
    pub fn render(&self, progress: Option<&Progress>, phase: Option<&str>) -> String {
        let latency: Vec<Latency<'_>> = ROUTES
            .iter()
            .enumerate()
            .map(|(index, route)| Latency {
                vault: None,
                method: route.method.as_str(),
                route: route.path,
                metrics: self,
                index,
            })
            .collect();
        exposition(
            &[Scrape {
                vault: None,
                metrics: self,
                progress,
                phase,
            }],
            &latency,
        )
    }
}

/// The Prometheus text exposition (format 0.0.4) of `vaults` and the
/// `latency` histograms: each family's `HELP` and `TYPE` once, then its
/// series, each vault's with its `vault` label.
pub(crate) fn exposition(vaults: &[Scrape<'_>], latency: &[Latency<'_>]) -> String {
    let mut out = String::new();
    render_progress(&mut out, vaults);
    render_phase(&mut out, vaults);
    render_bundles(&mut out, vaults);
    render_logins(&mut out, vaults);
    render_latency(&mut out, latency);
    out
}

/// A series' labels: `vault` first when there is one, then `rest`; in
/// braces, or nothing when there are none. (Vault names are checked to be
/// `[a-z0-9_-]`, so they need no escaping.)
fn labels(vault: Option<&str>, rest: &str) -> String {
    match (vault, rest.is_empty()) {
        (None, true) => String::new(),
        (None, false) => format!("{{{rest}}}"),
        (Some(v), true) => format!("{{vault=\"{v}\"}}"),
        (Some(v), false) => format!("{{vault=\"{v}\",{rest}}}"),
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

fn render_bundles(out: &mut String, vaults: &[Scrape<'_>]) {
    family(
        out,
        "rekey_bundles_applied_total",
        "counter",
        "Bundles checked and applied.",
    );
    for s in vaults {
        let _ = writeln!(
            out,
            "rekey_bundles_applied_total{} {}",
            labels(s.vault, ""),
            s.metrics.bundles_applied()
        );
    }
    family(
        out,
        "rekey_bundle_grants_applied_total",
        "counter",
        "Grants written by applied bundles.",
    );
    for s in vaults {
        let _ = writeln!(
            out,
            "rekey_bundle_grants_applied_total{} {}",
            labels(s.vault, ""),
            s.metrics.grants_applied.load(Ordering::Relaxed)
        );
    }
    family(
        out,
        "rekey_bundles_refused_total",
        "counter",
        "Bundles refused, by reason.",
    );
    for s in vaults {
        for (i, reason) in REFUSAL_REASONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "rekey_bundles_refused_total{} {}",
                labels(s.vault, &format!("reason=\"{reason}\"")),
                s.metrics.refused[i].load(Ordering::Relaxed)
            );
        }
    }
}

fn render_logins(out: &mut String, vaults: &[Scrape<'_>]) {
    family(
        out,
        "rekey_logins_total",
        "counter",
        "Client logins (POST /v1/session), by outcome.",
    );
    for s in vaults {
        for (i, outcome) in LOGIN_OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "rekey_logins_total{} {}",
                labels(s.vault, &format!("outcome=\"{outcome}\"")),
                s.metrics.logins[i].load(Ordering::Relaxed)
            );
        }
    }
}

fn render_latency(out: &mut String, series: &[Latency<'_>]) {
    family(
        out,
        "rekey_http_request_duration_seconds",
        "histogram",
        "Request latency by route.",
    );
    for l in series {
        let Some(h) = l.metrics.latency.get(l.index) else {
            continue;
        };
        let route = format!("method=\"{}\",route=\"{}\"", l.method, l.route);
        let mut cumulative = 0u64;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += h.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "rekey_http_request_duration_seconds_bucket{} {cumulative}",
                labels(l.vault, &format!("{route},le=\"{bound}\""))
            );
        }
        cumulative += h.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "rekey_http_request_duration_seconds_bucket{} {cumulative}",
            labels(l.vault, &format!("{route},le=\"+Inf\""))
        );
        let _ = writeln!(
            out,
            "rekey_http_request_duration_seconds_sum{} {}",
            labels(l.vault, &route),
            h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "rekey_http_request_duration_seconds_count{} {}",
            labels(l.vault, &route),
            h.count.load(Ordering::Relaxed)
        );
    }
}

/// The vaults' principals and grants by state (of those whose status could
/// be read).
fn render_progress(out: &mut String, vaults: &[Scrape<'_>]) {
    let read: Vec<(Option<&str>, &Progress)> = vaults
        .iter()
        .filter_map(|s| s.progress.map(|p| (s.vault, p)))
        .collect();
    if read.is_empty() {
        return;
    }
    family(
        out,
        "rekey_principals",
        "gauge",
        "Principals by kind and migration state.",
    );
    for (vault, p) in &read {
        for (kind, c) in [
            ("user", p.users),
            ("role", p.roles),
            ("service", p.services),
        ] {
            for (state, n) in [("migrated", c.migrated), ("remaining", c.remaining)] {
                let _ = writeln!(
                    out,
                    "rekey_principals{} {n}",
                    labels(*vault, &format!("kind=\"{kind}\",state=\"{state}\""))
                );
            }
        }
    }
    family(
        out,
        "rekey_principals_blocked",
        "gauge",
        "Principals that can never migrate.",
    );
    for (vault, p) in &read {
        let _ = writeln!(
            out,
            "rekey_principals_blocked{} {}",
            labels(*vault, ""),
            p.blocked
        );
    }
    family(
        out,
        "rekey_grants",
        "gauge",
        "Legacy grants by the state of their recipient.",
    );
    for (vault, p) in &read {
        for (state, n) in [
            ("migrated", p.grants.migrated),
            ("remaining", p.grants.remaining),
        ] {
            let _ = writeln!(
                out,
                "rekey_grants{} {n}",
                labels(*vault, &format!("state=\"{state}\""))
            );
        }
    }
    family(
        out,
        "rekey_grants_non_migratable_unresolved",
        "gauge",
        "Non-migratable grants not resolved yet.",
    );
    for (vault, p) in &read {
        let _ = writeln!(
            out,
            "rekey_grants_non_migratable_unresolved{} {}",
            labels(*vault, ""),
            p.unresolved_non_migratable
        );
    }
    family(
        out,
        "rekey_role_members_unconfirmed",
        "gauge",
        "Members of migrated roles whose client has not confirmed the role's new key.",
    );
    for (vault, p) in &read {
        let _ = writeln!(
            out,
            "rekey_role_members_unconfirmed{} {}",
            labels(*vault, ""),
            p.unconfirmed_role_members
        );
    }
}

/// The current phase, as one gauge per phase (of the vaults whose status
/// could be read).
fn render_phase(out: &mut String, vaults: &[Scrape<'_>]) {
    let read: Vec<(Option<&str>, &str)> = vaults
        .iter()
        .filter_map(|s| s.phase.map(|p| (s.vault, p)))
        .collect();
    if read.is_empty() {
        return;
    }
    family(
        out,
        "rekey_migration_phase",
        "gauge",
        "The current phase (1 for the current one).",
    );
    for (vault, phase) in read {
        for p in rekey_core::model::Phase::ALL {
            let _ = writeln!(
                out,
                "rekey_migration_phase{} {}",
                labels(vault, &format!("phase=\"{}\"", p.as_str())),
                u8::from(p.as_str() == phase)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts() {
        let m = Metrics::default();
        m.observe(0, Duration::from_micros(500));
        m.observe(0, Duration::from_millis(30));
        m.observe(0, Duration::from_secs(60));
        m.refused("conflict");
        m.refused("no such reason");
        m.applied(12);
        let text = m.render(None, Some("user_phase"));
        let r = ROUTES[0].path;
        assert!(
            text.contains(&format!("route=\"{r}\",le=\"0.001\"}} 1")),
            "{text}"
        );
        assert!(text.contains(&format!("route=\"{r}\",le=\"0.05\"}} 2")));
        assert!(text.contains(&format!("route=\"{r}\",le=\"+Inf\"}} 3")));
        assert!(text.contains("rekey_bundles_refused_total{reason=\"conflict\"} 1"));
        assert!(text.contains("rekey_bundles_refused_total{reason=\"other\"} 1"));
        assert!(text.contains("rekey_bundles_applied_total 1"));
        assert!(text.contains("rekey_bundle_grants_applied_total 12"));
        assert!(text.contains("rekey_migration_phase{phase=\"user_phase\"} 1"));
    }
}
