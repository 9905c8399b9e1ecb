//! Rows to domain types and back. Every value read from the database is
//! parsed; one that rekey did not write becomes `Error::Corrupt`.

use crate::entity::{
    audit, certificate, component, device, directory_profile, grant, key_pair, migration,
    non_migratable, principal, server,
};
use crate::error::{Error, Result};
use rekey_core::envelope::Envelope;
use rekey_core::ids::{GrantId, KeyPairId, PrincipalId, RecordId, Subject};
use rekey_core::model::{
    AuditEvent, Certificate, Component, Device, DirectoryProfile, GrantRecord, KeyPairRecord,
    MigrationRow, NonMigratable, Principal, Server, SnapshotCounts, Timestamp,
};
use rekey_core::{Scheme, Target};
use sea_orm::ActiveValue::Set;
use std::str::FromStr;

pub(crate) fn parse<T: FromStr>(what: &'static str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    T::from_str(s).map_err(|e| Error::corrupt(what, format!("{s:?}: {e}")))
}

fn scheme(s: &str) -> Result<Scheme> {
    Scheme::from_name(s).ok_or_else(|| Error::corrupt("scheme", format!("{s:?}")))
}

fn envelope(what: &'static str, bytes: &[u8]) -> Result<Envelope> {
    Envelope::parse(bytes).map_err(|e| Error::corrupt(what, e))
}

fn count(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

pub(crate) fn subject_parts(subject: Subject) -> (&'static str, String) {
    match subject {
        Subject::RecordKey(id) => ("record_key", id.to_string()),
        Subject::PrivateKey(id) => ("private_key", id.to_string()),
    }
}

pub(crate) fn subject(kind: &str, id: &str) -> Result<Subject> {
    match kind {
        "record_key" => Ok(Subject::RecordKey(parse::<RecordId>("record id", id)?)),
        "private_key" => Ok(Subject::PrivateKey(parse::<KeyPairId>("key pair id", id)?)),
        other => Err(Error::corrupt("grant subject kind", format!("{other:?}"))),
    }
}

pub(crate) fn principal_from(m: principal::Model) -> Result<Principal> {
    Ok(Principal {
        id: parse("principal id", &m.id)?,
        kind: parse("principal kind", &m.kind)?,
        name: m.name,
        status: parse("user status", &m.status)?,
        custody: parse("key custody", &m.custody)?,
        service: m
            .service
            .as_deref()
            .map(|s| parse("service kind", s))
            .transpose()?,
        migration: parse("migration state", &m.migration_state)?,
    })
}

pub(crate) fn principal_to(p: &Principal) -> principal::ActiveModel {
    principal::ActiveModel {
        id: Set(p.id.to_string()),
        kind: Set(p.kind.as_str().to_owned()),
        name: Set(p.name.clone()),
        status: Set(p.status.as_str().to_owned()),
        custody: Set(p.custody.as_str().to_owned()),
        service: Set(p.service.map(|s| s.as_str().to_owned())),
        migration_state: Set(p.migration.as_str().to_owned()),
        previous_migration_state: Set(None),
    }
}

pub(crate) fn key_pair_from(m: key_pair::Model) -> Result<KeyPairRecord> {
    Ok(KeyPairRecord {
        id: parse("key pair id", &m.id)?,
        principal: parse("principal id", &m.principal_id)?,
        scheme: scheme(&m.scheme)?,
        public_key: m.public_key,
        wrapped_private_key: m
            .wrapped_private_key
            .as_deref()
            .map(|b| envelope("wrapped private key", b))
            .transpose()?,
        state: parse("key state", &m.state)?,
    })
}

pub(crate) fn key_pair_to(k: &KeyPairRecord) -> key_pair::ActiveModel {
    key_pair::ActiveModel {
        id: Set(k.id.to_string()),
        principal_id: Set(k.principal.to_string()),
        scheme: Set(k.scheme.name().to_owned()),
        public_key: Set(k.public_key.clone()),
        wrapped_private_key: Set(k
            .wrapped_private_key
            .as_ref()
            .map(|e| e.as_bytes().to_vec())),
        state: Set(k.state.as_str().to_owned()),
    }
}

pub(crate) fn grant_from(m: grant::Model) -> Result<GrantRecord> {
    let env = envelope("grant envelope", &m.envelope)?;
    if env.scheme().name() != m.scheme {
        return Err(Error::corrupt(
            "grant",
            format!(
                "grant {} says scheme {} but its envelope is {}",
                m.id,
                m.scheme,
                env.scheme()
            ),
        ));
    }
    Ok(GrantRecord {
        id: parse::<GrantId>("grant id", &m.id)?,
        recipient: parse::<PrincipalId>("principal id", &m.recipient_id)?,
        subject: subject(&m.subject_kind, &m.subject_id)?,
        envelope: env,
        origin: parse("grant origin", &m.origin)?,
        created_at: m.created_at.map(Timestamp),
    })
}

pub(crate) fn grant_to(g: &GrantRecord) -> grant::ActiveModel {
    let (kind, id) = subject_parts(g.subject);
    grant::ActiveModel {
        id: Set(g.id.to_string()),
        recipient_id: Set(g.recipient.to_string()),
        subject_kind: Set(kind.to_owned()),
        subject_id: Set(id),
        scheme: Set(g.envelope.scheme().name().to_owned()),
        legacy: Set(g.envelope.scheme().is_legacy()),
        envelope: Set(g.envelope.as_bytes().to_vec()),
        origin: Set(g.origin.as_str().to_owned()),
        created_at: Set(g.created_at.map(Timestamp::as_millis)),
    }
}

pub(crate) fn migration_from(m: migration::Model) -> Result<MigrationRow> {
    let snapshot = m.snapshot_grants.map(|grants| SnapshotCounts {
        users: count(m.snapshot_users),
        roles: count(m.snapshot_roles),
        services: count(m.snapshot_services),
        grants: count(Some(grants)),
    });
    Ok(MigrationRow {
        vault: parse("vault id", &m.vault_id)?,
        phase: parse("phase", &m.phase)?,
        version: m.version,
        started_at: m.started_at.map(Timestamp),
        started_by: m.started_by,
        snapshot,
        run: m
            .run_id
            .as_deref()
            .map(|r| parse("run id", r))
            .transpose()?,
        target: match m.target.as_deref() {
            Some(t) => Target::from_name(t)
                .ok_or_else(|| Error::corrupt("run target", format!("unknown target {t:?}")))?,
            None => Target::default(),
        },
        previous: m
            .previous_run
            .as_deref()
            .map(|json| {
                serde_json::from_str(json)
                    .map_err(|e| Error::corrupt("previous run", e.to_string()))
            })
            .transpose()?,
    })
}

pub(crate) fn non_migratable_from(m: non_migratable::Model) -> Result<NonMigratable> {
    Ok(NonMigratable {
        grant: parse("grant id", &m.grant_id)?,
        recipient: parse("principal id", &m.recipient_id)?,
        reason: m.reason,
        resolution: parse("resolution", &m.resolution)?,
        resolved_by: m.resolved_by,
    })
}

pub(crate) fn non_migratable_to(n: &NonMigratable) -> non_migratable::ActiveModel {
    non_migratable::ActiveModel {
        grant_id: Set(n.grant.to_string()),
        recipient_id: Set(n.recipient.to_string()),
        reason: Set(n.reason.clone()),
        resolution: Set(n.resolution.as_str().to_owned()),
        resolved_by: Set(n.resolved_by.clone()),
    }
}

pub(crate) fn audit_from(m: audit::Model) -> (u64, AuditEvent) {
    (
        u64::try_from(m.id).unwrap_or(0),
        AuditEvent {
            at: Timestamp(m.at),
            actor: m.actor,
            action: m.action,
            details: m.details,
        },
    )
}

pub(crate) fn audit_to(e: &AuditEvent) -> audit::ActiveModel {
    audit::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        at: Set(e.at.as_millis()),
        actor: Set(e.actor.clone()),
        action: Set(e.action.clone()),
        details: Set(e.details.clone()),
    }
}

