//! `init`, `start`, `finalize`, `abort`.

use super::{Ctx, Keys, prompt};
use crate::error::CliError;
use rekey_core::report::{AbortReport, FinalizeReport, StartReport};
use std::fmt::Write;

pub(super) async fn init(ctx: &Ctx) -> Result<u8, CliError> {
    let engine = ctx.init_engine().await?;
    let vault = engine.vault_id().await?;
    ctx.out.report(&serde_json::json!({ "vault": vault }), |_| {
        format!(
            "vault {vault} ready at {}",
            rekey_storage::redact_url(&ctx.db)
        )
    });
    Ok(0)
}

pub(super) async fn start(
    ctx: &Ctx,
    code_word: Option<String>,
    target: Option<rekey_core::Target>,
) -> Result<u8, CliError> {
    let mut engine = ctx.engine(Keys::Create).await?;
    if let Some(target) = target {
        engine = engine.with_target(target);
    }
    // A started migration resumes without the code word; a fresh start asks
    // for it here and the engine checks it (before preflight).
    let answer = match code_word {
        Some(w) => w,
        None if engine.phase().await? == rekey_core::model::Phase::Legacy => {
            prompt("Type Start to put the vault into migration mode (read-only until finalize): ")?
        }
        None => String::new(),
    };
    let bar = crate::progress::bar("server keys", !ctx.out.is_json());
    let report = engine
        .start(&answer, &|_, done, total| bar(done, total))
        .await?;
    ctx.out.report(&report, start_text);
    Ok(0)
}

fn start_text(r: &StartReport) -> String {
    let mut t = String::new();
    if r.resumed {
        let _ = writeln!(
            t,
            "migration resumed (run {}, target {}); phase: {}",
            r.run, r.target, r.phase
        );
    } else {
        let _ = writeln!(
            t,
            "migration started (run {}, target {}); phase: {}",
            r.run, r.target, r.phase
        );
    }
    if !r.blocked_users.is_empty() {
        let _ = writeln!(
            t,
            "blocked (can never log in; purge or restore them before finalize): {}",
            r.blocked_users.join(", ")
        );
    }
    if let Some(s) = &r.server_phase {
        let _ = writeln!(
            t,
            "server keys migrated: {} (with {} managed users and roles they hold, {} grants)",
            s.migrated.len(),
            s.migrated_along,
            s.grants
        );
        for m in &s.missing_certificates {
            let _ = writeln!(
                t,
                "missing certificate key: {m} (run `rekey cert import BACKUP`, then `rekey start` again)"
            );
        }
    }
    t
}

pub(super) async fn finalize(ctx: &Ctx) -> Result<u8, CliError> {
    let engine = ctx.engine(Keys::IfPresent).await?;
    let count = crate::progress::counter("legacy rows deleted", !ctx.out.is_json());
    let report = engine.finalize(&count).await?;
    ctx.out.report(&report, |r: &FinalizeReport| {
        format!(
            "finalized: {} legacy rows deleted; the vault is writable again",
            r.deleted_legacy_rows
        )
    });
    Ok(0)
}

pub(super) async fn abort(ctx: &Ctx, yes: bool) -> Result<u8, CliError> {
    let engine = ctx.engine(Keys::IfPresent).await?;
    if !yes {
        let a = prompt(
            "Abort the migration and return to the keys the vault had before it started? Type yes: ",
        )?;
        if a != "yes" {
            return Err(CliError::Declined(
                "not aborted (the answer was not `yes`)".into(),
            ));
        }
    }
    let report = engine.abort().await?;
    ctx.out.report(&report, |r: &AbortReport| {
        if r.phase == rekey_core::model::Phase::Completed {
            format!(
                "aborted (from {}): the vault is back to its completed previous migration, as it was before this start",
                r.from
            )
        } else {
            format!(
                "aborted (from {}): the vault is back to its legacy state",
                r.from
            )
        }
    });
    Ok(0)
}
