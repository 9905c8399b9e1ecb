//! The demo vault: a realistic legacy vault, generated deterministically
//! from a seed (apart from the RSA keys, which come from a reusable cache
//! or are generated on every core).
//!
//! Shape: grants per user are skewed (a few heavy users own most records),
//! some records are shared with other users, with roles (one large role,
//! many small ones) or with server-held keys; about a tenth of the users are
//! `managed` (their private key held for the directory master key); three
//! server-held services each have a certificate whose private key is written
//! to the key directory. Every principal has its own RSA key.

use crate::error::EngineError;
use crate::keycache::KeySource;
use crate::password::master_secret;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;
use rekey_core::kek::wrap_private_key;
use rekey_core::model::{
    Certificate, Component, Device, DeviceKind, DirectoryProfile, GrantOrigin, GrantRecord,
    KeyCustody, KeyPairRecord, KeyState, Membership, MigrationState, Principal, PrincipalKind,
    RecordRow, Server, ServiceKind, Timestamp, UserStatus,
};
use rekey_core::record::encrypt_record;
use rekey_core::*;
use rekey_storage::SeedData;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSpec {
    /// Users (e2ee and managed).
    pub users: usize,
    /// Roles.
    pub roles: usize,
    /// Records.
    pub records: usize,
    /// RSA modulus size of every legacy key (2048 or 4096).
    pub rsa_bits: usize,
    /// Seed for every choice (not for RSA key generation).
    pub seed: u64,
    /// Seed what preflight must catch.
    pub with_problems: bool,
}

impl Default for DemoSpec {
    fn default() -> Self {
        Self {
            users: 200,
            roles: 20,
            records: 2000,
            rsa_bits: 2048,
            seed: 1,
            with_problems: false,
        }
    }
}

/// The demo users' passwords (so logins can be simulated), saved beside the
/// vault. Demo only: a real vault never has such a file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credentials {
    /// The vault.
    pub vault: VaultId,
    /// Seed used.
    pub seed: u64,
    /// e2ee users by name: id and password.
    pub users: BTreeMap<String, DemoUser>,
}

/// One demo user's login, and what it must be able to read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DemoUser {
    /// The user's id.
    pub id: PrincipalId,
    /// The password.
    pub password: String,
    /// How many records the seed lets it read (directly or via roles).
    pub expected_records: usize,
    /// SHA-256 of those record ids, sorted (see `client::access_digest`).
    pub expected_digest: String,
}

/// The generated vault.
#[derive(Debug)]
pub struct DemoVault {
    /// The vault id.
    pub vault: VaultId,
    /// Rows to seed.
    pub data: SeedData,
    /// Passwords of the e2ee users.
    pub credentials: Credentials,
    /// The services' legacy keys, for the key directory.
    pub server_keys: Vec<LegacyRsaPrivateKey>,
}

/// The plaintext of a demo record, recomputable by `verify`.
#[must_use]
pub fn record_plaintext(id: RecordId) -> Vec<u8> {
    format!("demo secret of record {id}: correct horse battery staple").into_bytes()
}

/// Demo component versions (all able to speak the new scheme).
pub const DEMO_VERSION: &str = "10.2.0";

struct Rng(ChaCha20Rng);

impl Rng {
    fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.unit() * n as f64) as usize % n
        }
    }
    /// Skewed towards 0: a few heavy items.
    fn skewed(&mut self, n: usize) -> usize {
        let u = self.unit();
        ((u * u * u) * n as f64) as usize % n.max(1)
    }
    fn id(&mut self) -> [u8; 16] {
        let mut b = [0u8; 16];
        self.0.fill_bytes(&mut b);
        // RFC 9562 version 4 / variant bits, so they print as normal UUIDs.
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        b
    }
    fn password(&mut self) -> String {
        const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        (0..16)
            .map(|_| ALPHABET[self.below(ALPHABET.len())] as char)
            .collect()
    }
}

const FIRST: [&str; 24] = [
    "ada",
    "alan",
    "barbara",
    "claude",
    "dennis",
    "donald",
    "edsger",
    "frances",
    "grace",
    "guido",
    "hedy",
    "ivan",
    "john",
    "ken",
    "leslie",
    "linus",
    "margaret",
    "niklaus",
    "radia",
    "richard",
    "shafi",
    "tim",
    "whitfield",
    "yukihiro",
];

