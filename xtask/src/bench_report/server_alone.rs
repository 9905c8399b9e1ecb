//! `## The server alone`: runs `cargo bench -p rekey-server --bench submit`
//! (prebuilt bundles submitted to an in-process rekey-server by 1, 8 and 64
//! concurrent submitters, on SQLite and PostgreSQL) and renders its JSON
//! summary, the last line of its standard output.

use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// The target: bundles/s of ~100 grants on PostgreSQL with 64
/// submitters, and their p99 latency.
const TARGET_BUNDLES_PER_SECOND: f64 = 500.0;
const TARGET_P99_MS: f64 = 250.0;
const TARGET_SUBMITTERS: usize = 64;
const TARGET_GRANTS: usize = 100;

/// What the bench measured.
pub(super) struct ServerAlone {
    /// One vault per backend and size, with its prebuilt bundles.
    pub(super) vaults: Vec<SubmitVault>,
    /// One row per backend, size and number of submitters.
    pub(super) cells: Vec<SubmitCell>,
    /// Why PostgreSQL was left out, if it was.
    pub(super) postgres_skipped: Option<String>,
}

/// A seeded vault's bundles: how many grants each holds.
pub(super) struct SubmitVault {
    pub(super) backend: String,
    pub(super) grants_target: usize,
    pub(super) bundles: usize,
    pub(super) mean: f64,
    pub(super) median: usize,
    pub(super) max: usize,
}

/// One cell: a backend, a size, a number of submitters.
pub(super) struct SubmitCell {
    pub(super) backend: String,
    pub(super) grants_target: usize,
    pub(super) submitters: usize,
    pub(super) bundles: usize,
    pub(super) bundles_per_second: f64,
    pub(super) grants_per_second: f64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    /// The server's own mean per bundle request (its `/metrics`
    /// histogram: the client side left out).
    pub(super) server_mean_ms: f64,
    /// Submissions answered 409 or 503 and sent again.
    pub(super) retried: usize,
    pub(super) errors: usize,
}

/// Runs the bench (smaller vaults with `quick`); its progress goes to the
/// terminal, its standard output is read.
pub(super) fn run(root: &Path, quick: bool) -> Result<ServerAlone, String> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "bench",
        "--locked",
        "-p",
        "rekey-server",
        "--bench",
        "submit",
    ])
    .current_dir(root)
    .stderr(Stdio::inherit());
    if quick {
        cmd.env("REKEY_BENCH_SUBMIT_USERS", "200")
            .env("REKEY_BENCH_SUBMIT_USERS_1000", "40");
    }
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Its table, as the bench printed it.
    for line in text.lines().filter(|l| l.starts_with("submit:")) {
        println!("{line}");
    }
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", out.status));
    }
    parse(&text)
}

