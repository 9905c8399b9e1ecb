//! A small legacy vault on a temporary SQLite file, with one certificate
//! whose key is in a key directory beside it: what the preflight and
//! certificate-backup tests start from.

use rekey_core::ids::{GrantId, KeyPairId, PrincipalId, RecordId, Subject};
use rekey_core::model::{
    Certificate, Component, Device, DeviceKind, DirectoryProfile, GrantOrigin, GrantRecord,
    KeyCustody, KeyPairRecord, KeyState, Membership, MigrationState, Principal, PrincipalKind,
    RecordRow, Server, ServiceKind, Settings, Timestamp, UserStatus,
};
use rekey_core::{LegacyRsaPrivateKey, Scheme, wrap_legacy_grant};
use rekey_storage::{SeedData, Vault};
use std::path::{Path, PathBuf};

/// The certificate's key.
pub const CERT_KEY: &[u8] = include_bytes!("../../rekey-core/tests/fixtures/rsa-2048-b.pk8");
/// Alice's key.
pub const USER_KEY: &[u8] = include_bytes!("../../rekey-core/tests/fixtures/rsa-2048-c.pk8");
/// Every other principal's key.
pub const OTHER_KEY: &[u8] = include_bytes!("../../rekey-core/tests/fixtures/rsa-2048-d.pk8");

