//! An in-memory vault with the semantics storage must have: the simple
//! model the engine tests run against. Principals get distinct fixture
//! RSA keys (never shared), so "who can read what" is meaningful.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::needless_range_loop,
    clippy::map_entry,
    clippy::type_complexity
)]

use rand_core::OsRng;
use rekey_core::bundle::{
    Candidate, CheckContext, CheckedBundle, HolderFacts, HolderKey, MigrationPackage,
    NonMigratableReason, PackageLegacyKey, PendingGrant, PrincipalFacts,
};
use rekey_core::kek::{unwrap_private_key, wrap_private_key};
use rekey_core::model::MigrationState;
use rekey_core::record::{decrypt_record, encrypt_record};
use rekey_core::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub const FIXTURES: [&[u8]; 8] = [
    include_bytes!("../fixtures/rsa-2048-a.pk8"),
    include_bytes!("../fixtures/rsa-2048-b.pk8"),
    include_bytes!("../fixtures/rsa-2048-c.pk8"),
    include_bytes!("../fixtures/rsa-2048-d.pk8"),
    include_bytes!("../fixtures/rsa-2048-e.pk8"),
    include_bytes!("../fixtures/rsa-2048-f.pk8"),
    include_bytes!("../fixtures/rsa-2048-g.pk8"),
    include_bytes!("../fixtures/rsa-2048-h.pk8"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    User,
    Role,
}

#[derive(Clone, Debug)]
pub struct P {
    pub name: String,
    pub kind: Kind,
    pub state: MigrationState,
    pub legacy_kp: KeyPairId,
    pub current_kp: Option<KeyPairId>,
}

#[derive(Clone, Debug)]
pub struct Kp {
    pub owner: PrincipalId,
    pub public: PublicKey,
    pub wrapped: Envelope,
    pub legacy: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct G {
    pub recipient: PrincipalId,
    pub subject: Subject,
    pub bytes: Vec<u8>,
    pub legacy: bool,
}

#[derive(Clone, Debug)]
pub struct MemVault {
    pub vault: VaultId,
    pub run: RunId,
    /// The run's target (P-256 unless a test changes it).
    pub target: Target,
    pub principals: BTreeMap<PrincipalId, P>,
    pub key_pairs: BTreeMap<KeyPairId, Kp>,
    pub grants: BTreeMap<GrantId, G>,
    pub members: BTreeMap<PrincipalId, Vec<PrincipalId>>,
    pub records: BTreeMap<RecordId, (Vec<u8>, Vec<u8>)>,
    pub non_migratable: BTreeMap<GrantId, NonMigratableReason>,
    pub masters: HashMap<PrincipalId, Vec<u8>>,
    pub users: Vec<PrincipalId>,
    pub roles: Vec<PrincipalId>,
}

pub fn master_of(name: &str) -> Vec<u8> {
    format!("master secret of {name}, at least 16 bytes").into_bytes()
}

impl MemVault {
    /// `users` + `roles` ≤ 8. Role r has members `memberships[r]` (user
    /// indices). Record i is granted to the users and roles in `access[i]`
    /// (indices into users, then roles offset by users.len()).
    pub fn seed(
        users: usize,
        roles: usize,
        memberships: &[Vec<usize>],
        access: &[Vec<usize>],
    ) -> Self {
        assert!(users + roles <= FIXTURES.len());
        let mut v = MemVault {
            vault: VaultId::random(),
            run: RunId::random(),
            target: Target::HpkeP256,
            principals: BTreeMap::new(),
            key_pairs: BTreeMap::new(),
            grants: BTreeMap::new(),
            members: BTreeMap::new(),
            records: BTreeMap::new(),
            non_migratable: BTreeMap::new(),
            masters: HashMap::new(),
            users: vec![],
            roles: vec![],
        };
        let role_keks = v.seed_principals(users, roles);
        v.seed_memberships(roles, memberships, &role_keks);
        v.seed_records(users, access);
        v
    }

    /// The users and roles, each with a fixture RSA key under its KEK;
    /// answers the roles' KEKs.
    fn seed_principals(&mut self, users: usize, roles: usize) -> Vec<Kek> {
        let v = self;
        let mut role_keks = Vec::new();
        for i in 0..users + roles {
            let id = PrincipalId::random();
            let kp = KeyPairId::random();
            let key = LegacyRsaPrivateKey::from_pkcs8_der(FIXTURES[i]).unwrap();
            let (name, kind, kek) = if i < users {
                let name = format!("user{i}");
                let master = MasterSecret::from_slice(&master_of(&name)).unwrap();
                v.masters.insert(id, master_of(&name));
                (name, Kind::User, Kek::derive(&master, v.vault, id).unwrap())
            } else {
                let kek = Kek::generate(&mut OsRng);
                role_keks.push(Kek::from_slice(kek.dangerous_as_bytes()).unwrap());
                (format!("role{}", i - users), Kind::Role, kek)
            };
            let wrapped = wrap_private_key(
                &mut OsRng,
                &kek,
                &KeyBinding {
                    vault: v.vault,
                    owner: id,
                    key_pair: kp,
                },
                key.dangerous_pkcs8_der(),
            )
            .unwrap();
            v.key_pairs.insert(
                kp,
                Kp {
                    owner: id,
                    public: key.public_key().into_public(),
                    wrapped,
                    legacy: true,
                },
            );
            v.principals.insert(
                id,
                P {
                    name,
                    kind,
                    state: MigrationState::Pending,
                    legacy_kp: kp,
                    current_kp: None,
                },
            );
            if kind == Kind::User {
                v.users.push(id)
            } else {
                v.roles.push(id)
            }
        }
        role_keks
    }

    /// Each role's members, each with an RSA grant of the role's KEK.
    fn seed_memberships(&mut self, roles: usize, memberships: &[Vec<usize>], role_keks: &[Kek]) {
        let v = self;
        for (r, members) in memberships.iter().enumerate().take(roles) {
            let role = v.roles[r];
            let role_kp = v.principals[&role].legacy_kp;
            let mut list = Vec::new();
            for &m in members {
                let member = v.users[m];
                list.push(member);
                let env = wrap_legacy_grant(
                    &v.rsa_public(member),
                    Scheme::RsaOaepSha1,
                    role_keks[r].dangerous_as_bytes(),
                )
                .unwrap();
                v.add_grant(
                    member,
                    Subject::PrivateKey(role_kp),
                    env.as_bytes().to_vec(),
                    true,
                );
            }
            v.members.insert(role, list);
        }
    }

    /// The records, each granted to its readers under a legacy scheme.
    fn seed_records(&mut self, users: usize, access: &[Vec<usize>]) {
        let v = self;
        let schemes = [
            Scheme::RsaOaepSha1,
            Scheme::RsaOaepSha256,
            Scheme::RsaOaepSha256Mgf1Sha1,
        ];
        for (i, readers) in access.iter().enumerate() {
            let id = RecordId::random();
            let key = RecordKey::generate(&mut OsRng);
            let text = format!("secret number {i}").into_bytes();
            let ct = encrypt_record(&mut OsRng, &key, v.vault, id, &text).unwrap();
            v.records.insert(id, (ct, text));
            for (j, &reader) in readers.iter().enumerate() {
                let who = if reader < users {
                    v.users[reader]
                } else {
                    v.roles[reader - users]
                };
                let env = wrap_legacy_grant(
                    &v.rsa_public(who),
                    schemes[(i + j) % 3],
                    key.dangerous_as_bytes(),
                )
                .unwrap();
                v.add_grant(who, Subject::RecordKey(id), env.as_bytes().to_vec(), true);
            }
        }
    }

    pub fn add_grant(
        &mut self,
        recipient: PrincipalId,
        subject: Subject,
        bytes: Vec<u8>,
        legacy: bool,
    ) -> GrantId {
        let id = GrantId::random();
        self.grants.insert(
            id,
            G {
                recipient,
                subject,
                bytes,
                legacy,
            },
        );
        id
    }

    pub fn rsa_public(&self, p: PrincipalId) -> LegacyRsaPublicKey {
        match &self.key_pairs[&self.principals[&p].legacy_kp].public {
            PublicKey::Rsa(pk) => pk.clone(),
            PublicKey::Ec(_) | PublicKey::Hybrid(_) => unreachable!(),
        }
    }

    pub fn name(&self, p: PrincipalId) -> &str {
        &self.principals[&p].name
    }

    fn pending_grants(&self, p: PrincipalId) -> Vec<PendingGrant> {
        self.grants
            .iter()
            .filter(|(id, g)| g.recipient == p && g.legacy && !self.non_migratable.contains_key(id))
            .map(|(id, g)| PendingGrant {
                id: *id,
                subject: g.subject,
                envelope_bytes: g.bytes.clone(),
            })
            .collect()
    }

    fn legacy_key(&self, p: PrincipalId) -> PackageLegacyKey {
        let kp = self.principals[&p].legacy_kp;
        PackageLegacyKey {
            id: kp,
            public_key: rekey_core::PublicKey::Rsa(self.rsa_public(p)),
            wrapped_private: Some(self.key_pairs[&kp].wrapped.clone()),
        }
    }

    fn holder_key(&self, h: PrincipalId) -> HolderKey {
        let hp = &self.principals[&h];
        match (hp.state, hp.current_kp) {
            (MigrationState::Migrated, Some(kp)) => match &self.key_pairs[&kp].public {
                PublicKey::Ec(pk) => HolderKey::Migrated {
                    principal: h,
                    key_pair: kp,
                    public_key: NewPublicKey::Ec(pk.clone()),
                },
                PublicKey::Hybrid(pk) => HolderKey::Migrated {
                    principal: h,
                    key_pair: kp,
                    public_key: NewPublicKey::Hybrid(pk.clone()),
                },
                PublicKey::Rsa(_) => unreachable!(),
            },
            _ => HolderKey::Pending {
                principal: h,
                key_pair: hp.legacy_kp,
                public_key: rekey_core::PublicKey::Rsa(self.rsa_public(h)),
            },
        }
    }

    /// Makes `holder` hold `held`'s key, as a directory master key holds a
    /// managed user's: a legacy grant of `held`'s KEK to `holder`.
    pub fn hold(&mut self, holder: PrincipalId, held: PrincipalId) {
        let master = MasterSecret::from_slice(&self.masters[&held]).unwrap();
        let kek = Kek::derive(&master, self.vault, held).unwrap();
        let env = wrap_legacy_grant(
            &self.rsa_public(holder),
            Scheme::RsaOaepSha256,
            kek.dangerous_as_bytes(),
        )
        .unwrap();
        let kp = self.principals[&held].legacy_kp;
        self.add_grant(
            holder,
            Subject::PrivateKey(kp),
            env.as_bytes().to_vec(),
            true,
        );
        self.members.entry(held).or_default().push(holder);
    }

    /// The package of `user`: every pending principal whose key it holds,
    /// itself or through another such principal.
    pub fn package(&self, user: PrincipalId) -> MigrationPackage {
        let mut reach: BTreeSet<PrincipalId> = BTreeSet::from([user]);
        loop {
            let more: Vec<PrincipalId> = self
                .members
                .iter()
                .filter(|(p, ms)| {
                    !reach.contains(p)
                        && self.principals[p].state == MigrationState::Pending
                        && ms.iter().any(|m| reach.contains(m))
                })
                .map(|(p, _)| *p)
                .collect();
            if more.is_empty() {
                break;
            }
            reach.extend(more);
        }
        let candidates = self
            .members
            .iter()
            .filter(|(role, _)| reach.contains(role))
            .map(|(role, ms)| Candidate {
                principal: *role,
                legacy_key: self.legacy_key(*role),
                pending_grants: self.pending_grants(*role),
                holders: ms.iter().map(|m| self.holder_key(*m)).collect(),
            })
            .collect();
        MigrationPackage {
            vault: self.vault,
            run: self.run,
            principal: user,
            target: self.target,
            legacy_key: self.legacy_key(user),
            pending_grants: self.pending_grants(user),
            candidates,
        }
    }

    pub fn context(&self, submitter: PrincipalId, bundle: &bundle::Bundle) -> CheckContext {
        let mut principals = HashMap::new();
        let mut holders = HashMap::new();
        for part in &bundle.parts {
            let Some(p) = self.principals.get(&part.principal) else {
                continue;
            };
            let hs = self
                .members
                .get(&part.principal)
                .cloned()
                .unwrap_or_default();
            for h in &hs {
                let hp = &self.principals[h];
                holders.insert(
                    *h,
                    HolderFacts {
                        state: hp.state,
                        legacy_key_pair: hp.legacy_kp,
                        pending_scheme: rekey_core::Scheme::RsaOaepSha256,
                        current_key_pair: hp.current_kp,
                    },
                );
            }
            principals.insert(
                part.principal,
                PrincipalFacts {
                    name: p.name.clone(),
                    state: p.state,
                    legacy_key_pair: p.legacy_kp,
                    legacy_public_key: rekey_core::PublicKey::Rsa(self.rsa_public(part.principal)),
                    pending_grants: self
                        .pending_grants(part.principal)
                        .into_iter()
                        .map(|g| (g.id, g.subject))
                        .collect(),
                    holders: hs,
                    key_in_database: true,
                },
            );
        }
        CheckContext {
            vault: self.vault,
            run: self.run,
            target: self.target,
            submitter,
            principals,
            holders,
            taken_key_pairs: self.key_pairs.keys().copied().collect(),
        }
    }

    /// Applies a checked bundle, re-checking its preconditions first (as the
    /// storage transaction does). All or nothing.
    pub fn apply(&mut self, checked: &CheckedBundle) -> Result<(), &'static str> {
        let pre = checked.preconditions();
        for p in &pre.pending {
            if self.principals[p].state != MigrationState::Pending {
                return Err("a principal is no longer pending");
            }
        }
        for (p, kp) in &pre.current_keys {
            if self.principals[p].current_kp != Some(*kp) {
                return Err("a holder's key changed");
            }
        }
        for (p, ids) in &pre.covered {
            let now: BTreeSet<GrantId> =
                self.pending_grants(*p).into_iter().map(|g| g.id).collect();
            if now != ids.iter().copied().collect() {
                return Err("pending grants changed");
            }
        }
        for part in &checked.bundle().parts {
            self.key_pairs.insert(
                part.new_key_pair.id,
                Kp {
                    owner: part.principal,
                    public: part.new_key_pair.public_key.clone().into(),
                    wrapped: part.new_key_pair.wrapped_private.clone().unwrap(),
                    legacy: false,
                },
            );
            for g in &part.grants {
                self.add_grant(
                    part.principal,
                    g.subject,
                    g.envelope.as_bytes().to_vec(),
                    false,
                );
            }
            for nm in &part.non_migratable {
                self.non_migratable.insert(nm.grant, nm.reason);
            }
            for h in &part.holder_grants {
                let legacy = h.envelope.scheme().is_legacy();
                self.add_grant(
                    h.holder,
                    Subject::PrivateKey(part.new_key_pair.id),
                    h.envelope.as_bytes().to_vec(),
                    legacy,
                );
            }
            let p = self.principals.get_mut(&part.principal).unwrap();
            p.state = MigrationState::Migrated;
            p.current_kp = Some(part.new_key_pair.id);
        }
        Ok(())
    }

    /// The records `user` can read now, through any path of grants, each
    /// decrypted and compared with its plaintext.
    pub fn readable(&self, user: PrincipalId) -> BTreeSet<RecordId> {
        let master = MasterSecret::from_slice(&self.masters[&user]).unwrap();
        let kek = Kek::derive(&master, self.vault, user).unwrap();
        // Private keys known, by key pair.
        let mut keys: HashMap<KeyPairId, PrivateKey> = HashMap::new();
        for (kp_id, kp) in &self.key_pairs {
            if kp.owner == user {
                if let Some(k) = self.unlock(*kp_id, &kek) {
                    keys.insert(*kp_id, k);
                }
            }
        }
        let mut record_keys: HashMap<RecordId, RecordKey> = HashMap::new();
        loop {
            let mut learned = false;
            for g in self.grants.values() {
                let Ok(env) = Envelope::parse(&g.bytes) else {
                    continue;
                };
                // The recipient's keys we know, of the right kind.
                let candidates: Vec<&PrivateKey> = keys
                    .iter()
                    .filter(|(kp, _)| self.key_pairs[kp].owner == g.recipient)
                    .map(|(_, k)| k)
                    .collect();
                for key in candidates {
                    let b = GrantBinding {
                        vault: self.vault,
                        recipient: g.recipient,
                        subject: g.subject,
                    };
                    let Ok(secret) = open_grant(key, &b, &env) else {
                        continue;
                    };
                    match g.subject {
                        Subject::RecordKey(r) => {
                            if !record_keys.contains_key(&r) {
                                if let Some(k) = secret.into_record_key() {
                                    record_keys.insert(r, k);
                                }
                            }
                        }
                        Subject::PrivateKey(kp) => {
                            if !keys.contains_key(&kp) && self.key_pairs.contains_key(&kp) {
                                if let Some(kek) = secret.into_kek() {
                                    if let Some(k) = self.unlock(kp, &kek) {
                                        keys.insert(kp, k);
                                        learned = true;
                                    }
                                }
                            }
                        }
                    }
                    break;
                }
            }
            if !learned {
                break;
            }
        }
        record_keys
            .iter()
            .filter(|(r, k)| {
                let (ct, text) = &self.records[r];
                decrypt_record(k, self.vault, **r, ct)
                    .map(|pt| pt.dangerous_as_bytes() == &text[..])
                    .unwrap_or(false)
            })
            .map(|(r, _)| *r)
            .collect()
    }

    fn unlock(&self, kp_id: KeyPairId, kek: &Kek) -> Option<PrivateKey> {
        let kp = &self.key_pairs[&kp_id];
        let b = KeyBinding {
            vault: self.vault,
            owner: kp.owner,
            key_pair: kp_id,
        };
        let bytes = unwrap_private_key(kek, &b, &kp.wrapped).ok()?;
        match &kp.public {
            PublicKey::Rsa(_) => LegacyRsaPrivateKey::from_pkcs8_der(bytes.dangerous_as_bytes())
                .ok()
                .map(PrivateKey::Rsa),
            PublicKey::Ec(pk) => {
                EcPrivateKey::from_scalar_bytes(pk.curve(), bytes.dangerous_as_bytes())
                    .ok()
                    .map(PrivateKey::Ec)
            }
            PublicKey::Hybrid(_) => HybridPrivateKey::from_bytes(bytes.dangerous_as_bytes())
                .ok()
                .map(PrivateKey::Hybrid),
        }
    }

    /// What every user can read, by user.
    pub fn access_map(&self) -> BTreeMap<PrincipalId, BTreeSet<RecordId>> {
        self.users.iter().map(|u| (*u, self.readable(*u))).collect()
    }

    /// The legacy rows, for byte-identity checks.
    pub fn legacy_snapshot(&self) -> (Vec<(KeyPairId, Vec<u8>)>, Vec<(GrantId, G)>) {
        (
            self.key_pairs
                .iter()
                .filter(|(_, k)| k.legacy)
                .map(|(id, k)| (*id, k.wrapped.as_bytes().to_vec()))
                .collect(),
            self.grants
                .iter()
                .filter(|(_, g)| g.legacy && self.legacy_subject(g))
                .map(|(id, g)| (*id, g.clone()))
                .collect(),
        )
    }

    /// Legacy grants of legacy subjects (RSA grants of new role keys to
    /// pending members are created during the migration).
    fn legacy_subject(&self, g: &G) -> bool {
        match g.subject {
            Subject::RecordKey(_) => true,
            Subject::PrivateKey(kp) => self.key_pairs.get(&kp).is_some_and(|k| k.legacy),
        }
    }

    pub fn abort(&mut self) {
        let new_kps: BTreeSet<KeyPairId> = self
            .key_pairs
            .iter()
            .filter(|(_, k)| !k.legacy)
            .map(|(id, _)| *id)
            .collect();
        self.grants.retain(|_, g| {
            g.legacy && !matches!(g.subject, Subject::PrivateKey(kp) if new_kps.contains(&kp))
        });
        self.key_pairs.retain(|_, k| k.legacy);
        self.non_migratable.clear();
        for p in self.principals.values_mut() {
            p.state = MigrationState::Pending;
            p.current_kp = None;
        }
        self.run = RunId::random();
    }

    pub fn finalize(&mut self) {
        let legacy_kps: BTreeSet<KeyPairId> = self
            .key_pairs
            .iter()
            .filter(|(_, k)| k.legacy)
            .map(|(id, _)| *id)
            .collect();
        self.grants.retain(|_, g| {
            !g.legacy && !matches!(g.subject, Subject::PrivateKey(kp) if legacy_kps.contains(&kp))
        });
        self.key_pairs.retain(|_, k| !k.legacy);
    }
}

pub trait IntoPublic {
    fn into_public(self) -> PublicKey;
}

impl IntoPublic for LegacyRsaPublicKey {
    fn into_public(self) -> PublicKey {
        PublicKey::Rsa(self)
    }
}
