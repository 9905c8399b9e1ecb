//! `preflight` and the remedies it names: `directory renew-token`,
//! `device write-off`, `resolve`.

use super::{Ctx, Keys};
use crate::cli::{DeviceAction, DirectoryAction, UserAction};
use crate::error::CliError;
use rekey_core::GrantId;
use rekey_core::model::Resolution;

pub(super) async fn preflight(ctx: &Ctx, target: rekey_core::Target) -> Result<u8, CliError> {
    let engine = ctx.engine(Keys::IfPresent).await?.with_target(target);
    let report = engine.preflight().await?;
    // The report has its own JSON form (`rekey-preflight/1`), the same the
    // server's POST /v1/admin/preflight answers.
    ctx.out.document(&report.to_json(), &report.to_text());
    Ok(report.exit_code())
}

pub(super) async fn directory(ctx: &Ctx, action: &DirectoryAction) -> Result<u8, CliError> {
    let DirectoryAction::RenewToken { profile } = action;
    let engine = ctx.engine(Keys::IfPresent).await?;
    let token = engine.renew_directory_token(profile).await?;
    ctx.out.report(
        &serde_json::json!({ "profile": profile, "token": token.expose() }),
        |_| {
            format!(
                "new token for {profile} (shown once; paste it into the directory's provisioning settings):\n{}",
                token.expose()
            )
        },
    );
    Ok(0)
}

/// `user purge` and `user restore`: preflight's remedy for users that can
/// never log in.
pub(super) async fn user(ctx: &Ctx, action: &UserAction) -> Result<u8, CliError> {
    let engine = ctx.engine(Keys::IfPresent).await?;
    match action {
        UserAction::Purge { name, force } => {
            let report = engine.purge_user(name, *force).await?;
            ctx.out.report(&report, |r| {
                let mut t = format!(
                    "{} purged: {} grant(s), {} key pair(s), {} membership(s) deleted (recorded in the audit log)",
                    r.user, r.grants, r.key_pairs, r.memberships
                );
                if !r.orphaned_records.is_empty() {
                    t.push_str(&format!(
                        "\n{} record(s) can no longer be read by anyone (listed in the audit log); preflight lists them until they are removed from the vault",
                        r.orphaned_records.len()
                    ));
                }
                t
            });
        }
        UserAction::Restore { name } => {
            engine.restore_user(name).await?;
            ctx.out.report(
                &serde_json::json!({ "user": name, "restored": true }),
                |_| format!("{name} restored: active again; it migrates when it logs in (recorded in the audit log)"),
            );
        }
    }
    Ok(0)
}

pub(super) async fn device(ctx: &Ctx, action: &DeviceAction) -> Result<u8, CliError> {
    let DeviceAction::WriteOff { device } = action;
    let engine = ctx.engine(Keys::IfPresent).await?;
    engine.write_off_device(device).await?;
    ctx.out.report(
        &serde_json::json!({ "device": device, "written_off": true }),
        |_| {
            format!(
                "device {device} written off: its unsynchronised changes will be lost (recorded in the audit log)"
            )
        },
    );
    Ok(0)
}

pub(super) async fn resolve(ctx: &Ctx, grant: &str, resolution: &str) -> Result<u8, CliError> {
    let grant: GrantId = grant
        .parse()
        .map_err(|_| CliError::Usage(format!("{grant:?} is not a grant id (a UUID)")))?;
    let resolution: Resolution = resolution.parse().map_err(|_| {
        CliError::Usage(format!(
            "{resolution:?} is not a resolution: use reshared or written_off"
        ))
    })?;
    let engine = ctx.engine(Keys::IfPresent).await?;
    engine.resolve_non_migratable(grant, resolution).await?;
    ctx.out.report(
        &serde_json::json!({ "grant": grant, "resolution": resolution }),
        |_| format!("grant {grant} resolved: {}", resolution.as_str()),
    );
    Ok(0)
}

/// `waive-role`: finalize stops waiting for one member's receipt.
pub(super) async fn waive_role(ctx: &Ctx, role: &str, member: &str) -> Result<u8, CliError> {
    let engine = ctx.engine(Keys::IfPresent).await?;
    let find = |name: &str| {
        let engine = engine.clone();
        let name = name.to_owned();
        async move {
            engine
                .principal_by_name(&name)
                .await?
                .ok_or_else(|| CliError::Usage(format!("no principal named {name:?}")))
        }
    };
    let (r, m) = (find(role).await?, find(member).await?);
    engine.waive_role_confirmation(r.id, m.id).await?;
    ctx.out.report(
        &serde_json::json!({ "role": r.id, "member": m.id, "waived": true }),
        |_| format!("{member} no longer has to confirm {role}; finalize will not wait for it"),
    );
    Ok(0)
}
