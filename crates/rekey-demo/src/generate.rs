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

use crate::credentials::{Credentials, DemoUser, access_digest};
use crate::error::DemoError;
use crate::keycache::KeySource;
use crate::password::{KdfParams, master_secret};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;
use rekey_core::auth::{LoginAuthenticator, Verifier};
use rekey_core::kek::wrap_private_key;
use rekey_core::model::{
    Certificate, Component, Device, DeviceKind, DirectoryProfile, GrantOrigin, GrantRecord,
    KeyCustody, KeyPairRecord, KeyState, Membership, MigrationState, Principal, PrincipalKind,
    RecordRow, Server, ServiceKind, Timestamp, UserStatus,
};
use rekey_core::record::encrypt_record;
use rekey_core::*;
use rekey_storage::SeedData;
use std::collections::{BTreeMap, BTreeSet};
use zeroize::Zeroizing;

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
    /// The simulated clients' password KDF.
    pub kdf: KdfParams,
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
            kdf: KdfParams::RECOMMENDED,
        }
    }
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
    /// Login verifiers of the e2ee users (the migration API's built-in
    /// client login).
    pub verifiers: Vec<(PrincipalId, Verifier)>,
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

/// The user (by index) and record whose grant `--with-problems` corrupts.
type LostGrant = (usize, RecordId);

/// The key pairs, and the e2ee users' login verifiers.
type KeysAndLogins = (Vec<KeyPairRecord>, Vec<(PrincipalId, Verifier)>);

/// A legacy grant to be wrapped: to principal number `recipient`.
struct GrantSpec {
    recipient: usize,
    subject: Subject,
    secret: Zeroizing<Vec<u8>>,
}

/// Server-held services, in key order (the directory master key last).
const SERVICES: [(ServiceKind, &str); 3] = [
    (ServiceKind::VaultKey, "vault-key"),
    (ServiceKind::PasswordResetKey, "password-reset-key"),
    (ServiceKind::DirectoryMasterKey, "directory-master-key"),
];

/// Where each principal sits in the key order: users, roles, services.
#[derive(Clone, Copy)]
struct Layout {
    users: usize,
    roles: usize,
}

impl Layout {
    fn role(self, r: usize) -> usize {
        self.users + r
    }
    fn service(self, s: usize) -> usize {
        self.users + self.roles + s
    }
    fn directory(self) -> usize {
        self.service(2)
    }
    fn keys(self) -> usize {
        self.users + self.roles + SERVICES.len()
    }
}

/// A record being generated: its id, key and readers (by key order).
struct RowSpec {
    id: RecordId,
    key: RecordKey,
    readers: Vec<usize>,
}

/// What the generator has made so far.
struct Draft {
    spec: DemoSpec,
    at: Layout,
    rng: Rng,
    vault: VaultId,
    now: Timestamp,
    principals: Vec<Principal>,
    credentials: BTreeMap<String, DemoUser>,
    key_pair_ids: Vec<KeyPairId>,
    kek_seeds: Zeroizing<Vec<[u8; 32]>>,
    grant_specs: Vec<GrantSpec>,
    memberships: Vec<Membership>,
    role_members: Vec<Vec<usize>>,
    records: Vec<RowSpec>,
}