struct GrantSpec {
    recipient: usize,
    subject: Subject,
    secret: zeroize::Zeroizing<Vec<u8>>,
}

/// Generates the demo vault. `progress(done, total)` reports RSA key
/// generation and grant wrapping.
pub fn generate(
    spec: &DemoSpec,
    keys: &mut KeySource,
    progress: &(dyn Fn(&str, usize, usize) + Sync),
) -> Result<DemoVault, EngineError> {
    if spec.users < 2 {
        return Err(EngineError::BadDemoSpec("at least 2 users"));
    }
    if spec.roles > spec.users {
        return Err(EngineError::BadDemoSpec("no more roles than users"));
    }
    let mut rng = Rng(ChaCha20Rng::seed_from_u64(spec.seed));
    let vault = VaultId::from_bytes(rng.id());
    let now = Timestamp::now();
    let n_services = 3;
    let n_keys = spec.users + spec.roles + n_services;
    let rsa = keys.take(n_keys, spec.rsa_bits, &|d, t| {
        progress("generating RSA keys", d, t)
    })?;

    // Principals: users, roles, services, in key order.
    let mut principals = Vec::with_capacity(n_keys);
    let mut credentials = BTreeMap::new();
    for i in 0..spec.users {
        let id = PrincipalId::from_bytes(rng.id());
        let managed = i % 10 == 2;
        let name = format!("{}.{:04}", FIRST[i % FIRST.len()], i + 1);
        let deactivated = spec.with_problems && i == spec.users - 1;
        principals.push(Principal {
            id,
            kind: PrincipalKind::User,
            name: name.clone(),
            status: if deactivated {
                UserStatus::Deactivated
            } else {
                UserStatus::Active
            },
            custody: if managed {
                KeyCustody::Managed
            } else {
                KeyCustody::E2ee
            },
            service: None,
            migration: MigrationState::Pending,
        });
        if !managed {
            credentials.insert(
                name,
                DemoUser {
                    id,
                    password: rng.password(),
                    expected_records: 0,
                    expected_digest: String::new(),
                },
            );
        }
    }
    for r in 0..spec.roles {
        principals.push(Principal {
            id: PrincipalId::from_bytes(rng.id()),
            kind: PrincipalKind::Role,
            name: if r == 0 {
                "everyone-engineering".into()
            } else {
                format!("team-{r:03}")
            },
            status: UserStatus::Active,
            custody: KeyCustody::Managed,
            service: None,
            migration: MigrationState::Pending,
        });
    }
    let services = [
        (ServiceKind::VaultKey, "vault-key"),
        (ServiceKind::PasswordResetKey, "password-reset-key"),
        (ServiceKind::DirectoryMasterKey, "directory-master-key"),
    ];
    for (kind, name) in services {
        principals.push(Principal {
            id: PrincipalId::from_bytes(rng.id()),
            kind: PrincipalKind::Service,
            name: name.into(),
            status: UserStatus::Active,
            custody: KeyCustody::Managed,
            service: Some(kind),
            migration: MigrationState::Pending,
        });
    }
    let user_idx = |i: usize| i;
    let role_idx = |r: usize| spec.users + r;
    let svc_idx = |s: usize| spec.users + spec.roles + s;
    let directory = svc_idx(2);

    // Key pairs: e2ee users under their password's KEK; roles and managed
    // users under a random KEK their holders get grants for; services in
    // the key directory.
    let key_pair_ids: Vec<KeyPairId> = (0..n_keys)
        .map(|_| KeyPairId::from_bytes(rng.id()))
        .collect();
    let mut holder_keks: Vec<Option<Kek>> = Vec::with_capacity(n_keys);
    let mut kek_seeds = zeroize::Zeroizing::new(Vec::with_capacity(n_keys));
    for _ in 0..n_keys {
        let mut b = [0u8; 32];
        rng.0.fill_bytes(&mut b);
        kek_seeds.push(b);
    }
    let passwords: BTreeMap<PrincipalId, String> = credentials
        .values()
        .map(|u| (u.id, u.password.clone()))
        .collect();
    let wrapped: Vec<Result<Option<Envelope>, EngineError>> = (0..n_keys)
        .into_par_iter()
        .map(|i| {
            let p = &principals[i];
            let binding = KeyBinding {
                vault,
                owner: p.id,
                key_pair: key_pair_ids[i],
            };
            let kek = match (p.kind, passwords.get(&p.id)) {
                (PrincipalKind::Service, _) => return Ok(None),
                (PrincipalKind::User, Some(pw)) => {
                    Kek::derive(&master_secret(pw, vault, p.id)?, vault, p.id)?
                }
                _ => Kek::from_array(kek_seeds[i]),
            };
            Ok(Some(wrap_private_key(
                &mut rand_core::OsRng,
                &kek,
                &binding,
                rsa[i].dangerous_pkcs8_der(),
            )?))
        })
        .collect();
    let mut key_pairs = Vec::with_capacity(n_keys);
    for (i, w) in wrapped.into_iter().enumerate() {
        let p = &principals[i];
        let is_holder_kek = p.kind == PrincipalKind::Role
            || (p.kind == PrincipalKind::User && p.custody == KeyCustody::Managed);
        holder_keks.push(is_holder_kek.then(|| Kek::from_array(kek_seeds[i])));
        key_pairs.push(KeyPairRecord {
            id: key_pair_ids[i],
            principal: p.id,
            scheme: Scheme::RsaOaepSha256,
            public_key: rsa[i].public_key().to_spki_der().to_vec(),
            wrapped_private_key: w?,
            state: KeyState::Legacy,
        });
    }

    let mut grant_specs: Vec<GrantSpec> = Vec::new();
    // Memberships: one large role, the rest small and skewed.
    let mut memberships = Vec::new();
    let mut role_members: Vec<Vec<usize>> = Vec::with_capacity(spec.roles);
    for r in 0..spec.roles {
        let size = if r == 0 {
            (spec.users / 3).max(2)
        } else {
            2 + rng.skewed((spec.users / 10).max(1))
        };
        let mut members: Vec<usize> = Vec::new();
        while members.len() < size.min(spec.users) {
            let u = rng.below(spec.users);
            if !members.contains(&u) {
                members.push(u);
            }
        }
        role_members.push(members.clone());
        for &m in &members {
            memberships.push(Membership {
                role: principals[role_idx(r)].id,
                member: principals[user_idx(m)].id,
            });
            grant_specs.push(GrantSpec {
                recipient: user_idx(m),
                subject: Subject::PrivateKey(key_pair_ids[role_idx(r)]),
                secret: zeroize::Zeroizing::new(kek_seeds[role_idx(r)].to_vec()),
            });
        }
    }
    // Managed users: their KEK is held for the directory master key.
    for (i, p) in principals.iter().enumerate().take(spec.users) {
        if p.custody == KeyCustody::Managed {
            grant_specs.push(GrantSpec {
                recipient: directory,
                subject: Subject::PrivateKey(key_pair_ids[i]),
                secret: zeroize::Zeroizing::new(kek_seeds[i].to_vec()),
            });
        }
    }

    // Records and their grants.
    let mut records = Vec::with_capacity(spec.records);
    let mut record_readers: Vec<Vec<usize>> = Vec::with_capacity(spec.records);
    for _ in 0..spec.records {
        let id = RecordId::from_bytes(rng.id());
        let mut key_bytes = [0u8; 32];
        rng.0.fill_bytes(&mut key_bytes);
        let key = RecordKey::from_array(key_bytes);
        let key_bytes = zeroize::Zeroizing::new(*key.dangerous_as_bytes());
        records.push(RowSpec { id, key });
        let mut readers = vec![user_idx(rng.skewed(spec.users))];
        let shares = match rng.below(100) {
            0..=49 => 0,
            50..=79 => 1,
            80..=94 => 2,
            _ => 5 + rng.below(15),
        };
        for _ in 0..shares {
            let u = user_idx(rng.below(spec.users));
            if !readers.contains(&u) {
                readers.push(u);
            }
        }
        if spec.roles > 0 && rng.below(100) < 35 {
            readers.push(role_idx(rng.skewed(spec.roles)));
        }
        match rng.below(100) {
            0..=1 => readers.push(svc_idx(0)),
            2 => readers.push(svc_idx(1)),
            _ => {}
        }
        record_readers.push(readers.clone());
        for r in readers {
            grant_specs.push(GrantSpec {
                recipient: r,
                subject: Subject::RecordKey(id),
                secret: zeroize::Zeroizing::new(key_bytes.to_vec()),
            });
        }
    }

    // Wrap every grant on every core. Mostly OAEP-SHA-256, some of the
    // older variants.
    let total = grant_specs.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let schemes = [
        Scheme::RsaOaepSha256,
        Scheme::RsaOaepSha1,
        Scheme::RsaOaepSha256Mgf1Sha1,
    ];
    let grant_ids: Vec<GrantId> = (0..total).map(|_| GrantId::from_bytes(rng.id())).collect();
    let envelopes: Vec<Result<Envelope, CryptoError>> = grant_specs
        .par_iter()
        .enumerate()
        .map(|(i, g)| {
            let scheme = schemes[if i % 10 < 8 { 0 } else { 1 + i % 2 }];
            let out = wrap_legacy_grant(&rsa[g.recipient].public_key(), scheme, &g.secret);
            let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if d % 256 == 0 || d == total {
                progress("wrapping legacy grants", d, total);
            }
            out
        })
        .collect();
    let mut grants = Vec::with_capacity(total);
    for ((g, env), id) in grant_specs.iter().zip(envelopes).zip(&grant_ids) {
        grants.push(GrantRecord {
            id: *id,
            recipient: principals[g.recipient].id,
            subject: g.subject,
            envelope: env?,
            origin: GrantOrigin::Legacy,
            created_at: Some(now),
        });
    }
    let mut corrupt: Option<(usize, RecordId)> = None;
    if spec.with_problems {
        // One corrupt legacy grant to a user: a flipped ciphertext byte.
        if let Some((i, g)) = grants.iter_mut().enumerate().find(|(i, g)| {
            matches!(g.subject, Subject::RecordKey(_)) && grant_specs[*i].recipient < spec.users
        }) {
            let mut bytes = g.envelope.as_bytes().to_vec();
            let last = bytes.len() - 1;
            bytes[last] ^= 0x5a;
            g.envelope = Envelope::parse(&bytes)?;
            if let Subject::RecordKey(r) = g.subject {
                corrupt = Some((grant_specs[i].recipient, r));
            }
        }
    }

    // What each user must be able to read: records granted to it, or to a
    // role it belongs to (minus the corrupt grant, unless a role covers it).
    let mut access: Vec<std::collections::BTreeSet<RecordId>> =
        vec![Default::default(); spec.users];
    for (rec, readers) in records.iter().zip(&record_readers) {
        for &reader in readers {
            if reader < spec.users {
                if corrupt != Some((reader, rec.id)) {
                    access[reader].insert(rec.id);
                }
            } else if reader < spec.users + spec.roles {
                for &m in &role_members[reader - spec.users] {
                    access[m].insert(rec.id);
                }
            }
        }
    }
    for (i, p) in principals.iter().enumerate().take(spec.users) {
        if let Some(u) = credentials.get_mut(&p.name) {
            u.expected_records = access[i].len();
            u.expected_digest = crate::client::access_digest(&access[i]);
        }
    }

    let record_rows: Vec<RecordRow> = records
        .par_iter()
        .map(|r| {
            Ok(RecordRow {
                id: r.id,
                ciphertext: encrypt_record(
                    &mut rand_core::OsRng,
                    &r.key,
                    vault,
                    r.id,
                    &record_plaintext(r.id),
                )?,
            })
        })
        .collect::<Result<_, CryptoError>>()?;

    let certificates = (0..n_services)
        .map(|s| Certificate {
            key_pair: key_pair_ids[svc_idx(s)],
            principal: principals[svc_idx(s)].id,
            fingerprint: rsa[svc_idx(s)].public_key().fingerprint(),
            backup_digest: None,
            backup_verified_at: None,
        })
        .collect::<Vec<_>>();
    let fingerprints: Vec<String> = certificates.iter().map(|c| c.fingerprint.clone()).collect();
    let mut servers = vec![Server {
        name: crate::host_name(),
        heartbeat_at: now,
        certificate_fingerprints: fingerprints.clone(),
    }];
    if spec.with_problems {
        servers.push(Server {
            name: format!("{}-standby", crate::host_name()),
            heartbeat_at: now,
            certificate_fingerprints: fingerprints,
        });
    }
    let mut devices = Vec::new();
    for (i, p) in principals.iter().enumerate().take(spec.users).step_by(7) {
        devices.push(Device {
            id: format!("{}-{}", if i % 2 == 0 { "laptop" } else { "phone" }, p.name),
            owner: p.id,
            kind: if i % 2 == 0 {
                DeviceKind::OfflineAddon
            } else {
                DeviceKind::Mobile
            },
            last_sync_at: Some(now),
            unsynced_changes: 0,
            written_off: false,
        });
    }
    if spec.with_problems {
        if let Some(d) = devices
            .iter_mut()
            .find(|d| d.kind == DeviceKind::OfflineAddon)
        {
            d.unsynced_changes = 3;
            d.last_sync_at = Some(Timestamp(now.0 - 9 * 24 * 3600 * 1000));
        }
    }
    let token_at = if spec.with_problems {
        Timestamp(now.0 - 90 * 24 * 3600 * 1000)
    } else {
        now
    };
    let data = SeedData {
        principals,
        key_pairs,
        records: record_rows,
        grants,
        memberships,
        certificates,
        servers,
        devices,
        directory_profiles: vec![DirectoryProfile {
            name: "entra-id".into(),
            kind: "entra_id".into(),
            token_issued_at: Some(token_at),
        }],
        components: ["server", "desktop_client", "web_client"]
            .iter()
            .map(|n| Component {
                name: (*n).into(),
                version: DEMO_VERSION.into(),
            })
            .collect(),
    };
    let server_keys = rsa.into_iter().skip(spec.users + spec.roles).collect();
    Ok(DemoVault {
        vault,
        data,
        credentials: Credentials {
            vault,
            seed: spec.seed,
            users: credentials,
        },
        server_keys,
    })
}

