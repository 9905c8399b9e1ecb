//! `login`: act as one user's client (demo vaults: the password KDF is the
//! demo's).

use super::{Ctx, Keys, prompt};
use crate::error::CliError;
use rekey_client::MigrateReport;
use rekey_demo::Credentials;
use rekey_demo::login::{login_in_process, login_over_http};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// What one login did.
#[derive(Debug, Serialize)]
struct LoginReport<'a> {
    user: &'a str,
    grants: usize,
    non_migratable: usize,
    principals: usize,
    retries: usize,
    bundle_bytes: usize,
    roles_confirmed: usize,
    roles_refused: Vec<String>,
    seconds: f64,
}

pub(super) async fn run(
    ctx: &Ctx,
    user: &str,
    password: Option<String>,
    server: Option<&str>,
    credentials: &Path,
) -> Result<u8, CliError> {
    let password = match password {
        Some(p) => p,
        None => prompt(&format!("password for {user}: "))?,
    };
    let started = Instant::now();
    let bar = crate::progress::bar("re-wrapping grants", !ctx.out.is_json());
    let r: MigrateReport = match server {
        Some(url) => {
            // Over HTTP the client knows the vault and its own id from the
            // demo's credentials file, as a real client knows them from
            // its session.
            let creds = Credentials::load(credentials)?;
            let id = creds.user(user)?.id;
            login_over_http(url, creds.vault, id, &password, None, bar).await?
        }
        None => {
            let engine = ctx.engine(Keys::IfPresent).await?;
            login_in_process(&engine, user, &password, None, bar).await?
        }
    };
    let report = LoginReport {
        user,
        grants: r.applied.grants,
        non_migratable: r.applied.non_migratable,
        principals: r.applied.principals.len(),
        retries: r.retries,
        bundle_bytes: r.bundle_bytes,
        roles_confirmed: r.roles.confirmed,
        roles_refused: r
            .roles
            .refused
            .iter()
            .map(|(role, why)| format!("{role}: {why}"))
            .collect(),
        seconds: started.elapsed().as_secs_f64(),
    };
    ctx.out.report(&report, |r| {
        let mut t = format!(
            "{} migrated{}: {} grants, {} principal(s), {} non-migratable, {} role(s) confirmed, in {:.2} s",
            r.user,
            server.map(|u| format!(" through {u}")).unwrap_or_default(),
            r.grants,
            r.principals,
            r.non_migratable,
            r.roles_confirmed,
            r.seconds
        );
        for why in &r.roles_refused {
            t.push_str(&format!("\nwarning: a role does not open for {}: {why}", r.user));
        }
        t
    });
    if report.roles_refused.is_empty() {
        Ok(0)
    } else {
        // The account migrated, but a role another member migrated is
        // broken for it: the operator must see a failure.
        Ok(crate::error::code::VERIFY_FAILED)
    }
}