/// Generates the demo vault. `progress(what, done, total)` reports RSA key
/// generation and grant wrapping. The same spec gives the same vault, RSA
/// keys aside: every choice comes from one ChaCha20 stream seeded by
/// `spec.seed`, drawn in a fixed order.
pub fn generate(
    spec: &DemoSpec,
    keys: &mut KeySource,
    progress: &(dyn Fn(&str, usize, usize) + Sync),
) -> Result<DemoVault, DemoError> {
    spec.check()?;
    let mut d = Draft::new(*spec);
    let rsa = keys.take(d.at.keys(), spec.rsa_bits, &|done, total| {
        progress("generating RSA keys", done, total)
    })?;
    d.principals();
    d.key_pair_ids = (0..d.at.keys())
        .map(|_| KeyPairId::from_bytes(d.rng.id()))
        .collect();
    for _ in 0..d.at.keys() {
        let mut b = [0u8; 32];
        d.rng.0.fill_bytes(&mut b);
        d.kek_seeds.push(b);
    }
    let (key_pairs, verifiers) = d.key_pairs(&rsa)?;
    d.memberships();
    d.managed_users_to_directory();
    d.records();
    let grants = d.legacy_grants(&rsa, progress)?;
    let (grants, corrupt) = d.corrupt_one_grant(grants)?;
    d.expected_access(corrupt);
    let records = d.record_rows()?;
    let data = d.seed_data(&rsa, key_pairs, grants, records);
    let server_keys = rsa.into_iter().skip(d.at.service(0)).collect();
    Ok(DemoVault {
        vault: d.vault,
        data,
        credentials: Credentials {
            vault: d.vault,
            seed: spec.seed,
            kdf: spec.kdf,
            users: d.credentials,
        },
        server_keys,
        verifiers,
    })
}

impl DemoSpec {
    /// Refuses a spec that cannot make a vault, naming the flag to change.
    pub fn check(&self) -> Result<(), DemoError> {
        if self.users < 2 {
            return Err(DemoError::BadSpec(format!(
                "a demo vault needs at least 2 users (--users {})",
                self.users
            )));
        }
        if self.roles > self.users {
            return Err(DemoError::BadSpec(format!(
                "no more roles than users (--roles {} with --users {})",
                self.roles, self.users
            )));
        }
        if !matches!(self.rsa_bits, 2048 | 4096) {
            return Err(DemoError::BadSpec(format!(
                "RSA keys are 2048 or 4096 bits (--rsa-bits {})",
                self.rsa_bits
            )));
        }
        Ok(())
    }

    /// The default number of roles for `users` users: one for every ten
    /// users (at least one), so a small demo needs no `--roles`.
    #[must_use]
    pub fn default_roles(users: usize) -> usize {
        (users / 10).max(1).min(users)
    }
}

impl Draft {
    fn new(spec: DemoSpec) -> Self {
        let mut rng = Rng(ChaCha20Rng::seed_from_u64(spec.seed));
        let vault = VaultId::from_bytes(rng.id());
        let at = Layout {
            users: spec.users,
            roles: spec.roles,
        };
        Self {
            spec,
            at,
            rng,
            vault,
            now: Timestamp::now(),
            principals: Vec::with_capacity(at.keys()),
            credentials: BTreeMap::new(),
            key_pair_ids: Vec::new(),
            kek_seeds: Zeroizing::new(Vec::with_capacity(at.keys())),
            grant_specs: Vec::new(),
            memberships: Vec::new(),
            role_members: Vec::new(),
            records: Vec::new(),
        }
    }

