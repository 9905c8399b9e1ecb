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

/// The server's counters.
#[derive(Debug)]
pub struct Metrics {
    /// One histogram per entry of [`ROUTES`], in order.
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
        Self {
            latency: ROUTES.iter().map(|_| Histogram::default()).collect(),
            applied: AtomicU64::new(0),
            grants_applied: AtomicU64::new(0),
            refused: Default::default(),
            logins: Default::default(),
        }
    }
}

impl Metrics {
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

    /// The Prometheus text exposition (format 0.0.4).
    #[must_use]
    pub fn render(&self, progress: Option<&Progress>, phase: Option<&str>) -> String {
        let mut out = String::new();
        if let Some(p) = progress {
            render_progress(&mut out, p);
        }
        if let Some(phase) = phase {
            render_phase(&mut out, phase);
        }
        self.render_bundles(&mut out);
        self.render_logins(&mut out);
        self.render_latency(&mut out);
        out
    }

    fn render_bundles(&self, out: &mut String) {
        out.push_str("# HELP rekey_bundles_applied_total Bundles checked and applied.\n# TYPE rekey_bundles_applied_total counter\n");
        let _ = writeln!(
            out,
            "rekey_bundles_applied_total {}",
            self.bundles_applied()
        );
        out.push_str("# HELP rekey_bundle_grants_applied_total Grants written by applied bundles.\n# TYPE rekey_bundle_grants_applied_total counter\n");
        let _ = writeln!(
            out,
            "rekey_bundle_grants_applied_total {}",
            self.grants_applied.load(Ordering::Relaxed)
        );
        out.push_str("# HELP rekey_bundles_refused_total Bundles refused, by reason.\n# TYPE rekey_bundles_refused_total counter\n");
        for (i, reason) in REFUSAL_REASONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "rekey_bundles_refused_total{{reason=\"{reason}\"}} {}",
                self.refused[i].load(Ordering::Relaxed)
            );
        }
    }

    fn render_logins(&self, out: &mut String) {
        out.push_str("# HELP rekey_logins_total Client logins (POST /v1/session), by outcome.\n# TYPE rekey_logins_total counter\n");
        for (i, outcome) in LOGIN_OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "rekey_logins_total{{outcome=\"{outcome}\"}} {}",
                self.logins[i].load(Ordering::Relaxed)
            );
        }
    }

    fn render_latency(&self, out: &mut String) {
        out.push_str("# HELP rekey_http_request_duration_seconds Request latency by route.\n# TYPE rekey_http_request_duration_seconds histogram\n");
        for (route, h) in ROUTES.iter().zip(&self.latency) {
            let labels = format!(
                "method=\"{}\",route=\"{}\"",
                route.method.as_str(),
                route.path
            );
            let mut cumulative = 0u64;
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "rekey_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            cumulative += h.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "rekey_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
            );
            let _ = writeln!(
                out,
                "rekey_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "rekey_http_request_duration_seconds_count{{{labels}}} {}",
                h.count.load(Ordering::Relaxed)
            );
        }
    }
}

/// The vault's principals and grants by state.
fn render_progress(out: &mut String, p: &Progress) {
    out.push_str("# HELP rekey_principals Principals by kind and migration state.\n# TYPE rekey_principals gauge\n");
    for (kind, c) in [
        ("user", p.users),
        ("role", p.roles),
        ("service", p.services),
    ] {
        for (state, n) in [("migrated", c.migrated), ("remaining", c.remaining)] {
            let _ = writeln!(
                out,
                "rekey_principals{{kind=\"{kind}\",state=\"{state}\"}} {n}"
            );
        }
    }
    out.push_str("# HELP rekey_principals_blocked Principals that can never migrate.\n# TYPE rekey_principals_blocked gauge\n");
    let _ = writeln!(out, "rekey_principals_blocked {}", p.blocked);
    out.push_str("# HELP rekey_grants Legacy grants by the state of their recipient.\n# TYPE rekey_grants gauge\n");
    for (state, n) in [
        ("migrated", p.grants.migrated),
        ("remaining", p.grants.remaining),
    ] {
        let _ = writeln!(out, "rekey_grants{{state=\"{state}\"}} {n}");
    }
    out.push_str("# HELP rekey_grants_non_migratable_unresolved Non-migratable grants not resolved yet.\n# TYPE rekey_grants_non_migratable_unresolved gauge\n");
    let _ = writeln!(
        out,
        "rekey_grants_non_migratable_unresolved {}",
        p.unresolved_non_migratable
    );
    out.push_str("# HELP rekey_role_members_unconfirmed Members of migrated roles whose client has not confirmed the role's new key.\n# TYPE rekey_role_members_unconfirmed gauge\n");
    let _ = writeln!(
        out,
        "rekey_role_members_unconfirmed {}",
        p.unconfirmed_role_members
    );
}

/// The current phase, as one gauge per phase.
fn render_phase(out: &mut String, phase: &str) {
    out.push_str("# HELP rekey_migration_phase The current phase (1 for the current one).\n# TYPE rekey_migration_phase gauge\n");
    for p in rekey_core::model::Phase::ALL {
        let _ = writeln!(
            out,
            "rekey_migration_phase{{phase=\"{}\"}} {}",
            p.as_str(),
            u8::from(p.as_str() == phase)
        );
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
