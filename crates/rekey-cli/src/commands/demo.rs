//! `demo` (the whole flow), `demo seed`, `demo login-all`, `verify`.

use super::{Ctx, Keys};
use crate::cli::{DemoArgs, DemoStep, KdfChoice, SpecArgs};
use crate::error::CliError;
use crate::output::Out;
use rekey_demo::flow::{self, KeyOptions, Ui};
use rekey_demo::login::{LoginSummary, Progress, Via, login_all};
use rekey_demo::password::KdfParams;
use rekey_demo::reader::VerifyReport;
use rekey_demo::{Credentials, DemoSpec};
use serde::Serialize;
use std::path::Path;

/// The demo's output: numbered steps and bars in text mode, nothing but
/// the final JSON otherwise.
struct Terminal(Out);

impl Ui for Terminal {
    fn step(&self, text: &str) {
        self.0.say(text);
    }

    fn text(&self, text: &str) {
        self.0.say(text.trim_end());
    }

    fn bar(&self, what: &'static str) -> Progress {
        crate::progress::bar(what, !self.0.is_json())
    }
}

fn spec_of(s: &SpecArgs) -> DemoSpec {
    DemoSpec {
        users: s.users,
        roles: s.roles.unwrap_or_else(|| DemoSpec::default_roles(s.users)),
        records: s.records.unwrap_or(s.users * 10),
        rsa_bits: s.rsa_bits,
        seed: s.seed,
        with_problems: s.with_problems,
        kdf: match s.kdf {
            KdfChoice::Recommended => KdfParams::RECOMMENDED,
            KdfChoice::Light => KdfParams::LIGHT,
        },
    }
}

fn keys_of(s: &SpecArgs) -> KeyOptions {
    KeyOptions {
        cache: s.key_cache.clone(),
        distinct: s.distinct_keys,
    }
}

pub(super) async fn run(ctx: &Ctx, args: &DemoArgs) -> Result<u8, CliError> {
    match &args.step {
        Some(DemoStep::Seed { credentials }) => seed(ctx, &args.spec, credentials).await,
        Some(DemoStep::LoginAll {
            credentials,
            servers,
        }) => {
            let via = if servers.is_empty() {
                Via::Vault(ctx.engine(Keys::IfPresent).await?)
            } else {
                Via::Servers(servers.clone())
            };
            logins(ctx, via, credentials, args.spec.concurrency).await
        }
        None => whole(ctx, &args.dir, &args.spec, args.target_scheme, &args.then).await,
    }
}

async fn whole(
    ctx: &Ctx,
    dir: &Path,
    s: &SpecArgs,
    target: rekey_core::Target,
    then: &[rekey_core::Target],
) -> Result<u8, CliError> {
    let ui = Terminal(ctx.out);
    let summary = flow::run(
        dir,
        &spec_of(s),
        &keys_of(s),
        s.concurrency,
        target,
        then,
        &ui,
    )
    .await?;
    let mib = |bytes: u64| bytes as f64 / f64::from(1u32 << 20);
    let outcome = |v: &VerifyReport| if v.passed() { "passed" } else { "FAILED" };
    ctx.out.report(&summary, |d| {
        let mut text = format!(
            "\ndemo done in {:.1} s: {} users migrated to {}, {} grants re-wrapped, {} legacy rows deleted, vault {:.1} MiB; verify: {} ({} record reads)",
            d.seconds,
            d.logins.users,
            d.target,
            d.logins.grants,
            d.legacy_rows_deleted,
            mib(d.vault_bytes),
            outcome(&d.verify),
            d.verify.records_read
        );
        for a in &d.again {
            text.push_str(&format!(
                "\nthen migrated again to {}: {} grants re-wrapped in {:.1} s, {} rows of the previous target deleted, vault {:.1} MiB; verify: {} ({} record reads)",
                a.target,
                a.logins.grants,
                a.logins.seconds,
                a.legacy_rows_deleted,
                mib(a.vault_bytes),
                outcome(&a.verify),
                a.verify.records_read
            ));
        }
        text
    });
    verified(&summary.verify)?;
    for a in &summary.again {
        verified(&a.verify)?;
    }
    Ok(0)
}

async fn seed(ctx: &Ctx, s: &SpecArgs, credentials: &Path) -> Result<u8, CliError> {
    let engine = ctx.init_engine().await?;
    let ui = Terminal(ctx.out);
    let (summary, _) = flow::seed(&engine, &spec_of(s), &keys_of(s), credentials, &ui).await?;
    ctx.out.report(&summary, |r| {
        format!(
            "seeded {} users, {} roles, {} records, {} legacy grants ({} rows) in {:.1} s; RSA keys: {} generated, {} from cache",
            r.users,
            r.roles,
            r.records,
            r.legacy_grants,
            r.rows,
            r.seconds,
            r.rsa_keys_generated,
            r.rsa_keys_reused
        )
    });
    Ok(0)
}

/// `demo login-all` as JSON: the summary and this process's peak memory.
#[derive(Debug, Serialize)]
struct LoginAllReport {
    #[serde(flatten)]
    summary: LoginSummary,
    peak_rss_bytes: Option<u64>,
}

async fn logins(
    ctx: &Ctx,
    via: Via,
    credentials: &Path,
    concurrency: usize,
) -> Result<u8, CliError> {
    let creds = Credentials::load(credentials)?;
    let bar = crate::progress::bar("users logging in", !ctx.out.is_json());
    let summary = login_all(via, creds, concurrency, bar).await?;
    let report = LoginAllReport {
        summary,
        peak_rss_bytes: crate::progress::peak_rss_bytes(),
    };
    ctx.out.report(&report, |r| {
        let mut t = format!(
            "{} users logged in and migrated: {} grants in {:.1} s ({:.0} grants/s), {} role receipts",
            r.summary.users,
            r.summary.grants,
            r.summary.seconds,
            r.summary.grants_per_second(),
            r.summary.roles_confirmed
        );
        for why in &r.summary.roles_refused {
            t.push_str(&format!("\nwarning: a role does not open for {why}"));
        }
        t
    });
    if report.summary.roles_refused.is_empty() {
        Ok(0)
    } else {
        Ok(crate::error::code::VERIFY_FAILED)
    }
}

pub(super) async fn verify(ctx: &Ctx, credentials: &Path) -> Result<u8, CliError> {
    let engine = ctx.engine(Keys::IfPresent).await?;
    let creds = Credentials::load(credentials)?;
    let report = flow::verify(&engine, &creds, &Terminal(ctx.out)).await?;
    ctx.out.report(&report, |r| {
        format!(
            "verified {} users, {} record reads",
            r.users, r.records_read
        )
    });
    verified(&report)
}

fn verified(report: &VerifyReport) -> Result<u8, CliError> {
    if report.passed() {
        Ok(0)
    } else {
        Err(CliError::VerifyFailed(report.mismatches.join("; ")))
    }
}