/// A temporary directory named after its test, removed on drop
/// (`tempfile`'s, under a `rekey-<label>-` prefix).
#[derive(Debug)]
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A fresh directory named after `label`.
    #[must_use]
    pub fn new(label: &str) -> Self {
        Self(
            tempfile::Builder::new()
                .prefix(&format!("rekey-{label}-"))
                .tempdir()
                .unwrap(),
        )
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Now.
#[must_use]
pub fn now() -> Timestamp {
    Timestamp::now()
}

/// An active, pending principal of this kind.
#[must_use]
pub fn principal(name: &str, kind: PrincipalKind, status: UserStatus) -> Principal {
    Principal {
        id: PrincipalId::random(),
        kind,
        name: name.to_owned(),
        status,
        custody: if kind == PrincipalKind::User {
            KeyCustody::E2ee
        } else {
            KeyCustody::Managed
        },
        service: (kind == PrincipalKind::Service).then_some(ServiceKind::VaultKey),
        migration: MigrationState::Pending,
    }
}

/// A legacy key pair of `owner` for the key `der`.
#[must_use]
pub fn legacy_key_pair(owner: &Principal, der: &[u8]) -> KeyPairRecord {
    let key = LegacyRsaPrivateKey::from_pkcs8_der(der).unwrap();
    KeyPairRecord {
        id: KeyPairId::random(),
        principal: owner.id,
        scheme: Scheme::RsaOaepSha256,
        public_key: key.public_key().to_spki_der().to_vec(),
        wrapped_private_key: None,
        state: KeyState::Legacy,
    }
}

/// The certificate fingerprint of the key `der`.
#[must_use]
pub fn key_fingerprint(der: &[u8]) -> String {
    LegacyRsaPrivateKey::from_pkcs8_der(der)
        .unwrap()
        .public_key()
        .fingerprint()
}

/// What a seeded vault holds.
#[derive(Debug)]
pub struct Seeded {
    pub vault: Vault,
    pub dir: TempDir,
    pub vault_key: Principal,
    pub certificate: Certificate,
    pub key_dir: PathBuf,
}

/// One record for each of `who`, shared to it alone by a legacy grant to
/// its key.
fn one_record_each(who: &[(&Principal, &[u8])]) -> (Vec<RecordRow>, Vec<GrantRecord>) {
    let mut records = Vec::new();
    let mut grants = Vec::new();
    for &(who, der) in who {
        let record = RecordRow {
            id: RecordId::random(),
            ciphertext: vec![1, 2, 3],
        };
        let key = LegacyRsaPrivateKey::from_pkcs8_der(der).unwrap();
        grants.push(GrantRecord {
            id: GrantId::random(),
            recipient: who.id,
            subject: Subject::RecordKey(record.id),
            envelope: wrap_legacy_grant(&key.public_key(), Scheme::RsaOaepSha256, &[5u8; 32])
                .unwrap(),
            origin: GrantOrigin::Legacy,
            created_at: Some(now()),
        });
        records.push(record);
    }
    (records, grants)
}

/// A legacy vault with: a vault-key service holding a certificate (its
/// private key in `key_dir`), an active user `alice` and a deactivated
/// `bob` (each with a legacy key and one record shared to them), a role
/// `ops` with both as members and a role `finance` with only `bob`, one
/// server heartbeating now, every component at 10.1.0, offline access
/// allowed with an offline add-on holding 2 unsynchronised changes, and a
/// SCIM profile whose token predates everything.
pub async fn seeded_vault() -> Seeded {
    let dir = TempDir::new("vault");
    let db = dir.path().join("vault.db");
    let vault = Vault::init(&format!("sqlite://{}?mode=rwc", db.display()))
        .await
        .unwrap();

    let vault_key = principal("vault-key", PrincipalKind::Service, UserStatus::Active);
    let alice = principal("alice", PrincipalKind::User, UserStatus::Active);
    let bob = principal("bob", PrincipalKind::User, UserStatus::Deactivated);
    let cert_pair = legacy_key_pair(&vault_key, CERT_KEY);
    let alice_pair = legacy_key_pair(&alice, USER_KEY);
    let bob_pair = legacy_key_pair(&bob, OTHER_KEY);
    let ops = principal("ops", PrincipalKind::Role, UserStatus::Active);
    let finance = principal("finance", PrincipalKind::Role, UserStatus::Active);
    let (ops_pair, finance_pair) = (
        legacy_key_pair(&ops, OTHER_KEY),
        legacy_key_pair(&finance, OTHER_KEY),
    );
    let memberships = [(&ops, &alice), (&ops, &bob), (&finance, &bob)]
        .map(|(role, member)| Membership {
            role: role.id,
            member: member.id,
        })
        .to_vec();
    let certificate = Certificate {
        key_pair: cert_pair.id,
        principal: vault_key.id,
        fingerprint: key_fingerprint(CERT_KEY),
        backup_digest: None,
        backup_verified_at: None,
    };
    let (records, grants) = one_record_each(&[(&alice, USER_KEY), (&bob, OTHER_KEY)]);
    let seed = SeedData {
        principals: vec![vault_key.clone(), alice.clone(), bob.clone(), ops, finance],
        key_pairs: vec![cert_pair, alice_pair, bob_pair, ops_pair, finance_pair],
        memberships,
        records,
        grants,
        certificates: vec![certificate.clone()],
        servers: vec![Server {
            name: "server-1".to_owned(),
            heartbeat_at: now(),
            certificate_fingerprints: vec![certificate.fingerprint.clone()],
        }],
        devices: vec![Device {
            id: "alice-laptop".to_owned(),
            owner: alice.id,
            kind: DeviceKind::OfflineAddon,
            last_sync_at: Some(Timestamp(now().0 - 60_000)),
            unsynced_changes: 2,
            written_off: false,
        }],
        directory_profiles: vec![DirectoryProfile {
            name: "corp-scim".to_owned(),
            kind: "scim".to_owned(),
            token_issued_at: Some(Timestamp(1_000)),
        }],
        components: ["server", "desktop_client", "web_client"]
            .into_iter()
            .map(|n| Component {
                name: n.to_owned(),
                version: "10.1.0".to_owned(),
            })
            .collect(),
    };
    vault.seed(&seed, 1000).await.unwrap();
    vault
        .set_settings(&Settings {
            offline_access_allowed: true,
            mobile_sync_allowed: false,
        })
        .await
        .unwrap();

    let key_dir = dir.path().join("keys");
    std::fs::create_dir_all(&key_dir).unwrap();
    std::fs::write(
        key_dir.join(format!("{}.pk8", certificate.fingerprint)),
        CERT_KEY,
    )
    .unwrap();
    Seeded {
        vault,
        dir,
        vault_key,
        certificate,
        key_dir,
    }
}
