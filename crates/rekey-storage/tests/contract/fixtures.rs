//! A small legacy vault, built from plain rows (no real crypto: storage
//! never opens envelopes, it only keeps them).

use rekey_core::ids::{GrantId, KeyPairId, PrincipalId, RecordId, RunId, Subject};
use rekey_core::model::{
    AuditEvent, GrantOrigin, GrantRecord, KeyCustody, KeyPairRecord, KeyState, Membership,
    MigrationState, Principal, PrincipalKind, RecordRow, Timestamp, UserStatus,
};
use rekey_core::{Envelope, Scheme};
use rekey_storage::{MigrationWrite, PrincipalMigration, SeedData};

pub fn legacy_envelope(seed: u8) -> Envelope {
    Envelope::from_parts(Scheme::RsaOaepSha256, &[], &[seed; 256]).unwrap()
}

pub fn hpke_envelope(seed: u8) -> Envelope {
    Envelope::from_parts(Scheme::HpkeP256, &[4; 65], &[seed; 48]).unwrap()
}

pub fn kek_envelope() -> Envelope {
    Envelope::from_parts(Scheme::Aes256GcmKek, &[7; 12], &[9; 64]).unwrap()
}

pub fn user(name: &str, status: UserStatus) -> Principal {
    Principal {
        id: PrincipalId::random(),
        kind: PrincipalKind::User,
        name: name.to_owned(),
        status,
        custody: KeyCustody::E2ee,
        service: None,
        migration: MigrationState::Pending,
    }
}

pub fn role(name: &str) -> Principal {
    Principal {
        kind: PrincipalKind::Role,
        ..user(name, UserStatus::Active)
    }
}

pub fn legacy_key_pair(owner: PrincipalId) -> KeyPairRecord {
    KeyPairRecord {
        id: KeyPairId::random(),
        principal: owner,
        scheme: Scheme::RsaOaepSha256,
        public_key: vec![0x30; 294],
        wrapped_private_key: Some(kek_envelope()),
        state: KeyState::Legacy,
    }
}

pub fn new_key_pair(owner: PrincipalId) -> KeyPairRecord {
    KeyPairRecord {
        id: KeyPairId::random(),
        principal: owner,
        scheme: Scheme::HpkeP256,
        public_key: vec![4; 65],
        wrapped_private_key: Some(kek_envelope()),
        state: KeyState::Current,
    }
}

pub fn legacy_grant(recipient: PrincipalId, record: RecordId) -> GrantRecord {
    GrantRecord {
        id: GrantId::random(),
        recipient,
        subject: Subject::RecordKey(record),
        envelope: legacy_envelope(1),
        origin: GrantOrigin::Legacy,
        created_at: Some(Timestamp(1_700_000_000_000)),
    }
}

pub fn audit(action: &str) -> AuditEvent {
    AuditEvent {
        at: Timestamp::now(),
        actor: "test".to_owned(),
        action: action.to_owned(),
        details: "{}".to_owned(),
    }
}

/// Users, each with a legacy key pair and `grants_each` legacy grants on
/// their own records, plus one role with the first two users as members.
pub struct Fixture {
    pub users: Vec<Principal>,
    pub role: Principal,
    pub data: SeedData,
}

pub fn fixture(users: usize, grants_each: usize) -> Fixture {
    let mut data = SeedData::default();
    let users: Vec<Principal> = (0..users)
        .map(|i| user(&format!("user{i}"), UserStatus::Active))
        .collect();
    let role = role("finance");
    data.principals.extend(users.iter().cloned());
    data.principals.push(role.clone());
    for p in &data.principals {
        data.key_pairs.push(legacy_key_pair(p.id));
    }
    for u in users.iter().chain(std::iter::once(&role)) {
        for _ in 0..grants_each {
            let r = RecordRow {
                id: RecordId::random(),
                ciphertext: vec![0xab; 40],
            };
            data.grants.push(legacy_grant(u.id, r.id));
            data.records.push(r);
        }
    }
    for u in users.iter().take(2) {
        data.memberships.push(Membership {
            role: role.id,
            member: u.id,
        });
    }
    Fixture { users, role, data }
}

/// [`write_set`] for run `run` (a test that starts a run of its own).
pub fn write_set_in(run: RunId, principal: PrincipalId, pending: &[GrantRecord]) -> MigrationWrite {
    MigrationWrite {
        run,
        ..write_set(principal, pending)
    }
}

/// The write set migrating one principal: a new key pair and one HPKE grant
/// per pending grant.
pub fn write_set(principal: PrincipalId, pending: &[GrantRecord]) -> MigrationWrite {
    let kp = new_key_pair(principal);
    MigrationWrite {
        run: rekey_test_support::lifecycle::test_run(),
        principals: vec![PrincipalMigration {
            principal,
            covered_grants: pending.iter().map(|g| g.id).collect(),
        }],
        key_pairs: vec![kp],
        grants: pending
            .iter()
            .map(|g| GrantRecord {
                // As the engine writes them.
                id: GrantId::time_ordered(),
                recipient: principal,
                subject: g.subject,
                envelope: hpke_envelope(2),
                origin: GrantOrigin::Migration,
                created_at: Some(Timestamp::now()),
            })
            .collect(),
        membership_grants: vec![],
        non_migratable: vec![],
        pending_holders: vec![],
        current_keys: vec![],
        audit: audit("migrate_principal"),
    }
}