pub(crate) fn certificate_from(m: certificate::Model) -> Result<Certificate> {
    Ok(Certificate {
        key_pair: parse("key pair id", &m.key_pair_id)?,
        principal: parse("principal id", &m.principal_id)?,
        fingerprint: m.fingerprint,
        backup_digest: m.backup_digest,
        backup_verified_at: m.backup_verified_at.map(Timestamp),
    })
}

pub(crate) fn certificate_to(c: &Certificate) -> certificate::ActiveModel {
    certificate::ActiveModel {
        key_pair_id: Set(c.key_pair.to_string()),
        principal_id: Set(c.principal.to_string()),
        fingerprint: Set(c.fingerprint.clone()),
        backup_digest: Set(c.backup_digest.clone()),
        backup_verified_at: Set(c.backup_verified_at.map(Timestamp::as_millis)),
    }
}

pub(crate) fn server_from(m: server::Model) -> Server {
    Server {
        name: m.name,
        heartbeat_at: Timestamp(m.heartbeat_at),
        certificate_fingerprints: m
            .certificate_fingerprints
            .split('\n')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    }
}

pub(crate) fn server_to(s: &Server) -> server::ActiveModel {
    server::ActiveModel {
        name: Set(s.name.clone()),
        heartbeat_at: Set(s.heartbeat_at.as_millis()),
        certificate_fingerprints: Set(s.certificate_fingerprints.join("\n")),
    }
}

pub(crate) fn device_from(m: device::Model) -> Result<Device> {
    Ok(Device {
        id: m.id,
        owner: parse("principal id", &m.owner_id)?,
        kind: parse("device kind", &m.kind)?,
        last_sync_at: m.last_sync_at.map(Timestamp),
        unsynced_changes: u32::try_from(m.unsynced_changes).unwrap_or(0),
        written_off: m.written_off,
    })
}

pub(crate) fn device_to(d: &Device) -> device::ActiveModel {
    device::ActiveModel {
        id: Set(d.id.clone()),
        owner_id: Set(d.owner.to_string()),
        kind: Set(d.kind.as_str().to_owned()),
        last_sync_at: Set(d.last_sync_at.map(Timestamp::as_millis)),
        unsynced_changes: Set(i32::try_from(d.unsynced_changes).unwrap_or(i32::MAX)),
        written_off: Set(d.written_off),
    }
}

pub(crate) fn profile_from(m: directory_profile::Model) -> DirectoryProfile {
    DirectoryProfile {
        name: m.name,
        kind: m.kind,
        token_issued_at: m.token_issued_at.map(Timestamp),
    }
}

pub(crate) fn profile_to(p: &DirectoryProfile) -> directory_profile::ActiveModel {
    directory_profile::ActiveModel {
        name: Set(p.name.clone()),
        kind: Set(p.kind.clone()),
        token_issued_at: Set(p.token_issued_at.map(Timestamp::as_millis)),
    }
}

pub(crate) fn component_from(m: component::Model) -> Component {
    Component {
        name: m.name,
        version: m.version,
    }
}

pub(crate) fn component_to(c: &Component) -> component::ActiveModel {
    component::ActiveModel {
        name: Set(c.name.clone()),
        version: Set(c.version.clone()),
    }
}