struct RowSpec {
    id: RecordId,
    key: RecordKey,
}

impl Credentials {
    /// Writes the file (mode 0600: it holds passwords).
    pub fn save(&self, path: &std::path::Path) -> Result<(), EngineError> {
        let fail = |reason: String| EngineError::Credentials {
            path: path.to_owned(),
            reason,
        };
        let json = serde_json::to_vec_pretty(self).map_err(|e| fail(e.to_string()))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        use std::io::Write;
        let mut f = opts.open(path).map_err(|e| fail(e.to_string()))?;
        f.write_all(&json).map_err(|e| fail(e.to_string()))
    }

    /// Reads the file.
    pub fn load(path: &std::path::Path) -> Result<Self, EngineError> {
        let fail = |reason: String| EngineError::Credentials {
            path: path.to_owned(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| fail(format!("not a rekey credentials file ({e})")))
    }
}

impl crate::engine::Engine {
    /// Seeds an empty vault with a generated demo vault: its identity, its
    /// rows (batched, one transaction per chunk), settings, and the
    /// services' private keys into the key directory.
    pub async fn seed_demo(
        &self,
        demo: &DemoVault,
    ) -> Result<rekey_storage::SeedReport, EngineError> {
        let keys = self.key_dir().ok_or(EngineError::Internal(
            "seeding the demo needs the key directory",
        ))?;
        for k in &demo.server_keys {
            keys.store_legacy_key(k)?;
        }
        self.vault().set_vault_id(demo.vault).await?;
        let report = self.vault().seed(&demo.data, 5000).await?;
        // The servers carry the time generation began; a large vault takes
        // minutes to generate and store, and preflight (so `start`) wants a
        // heartbeat from the last five minutes: they report in now.
        let now = Timestamp::now();
        for s in &demo.data.servers {
            self.vault()
                .heartbeat(&rekey_core::model::Server {
                    heartbeat_at: now,
                    ..s.clone()
                })
                .await?;
        }
        self.vault()
            .set_settings(&rekey_core::model::Settings {
                offline_access_allowed: true,
                mobile_sync_allowed: true,
            })
            .await?;
        Ok(report)
    }
}
