//! `status`: the engine's status report, once or every two seconds.

use super::{Ctx, Keys};
use crate::error::CliError;
use rekey_core::model::{Counts, Phase};
use rekey_core::report::StatusReport;
use rekey_engine::Names;
use std::fmt::Write;
use std::io::IsTerminal;

pub(super) async fn run(ctx: &Ctx, all: bool, watch: bool) -> Result<u8, CliError> {
    let engine = ctx.engine(Keys::IfPresent).await?;
    let names = if all { Names::All } else { Names::First };
    loop {
        let report = engine.status(names).await?;
        if watch && !ctx.out.is_json() && std::io::stdout().is_terminal() {
            ctx.out.clear_screen();
        }
        let written = ctx.out.report(&report, |r| text(r, all));
        if !watch || !written || report.phase == Phase::Completed {
            return Ok(0);
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(0),
        }
    }
}

fn text(r: &StatusReport, all: bool) -> String {
    let mut t = String::new();
    match r.target {
        Some(target) => {
            let _ = writeln!(t, "phase: {} (target {target})", r.phase);
        }
        None => {
            let _ = writeln!(t, "phase: {}", r.phase);
        }
    }
    let line = |t: &mut String, what: &str, c: Counts| {
        let _ = writeln!(
            t,
            "  {what:<12} {:>8} migrated {:>8} remaining",
            c.migrated, c.remaining
        );
    };
    line(&mut t, "users", r.progress.users);
    line(&mut t, "roles", r.progress.roles);
    line(&mut t, "server keys", r.progress.services);
    line(&mut t, "grants", r.progress.grants);
    let _ = writeln!(
        t,
        "  blocked: {}   non-migratable unresolved: {}   role members unconfirmed: {}",
        r.progress.blocked,
        r.progress.unresolved_non_migratable,
        r.progress.unconfirmed_role_members
    );
    if let (Some(rate), Some(eta)) = (r.rate_principals_per_minute, r.eta_minutes) {
        let _ = writeln!(
            t,
            "  rate: {rate:.1} principals/min   estimate: {eta:.1} min left"
        );
    }
    let remaining =
        r.progress.users.remaining + r.progress.roles.remaining + r.progress.services.remaining;
    if !r.pending.is_empty() {
        let more = if all || remaining as usize <= r.pending.len() {
            ""
        } else {
            ", … (--all-pending lists every one)"
        };
        let _ = writeln!(t, "  pending: {}{more}", r.pending.join(", "));
    }
    if !r.blocked.is_empty() {
        let _ = writeln!(t, "  blocked: {}", r.blocked.join(", "));
    }
    for b in &r.blockers {
        let _ = writeln!(t, "  blocker: {b}");
    }
    let _ = writeln!(t, "next: {}", r.next_step);
    t
}
