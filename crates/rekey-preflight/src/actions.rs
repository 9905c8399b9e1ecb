//! What an administrator does to clear a check: mark the beginning of
//! preparation, renew a directory token, write a device off.

use crate::error::{Error, Result};
use rekey_core::model::{AuditEvent, Timestamp};
use rekey_storage::Vault;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The audit action that records when preparation began.
pub const PREPARATION_BEGAN: &str = "preparation_began";
/// The audit action written when a directory token is renewed; its details
/// hold the profile name and the token's SHA-256 (never the token).
pub const DIRECTORY_TOKEN_RENEWED: &str = "directory_token_renewed";
/// The audit action written when a device is written off.
pub const DEVICE_WRITTEN_OFF: &str = "device_written_off";

/// Audit events read per query while looking for an action.
const AUDIT_PAGE: u64 = 1000;

/// When preparation began: the time of the latest `preparation_began`
/// audit event, if any.
pub async fn preparation_began(vault: &Vault) -> Result<Option<Timestamp>> {
    let mut after = 0;
    let mut latest = None;
    loop {
        let page = vault.audit_events(after, AUDIT_PAGE).await?;
        let full = page.len() as u64 == AUDIT_PAGE;
        for (seq, event) in &page {
            after = *seq;
            if event.action == PREPARATION_BEGAN {
                latest = Some(event.at);
            }
        }
        if !full {
            return Ok(latest);
        }
    }
}

/// Records that preparation begins now (an audit event by `actor`), unless
/// it was recorded before; returns when it began.
pub async fn begin_preparation(vault: &Vault, actor: &str) -> Result<Timestamp> {
    begin_preparation_at(vault, actor, Timestamp::now()).await
}

pub(crate) async fn begin_preparation_at(
    vault: &Vault,
    actor: &str,
    now: Timestamp,
) -> Result<Timestamp> {
    if let Some(at) = preparation_began(vault).await? {
        return Ok(at);
    }
    vault
        .append_audit(&AuditEvent {
            at: now,
            actor: actor.to_owned(),
            action: PREPARATION_BEGAN.to_owned(),
            details: "{}".to_owned(),
        })
        .await?;
    Ok(now)
}

/// A directory token, shown once. Wiped on drop; `Debug` does not print it.
pub struct DirectoryToken(Zeroizing<String>);

impl DirectoryToken {
    /// The token text (64 lower-case hex digits), to show the administrator
    /// once.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 of the token text, lower-case hex: what the vault keeps.
    #[must_use]
    pub fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for DirectoryToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectoryToken([redacted])")
    }
}

/// Issues a new random token (32 bytes from the OS, hex) for a
/// directory-sync profile, records its issue time on the profile and its
/// SHA-256 in the audit log (`directory_token_renewed`, by `actor`), and
/// returns it to be shown once. The token itself is stored nowhere.
pub async fn renew_directory_token(
    vault: &Vault,
    profile_name: &str,
    actor: &str,
) -> Result<DirectoryToken> {
    let mut profile = vault
        .directory_profiles()
        .await?
        .into_iter()
        .find(|p| p.name == profile_name)
        .ok_or_else(|| Error::UnknownDirectoryProfile {
            name: profile_name.to_owned(),
        })?;
    let mut raw = Zeroizing::new([0u8; 32]);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, raw.as_mut());
    let token = DirectoryToken(Zeroizing::new(hex::encode(raw.as_ref())));
    let now = Timestamp::now();
    // Preparation has begun by the time a token is renewed for it.
    begin_preparation_at(vault, actor, now).await?;
    profile.token_issued_at = Some(now);
    vault.upsert_directory_profile(&profile).await?;
    let details = serde_json::json!({
        "profile": profile.name,
        "token_sha256": token.sha256_hex(),
    });
    vault
        .append_audit(&AuditEvent {
            at: now,
            actor: actor.to_owned(),
            action: DIRECTORY_TOKEN_RENEWED.to_owned(),
            details: details.to_string(),
        })
        .await?;
    Ok(token)
}

/// Writes a device off: the administrator accepts losing its
/// unsynchronised changes. Recorded in the audit log (`device_written_off`,
/// by `actor`, with the device id and how many changes).
pub async fn write_off_device(vault: &Vault, device_id: &str, actor: &str) -> Result<()> {
    let mut device = vault
        .devices()
        .await?
        .into_iter()
        .find(|d| d.id == device_id)
        .ok_or_else(|| Error::UnknownDevice {
            id: device_id.to_owned(),
        })?;
    device.written_off = true;
    vault.upsert_device(&device).await?;
    let details = serde_json::json!({
        "device": device.id,
        "owner": device.owner.to_string(),
        "kind": device.kind.as_str(),
        "unsynced_changes": device.unsynced_changes,
    });
    vault
        .append_audit(&AuditEvent {
            at: Timestamp::now(),
            actor: actor.to_owned(),
            action: DEVICE_WRITTEN_OFF.to_owned(),
            details: details.to_string(),
        })
        .await?;
    Ok(())
}