    /// Users (every tenth, from the third, managed; the last deactivated
    /// with `--with-problems`), roles (one large, the rest small), the
    /// three services; in key order.
    fn principals(&mut self) {
        for i in 0..self.spec.users {
            let id = PrincipalId::from_bytes(self.rng.id());
            let managed = i % 10 == 2;
            let name = format!("{}.{:04}", FIRST[i % FIRST.len()], i + 1);
            let deactivated = self.spec.with_problems && i == self.spec.users - 1;
            self.principals.push(Principal {
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
                let password = self.rng.password();
                self.credentials.insert(
                    name,
                    DemoUser {
                        id,
                        password,
                        expected_records: 0,
                        expected_digest: String::new(),
                    },
                );
            }
        }
        for r in 0..self.spec.roles {
            self.principals.push(Principal {
                id: PrincipalId::from_bytes(self.rng.id()),
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
        for (kind, name) in SERVICES {
            self.principals.push(Principal {
                id: PrincipalId::from_bytes(self.rng.id()),
                kind: PrincipalKind::Service,
                name: name.into(),
                status: UserStatus::Active,
                custody: KeyCustody::Managed,
                service: Some(kind),
                migration: MigrationState::Pending,
            });
        }
    }

    /// Key pairs: e2ee users' private keys under their password's KEK;
    /// roles' and managed users' under a random KEK their holders get
    /// grants for; services' only in the key directory. And each e2ee
    /// user's login verifier, from the same master secret. On every core.
    fn key_pairs(&self, rsa: &[LegacyRsaPrivateKey]) -> Result<KeysAndLogins, DemoError> {
        let passwords: BTreeMap<PrincipalId, &str> = self
            .credentials
            .values()
            .map(|u| (u.id, u.password.as_str()))
            .collect();
        let vault = self.vault;
        let kdf = self.spec.kdf;
        type Wrapped = (Option<Envelope>, Option<Verifier>);
        let wrapped: Vec<Result<Wrapped, DemoError>> = (0..self.at.keys())
            .into_par_iter()
            .map(|i| {
                let p = &self.principals[i];
                let binding = KeyBinding {
                    vault,
                    owner: p.id,
                    key_pair: self.key_pair_ids[i],
                };
                let (kek, verifier) = match (p.kind, passwords.get(&p.id)) {
                    (PrincipalKind::Service, _) => return Ok((None, None)),
                    (PrincipalKind::User, Some(pw)) => {
                        let master = master_secret(pw, vault, p.id, &kdf)?;
                        let auth = LoginAuthenticator::derive(&master, vault, p.id)?;
                        let verifier = Verifier::new(&mut rand_core::OsRng, &auth)?;
                        (Kek::derive(&master, vault, p.id)?, Some(verifier))
                    }
                    _ => (Kek::from_array(self.kek_seeds[i]), None),
                };
                let envelope = wrap_private_key(
                    &mut rand_core::OsRng,
                    &kek,
                    &binding,
                    rsa[i].dangerous_pkcs8_der(),
                )?;
                Ok((Some(envelope), verifier))
            })
            .collect();
        let mut key_pairs = Vec::with_capacity(wrapped.len());
        let mut verifiers = Vec::new();
        for (i, w) in wrapped.into_iter().enumerate() {
            let (envelope, verifier) = w?;
            let principal = self.principals[i].id;
            if let Some(v) = verifier {
                verifiers.push((principal, v));
            }
            key_pairs.push(KeyPairRecord {
                id: self.key_pair_ids[i],
                principal,
                scheme: Scheme::RsaOaepSha256,
                public_key: rsa[i].public_key().to_spki_der().to_vec(),
                wrapped_private_key: envelope,
                state: KeyState::Legacy,
            });
        }
        Ok((key_pairs, verifiers))
    }

    /// Memberships: one large role (a third of the users), the rest small
    /// and skewed; each member gets the role's KEK.
    fn memberships(&mut self) {
        let users = self.spec.users;
        for r in 0..self.spec.roles {
            let size = if r == 0 {
                (users / 3).max(2)
            } else {
                2 + self.rng.skewed((users / 10).max(1))
            };
            let mut members: Vec<usize> = Vec::new();
            while members.len() < size.min(users) {
                let u = self.rng.below(users);
                if !members.contains(&u) {
                    members.push(u);
                }
            }
            let role = self.at.role(r);
            for &m in &members {
                self.memberships.push(Membership {
                    role: self.principals[role].id,
                    member: self.principals[m].id,
                });
                self.grant_specs.push(GrantSpec {
                    recipient: m,
                    subject: Subject::PrivateKey(self.key_pair_ids[role]),
                    secret: Zeroizing::new(self.kek_seeds[role].to_vec()),
                });
            }
            self.role_members.push(members);
        }
    }

    /// Managed users: their KEK is held for the directory master key.
    fn managed_users_to_directory(&mut self) {
        for i in 0..self.spec.users {
            if self.principals[i].custody == KeyCustody::Managed {
                self.grant_specs.push(GrantSpec {
                    recipient: self.at.directory(),
                    subject: Subject::PrivateKey(self.key_pair_ids[i]),
                    secret: Zeroizing::new(self.kek_seeds[i].to_vec()),
                });
            }
        }
    }

    /// Records: an owner (skewed: a few heavy users own most), sometimes
    /// shared with other users, a role or a service; a grant per reader.
    fn records(&mut self) {
        for _ in 0..self.spec.records {
            let id = RecordId::from_bytes(self.rng.id());
            let mut key_bytes = [0u8; 32];
            self.rng.0.fill_bytes(&mut key_bytes);
            let key = RecordKey::from_array(key_bytes);
            let readers = self.readers();
            for &r in &readers {
                self.grant_specs.push(GrantSpec {
                    recipient: r,
                    subject: Subject::RecordKey(id),
                    secret: Zeroizing::new(key.dangerous_as_bytes().to_vec()),
                });
            }
            self.records.push(RowSpec { id, key, readers });
        }
    }

    fn readers(&mut self) -> Vec<usize> {
        let (users, roles) = (self.spec.users, self.spec.roles);
        let mut readers = vec![self.rng.skewed(users)];
        let shares = match self.rng.below(100) {
            0..=49 => 0,
            50..=79 => 1,
            80..=94 => 2,
            _ => 5 + self.rng.below(15),
        };
        for _ in 0..shares {
            let u = self.rng.below(users);
            if !readers.contains(&u) {
                readers.push(u);
            }
        }
        if roles > 0 && self.rng.below(100) < 35 {
            readers.push(self.at.role(self.rng.skewed(roles)));
        }
        match self.rng.below(100) {
            0..=1 => readers.push(self.at.service(0)),
            2 => readers.push(self.at.service(1)),
            _ => {}
        }
        readers
    }

    /// Wraps every grant to its recipient's RSA key on every core: mostly
    /// OAEP-SHA-256, some of the two older variants.
    fn legacy_grants(
        &mut self,
        rsa: &[LegacyRsaPrivateKey],
        progress: &(dyn Fn(&str, usize, usize) + Sync),
    ) -> Result<Vec<GrantRecord>, DemoError> {
        let total = self.grant_specs.len();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let schemes = [
            Scheme::RsaOaepSha256,
            Scheme::RsaOaepSha1,
            Scheme::RsaOaepSha256Mgf1Sha1,
        ];
        let ids: Vec<GrantId> = (0..total)
            .map(|_| GrantId::from_bytes(self.rng.id()))
            .collect();
        let envelopes: Vec<Result<Envelope, CryptoError>> = self
            .grant_specs
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
        self.grant_specs
            .iter()
            .zip(envelopes)
            .zip(ids)
            .map(|((g, env), id)| {
                Ok(GrantRecord {
                    id,
                    recipient: self.principals[g.recipient].id,
                    subject: g.subject,
                    envelope: env?,
                    origin: GrantOrigin::Legacy,
                    created_at: Some(self.now),
                })
            })
            .collect()
    }

    /// With `--with-problems`, one legacy record grant to a user gets a
    /// flipped ciphertext byte: that user cannot migrate it. Returns the
    /// grants and which (user, record) lost its grant.
    fn corrupt_one_grant(
        &self,
        mut grants: Vec<GrantRecord>,
    ) -> Result<(Vec<GrantRecord>, Option<LostGrant>), DemoError> {
        if !self.spec.with_problems {
            return Ok((grants, None));
        }
        let users = self.spec.users;
        let found = grants.iter_mut().enumerate().find(|(i, g)| {
            matches!(g.subject, Subject::RecordKey(_)) && self.grant_specs[*i].recipient < users
        });
        let mut corrupt = None;
        if let Some((i, g)) = found {
            let mut bytes = g.envelope.as_bytes().to_vec();
            if let Some(last) = bytes.last_mut() {
                *last ^= 0x5a;
            }
            g.envelope = Envelope::parse(&bytes)?;
            if let Subject::RecordKey(r) = g.subject {
                corrupt = Some((self.grant_specs[i].recipient, r));
            }
        }
        Ok((grants, corrupt))
    }

    /// What each e2ee user must be able to read: records granted to it or
    /// to a role it belongs to (minus the corrupt grant, unless a role
    /// covers it), as a count and a digest in its credentials.
    fn expected_access(&mut self, corrupt: Option<LostGrant>) {
        let users = self.spec.users;
        let mut access: Vec<BTreeSet<RecordId>> = vec![BTreeSet::new(); users];
        for rec in &self.records {
            for &reader in &rec.readers {
                if reader < users {
                    if corrupt != Some((reader, rec.id)) {
                        access[reader].insert(rec.id);
                    }
                } else if reader < self.at.service(0) {
                    for &m in &self.role_members[reader - users] {
                        access[m].insert(rec.id);
                    }
                }
            }
        }
        for (i, p) in self.principals.iter().enumerate().take(users) {
            if let Some(u) = self.credentials.get_mut(&p.name) {
                u.expected_records = access[i].len();
                u.expected_digest = access_digest(&access[i]);
            }
        }
    }

    /// Every record's ciphertext, encrypted on every core.
    fn record_rows(&self) -> Result<Vec<RecordRow>, DemoError> {
        let vault = self.vault;
        Ok(self
            .records
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
            .collect::<Result<_, CryptoError>>()?)
    }

    /// The rows, with the services' certificates, this machine as the one
    /// server (a standby that lacks nothing with `--with-problems`), a
    /// device for every seventh user, a directory-sync profile and the
    /// components.
    fn seed_data(
        &mut self,
        rsa: &[LegacyRsaPrivateKey],
        key_pairs: Vec<KeyPairRecord>,
        grants: Vec<GrantRecord>,
        records: Vec<RecordRow>,
    ) -> SeedData {
        let certificates: Vec<Certificate> = (0..SERVICES.len())
            .map(|s| Certificate {
                key_pair: self.key_pair_ids[self.at.service(s)],
                principal: self.principals[self.at.service(s)].id,
                fingerprint: rsa[self.at.service(s)].public_key().fingerprint(),
                backup_digest: None,
                backup_verified_at: None,
            })
            .collect();
        let servers = self.servers(&certificates);
        let devices = self.devices();
        let token_at = if self.spec.with_problems {
            Timestamp(self.now.0 - 90 * DAY_MS)
        } else {
            self.now
        };
        SeedData {
            principals: std::mem::take(&mut self.principals),
            key_pairs,
            records,
            grants,
            memberships: std::mem::take(&mut self.memberships),
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
        }
    }

    fn servers(&self, certificates: &[Certificate]) -> Vec<Server> {
        let fingerprints: Vec<String> =
            certificates.iter().map(|c| c.fingerprint.clone()).collect();
        let mut servers = vec![Server {
            name: rekey_engine::host_name(),
            heartbeat_at: self.now,
            certificate_fingerprints: fingerprints.clone(),
        }];
        if self.spec.with_problems {
            servers.push(Server {
                name: format!("{}-standby", rekey_engine::host_name()),
                heartbeat_at: self.now,
                certificate_fingerprints: fingerprints,
            });
        }
        servers
    }

    /// A device for every seventh user; with `--with-problems` one offline
    /// add-on holds unsynchronised changes and last synced nine days ago.
    fn devices(&self) -> Vec<Device> {
        let mut devices: Vec<Device> = self
            .principals
            .iter()
            .enumerate()
            .take(self.spec.users)
            .step_by(7)
            .map(|(i, p)| Device {
                id: format!("{}-{}", if i % 2 == 0 { "laptop" } else { "phone" }, p.name),
                owner: p.id,
                kind: if i % 2 == 0 {
                    DeviceKind::OfflineAddon
                } else {
                    DeviceKind::Mobile
                },
                last_sync_at: Some(self.now),
                unsynced_changes: 0,
                written_off: false,
            })
            .collect();
        if self.spec.with_problems {
            if let Some(d) = devices
                .iter_mut()
                .find(|d| d.kind == DeviceKind::OfflineAddon)
            {
                d.unsynced_changes = 3;
                d.last_sync_at = Some(Timestamp(self.now.0 - 9 * DAY_MS));
            }
        }
        devices
    }
}

const DAY_MS: i64 = 24 * 3600 * 1000;