/// The summary: the last line of `stdout` that is a JSON object.
pub(super) fn parse(stdout: &str) -> Result<ServerAlone, String> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or("the submit bench printed no JSON summary")?;
    let v: Value = serde_json::from_str(line).map_err(|e| format!("bad summary ({e}): {line}"))?;
    let list = |key: &str| {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| format!("no `{key}` in {line}"))
    };
    let vaults = list("vaults")?
        .iter()
        .map(|x| {
            Ok(SubmitVault {
                backend: text(x, "backend")?,
                grants_target: count(x, "grants_target")?,
                bundles: count(x, "bundles")?,
                mean: super::num(x, "bundle_grants_mean")?,
                median: count(x, "bundle_grants_p50")?,
                max: count(x, "bundle_grants_max")?,
            })
        })
        .collect::<Result<_, String>>()?;
    let cells = list("cells")?
        .iter()
        .map(|x| {
            Ok(SubmitCell {
                backend: text(x, "backend")?,
                grants_target: count(x, "grants_target")?,
                submitters: count(x, "submitters")?,
                bundles: count(x, "bundles")?,
                bundles_per_second: super::num(x, "bundles_per_second")?,
                grants_per_second: super::num(x, "grants_per_second")?,
                p50_ms: super::num(x, "p50_ms")?,
                p99_ms: super::num(x, "p99_ms")?,
                server_mean_ms: super::num(x, "server_mean_ms")?,
                retried: count(x, "retried_409")? + count(x, "retried_503")?,
                errors: count(x, "errors")?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(ServerAlone {
        vaults,
        cells,
        postgres_skipped: v
            .get("postgres_skipped")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

fn text(v: &Value, key: &str) -> Result<String, String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("no text `{key}` in {v}"))
}

fn count(v: &Value, key: &str) -> Result<usize, String> {
    v.get(key)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("no count `{key}` in {v}"))
}

impl ServerAlone {
    /// The row of the target in `## Targets`.
    pub(super) fn target_row(&self, cores: usize, s: &mut String) {
        let target = format!(
            "≥ {TARGET_BUNDLES_PER_SECOND:.0} bundles/s of ~{TARGET_GRANTS} grants on PostgreSQL, \
             {TARGET_SUBMITTERS} submitters, p99 < {TARGET_P99_MS:.0} ms, on {cores} cores with the \
             load generator"
        );
        let cell = self.cells.iter().find(|c| {
            c.backend == "PostgreSQL"
                && c.grants_target == TARGET_GRANTS
                && c.submitters == TARGET_SUBMITTERS
        });
        let _ = match cell {
            Some(c) => writeln!(
                s,
                "| {target} | {:.0} bundles/s, p99 {:.1} ms | {} |",
                c.bundles_per_second,
                c.p99_ms,
                super::yes(
                    c.bundles_per_second >= TARGET_BUNDLES_PER_SECOND
                        && c.p99_ms < TARGET_P99_MS
                        && c.errors == 0
                )
            ),
            None => writeln!(
                s,
                "| {target} | not measured{} | **no** |",
                self.postgres_skipped
                    .as_ref()
                    .map_or_else(String::new, |why| format!(" ({why})"))
            ),
        };
    }

    /// `## The server alone`.
    pub(super) fn write_section(&self, cores: usize, s: &mut String) {
        let _ = writeln!(
            s,
            "\n## The server alone\n\n\
             `cargo bench -p rekey-server --bench submit`: how many bundles rekey-server checks \
             and applies per second, the number that sizes a morning login storm. Every e2ee \
             user of a started demo vault logs in, fetches its package and builds its bundle \
             before the clock starts; then 1, 8 or 64 concurrent submitters POST those prebuilt \
             bundles, each once, to a rekey-server in the same process on loopback (its own \
             runtime, default limits). Timed is the submission alone: the HTTP exchange, the \
             server's check (parse, signatures, coverage) and its apply (bundles that \
             arrive together share one database transaction: group commit). The load \
             generator runs on the same {cores} cores as the server. Each row starts from a \
             fresh copy of the same started vault; the latency \
             is each bundle's, from its POST to its answer; the server's mean is its own \
             (its `/metrics` histogram), without the client side. The demo vaults have no roles (a \
             prebuilt bundle migrating a role goes stale once another member migrates it) and \
             the demo's skewed grants per user: ~100 and ~1,000 are the mean grants per bundle.\n"
        );
        if !self.vaults.is_empty() {
            let _ = writeln!(
                s,
                "| vault | backend | bundles | grants per bundle: mean | median | max |\n|---|---|---|---|---|---|"
            );
            for v in &self.vaults {
                let _ = writeln!(
                    s,
                    "| ~{} grants | {} | {} | {:.0} | {} | {} |",
                    super::thousands(v.grants_target),
                    v.backend,
                    super::thousands(v.bundles),
                    v.mean,
                    super::thousands(v.median),
                    super::thousands(v.max)
                );
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(
            s,
            "| backend | grants per bundle | submitters | bundles | bundles/s | grants/s | p50 | p99 | server's mean | retried (409, 503) | errors |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for c in &self.cells {
            let _ = writeln!(
                s,
                "| {} | ~{} | {} | {} | {:.0} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} |",
                c.backend,
                super::thousands(c.grants_target),
                c.submitters,
                super::thousands(c.bundles),
                c.bundles_per_second,
                c.grants_per_second,
                c.p50_ms,
                c.p99_ms,
                c.server_mean_ms,
                c.retried,
                if c.errors == 0 {
                    "0".to_owned()
                } else {
                    format!("**{}**", c.errors)
                }
            );
        }
        if let Some(why) = &self.postgres_skipped {
            let _ = writeln!(s, "\nPostgreSQL was not measured: {why}.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_the_last_json_line() {
        let out = "submit: PostgreSQL skipped: no server\n\
            submit: SQLite ~100 ...\n\
            {\"bench\":\"submit\",\"postgres_skipped\":\"no server\",\
             \"vaults\":[{\"backend\":\"SQLite\",\"grants_target\":100,\"bundles\":540,\
             \"bundle_grants_mean\":99.5,\"bundle_grants_p50\":70,\"bundle_grants_max\":3000}],\
             \"cells\":[{\"backend\":\"SQLite\",\"grants_target\":100,\"submitters\":64,\
             \"bundles\":540,\"bundles_per_second\":300.5,\"grants_per_second\":30000.0,\
             \"p50_ms\":100.0,\"p99_ms\":400.0,\"server_mean_ms\":90.0,\"retried_409\":0,\"retried_503\":2,\"errors\":0}]}\n";
        let r = parse(out).expect("parses");
        assert_eq!(r.postgres_skipped.as_deref(), Some("no server"));
        assert_eq!((r.vaults.len(), r.vaults[0].max), (1, 3000));
        let c = &r.cells[0];
        assert_eq!((c.submitters, c.bundles, c.retried), (64, 540, 2));
        assert!(parse("no summary\n").is_err());
    }
}