/// Audit action of a purge.
pub const USER_PURGED: &str = "user_purged";
/// Audit action of a restore.
pub const USER_RESTORED: &str = "user_restored";

/// What `rekey user purge` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PurgeReport {
    /// The user's name.
    pub user: String,
    /// Grants deleted (to the user, and of its private keys).
    pub grants: u64,
    /// Key pairs deleted.
    pub key_pairs: u64,
    /// Role memberships deleted.
    pub memberships: u64,
    /// Records that nobody can read any more (only with `force`).
    pub orphaned_records: Vec<rekey_core::ids::RecordId>,
}

/// The user named `name`, if the remedies may touch it now: a user (not a
/// role or service), and no migration under way.
async fn remedy_target(vault: &Vault, name: &str) -> Result<rekey_core::model::Principal> {
    let user = vault
        .principal_by_name(name)
        .await?
        .filter(|p| p.kind == rekey_core::model::PrincipalKind::User)
        .ok_or_else(|| Error::UnknownUser {
            name: name.to_owned(),
        })?;
    let phase = vault.migration().await?.phase;
    if phase.is_read_only() {
        return Err(Error::MigrationStarted {
            name: name.to_owned(),
            phase: phase.as_str().to_owned(),
        });
    }
    Ok(user)
}

/// Restores a deactivated or deleted user (status `active`): it can log
/// in again and will migrate like any other. Refused for any other status
/// and while a migration runs. Audited (`user_restored`).
pub async fn restore_user(vault: &Vault, name: &str, actor: &str) -> Result<()> {
    use rekey_core::model::UserStatus;
    let user = remedy_target(vault, name).await?;
    if !matches!(user.status, UserStatus::Deactivated | UserStatus::Deleted) {
        return Err(Error::WrongUserStatus {
            name: name.to_owned(),
            status: user.status.as_str().to_owned(),
            why: "only a deactivated or deleted user can be restored",
        });
    }
    let details = serde_json::json!({
        "user": name,
        "id": user.id.to_string(),
        "was": user.status.as_str(),
    });
    vault
        .set_user_status(
            user.id,
            UserStatus::Active,
            &AuditEvent {
                at: Timestamp::now(),
                actor: actor.to_owned(),
                action: USER_RESTORED.to_owned(),
                details: details.to_string(),
            },
        )
        .await?;
    Ok(())
}

/// Purges a deactivated or deleted user: its grants, key pairs and
/// memberships go, its row stays as `purged`. Refused for an active user,
/// while a migration runs, and (unless `force`) when records would be left
/// that nobody else can read; with `force` those records are listed in the
/// audit event (`user_purged`).
pub async fn purge_user(
    vault: &Vault,
    name: &str,
    force: bool,
    actor: &str,
) -> Result<PurgeReport> {
    use rekey_core::model::UserStatus;
    let user = remedy_target(vault, name).await?;
    if !matches!(user.status, UserStatus::Deactivated | UserStatus::Deleted) {
        return Err(Error::WrongUserStatus {
            name: name.to_owned(),
            status: user.status.as_str().to_owned(),
            why: "deactivate or delete the user in the vault first; only those can be purged",
        });
    }
    let orphaned = vault.sole_reader_records(user.id).await?;
    if !orphaned.is_empty() && !force {
        let first: Vec<String> = orphaned.iter().take(5).map(ToString::to_string).collect();
        return Err(Error::WouldOrphanRecords {
            name: name.to_owned(),
            count: orphaned.len(),
            first: first.join(", "),
        });
    }
    let details = serde_json::json!({
        "user": name,
        "id": user.id.to_string(),
        "was": user.status.as_str(),
        "orphaned_records": orphaned.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    let counts = vault
        .purge_user(
            user.id,
            &AuditEvent {
                at: Timestamp::now(),
                actor: actor.to_owned(),
                action: USER_PURGED.to_owned(),
                details: details.to_string(),
            },
        )
        .await?;
    Ok(PurgeReport {
        user: name.to_owned(),
        grants: counts.grants,
        key_pairs: counts.key_pairs,
        memberships: counts.memberships,
        orphaned_records: orphaned,
    })
}
