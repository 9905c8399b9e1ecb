//! Verification as a client would do it: every demo user unlocks with its
//! password and the keys the vault holds now, follows its grants (through
//! roles and managed users) and decrypts every record it is granted; the
//! records it reads are compared with what the seed granted it.

use crate::credentials::{Credentials, access_digest};
use crate::error::DemoError;
use crate::generate::record_plaintext;
use crate::password::master_secret;
use rekey_core::grant::GrantOpener;
use rekey_core::kek::unlock_key_pair as unlock;
use rekey_core::record::decrypt_record;
use rekey_core::*;
use rekey_engine::Engine;
use serde::Serialize;
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

/// Reads a vault as its clients would, through the engine's client reads.
#[derive(Debug)]
pub struct Reader<'a> {
    engine: &'a Engine,
}

impl<'a> Reader<'a> {
    /// A reader of the engine's vault.
    #[must_use]
    pub fn new(engine: &'a Engine) -> Self {
        Self { engine }
    }

    /// Every record `user` can read with the keys the vault holds now,
    /// following grants through roles; each decrypted and compared with its
    /// expected plaintext. Returns the record ids read correctly.
    pub async fn readable_records(
        &self,
        user: PrincipalId,
        master: &MasterSecret,
    ) -> Result<BTreeSet<RecordId>, DemoError> {
        self.readable_records_cached(user, master, &mut ReadCache::default())
            .await
    }

    /// [`Reader::readable_records`] with rows shared across users (a role's
    /// grants are read once for all its members).
    async fn readable_records_cached(
        &self,
        user: PrincipalId,
        master: &MasterSecret,
        cache: &mut ReadCache,
    ) -> Result<BTreeSet<RecordId>, DemoError> {
        let vault = self.engine.vault_id().await?;
        let kek = Kek::derive(master, vault, user)?;
        let mut keys: HashMap<KeyPairId, PrivateKey> = HashMap::new();
        for kp in self.engine.key_pairs(user).await? {
            if let Some(k) = unlock(&kp, vault, &kek) {
                keys.insert(kp.id, k);
            }
        }
        self.readable_from(vault, user, keys, cache).await
    }

    /// Every record a server-held principal (a directory master key, the
    /// vault key) can read with its keys in the key directory, legacy and
    /// new, following grants through managed users and roles; each
    /// decrypted and compared with its demo plaintext.
    pub async fn readable_records_of_service(
        &self,
        service: PrincipalId,
    ) -> Result<BTreeSet<RecordId>, DemoError> {
        let keydir = self.engine.key_dir().ok_or(DemoError::Internal(
            "reading as a server-held key needs the key directory",
        ))?;
        let vault = self.engine.vault_id().await?;
        let mut keys: HashMap<KeyPairId, PrivateKey> = HashMap::new();
        for kp in self.engine.key_pairs(service).await? {
            let key = if kp.scheme.is_legacy() {
                let fp = LegacyRsaPublicKey::from_spki_der(&kp.public_key)?.fingerprint();
                keydir.legacy_key(&fp)?.map(PrivateKey::Rsa)
            } else {
                let fp = NewPublicKey::parse(&kp.public_key)?.fingerprint();
                keydir.new_key(&fp)?.map(PrivateKey::from)
            };
            if let Some(k) = key {
                keys.insert(kp.id, k);
            }
        }
        self.readable_from(vault, service, keys, &mut ReadCache::default())
            .await
    }

    /// The records readable from `user`'s unlocked `keys`, following grants.
    async fn readable_from(
        &self,
        vault: VaultId,
        user: PrincipalId,
        mut keys: HashMap<KeyPairId, PrivateKey>,
        cache: &mut ReadCache,
    ) -> Result<BTreeSet<RecordId>, DemoError> {
        let mut owners: HashMap<KeyPairId, PrincipalId> =
            keys.keys().map(|kp| (*kp, user)).collect();
        let mut ok = BTreeSet::new();
        let mut visited: BTreeSet<PrincipalId> = BTreeSet::new();
        let mut queue = vec![user];
        while let Some(principal) = queue.pop() {
            if !visited.insert(principal) {
                continue;
            }
            if let Entry::Vacant(slot) = cache.grants.entry(principal) {
                slot.insert(self.engine.grants_to(principal).await?);
            }
            let mut key_ids: Vec<KeyPairId> = keys
                .keys()
                .filter(|kp| owners.get(kp) == Some(&principal))
                .copied()
                .collect();
            key_ids.sort_unstable();
            // A principal reached through a key (a role, a managed user)
            // reads the same records for every user that reaches it with
            // the same keys: its record grants are opened and checked once.
            let shared = principal != user;
            let known = shared
                && cache
                    .opened
                    .get(&principal)
                    .is_some_and(|(ids, _)| *ids == key_ids);
            // One opener per key for the whole principal: a batch of grants
            // costs one decapsulation.
            let mut openers: Vec<GrantOpener<'_>> = key_ids
                .iter()
                .filter_map(|kp| keys.get(kp))
                .map(GrantOpener::new)
                .collect();
            let mut record_keys: HashMap<RecordId, RecordKey> = HashMap::new();
            let mut learned_kps = Vec::new();
            for g in cache
                .grants
                .get(&principal)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                if known && matches!(g.subject, Subject::RecordKey(_)) {
                    continue;
                }
                let binding = GrantBinding {
                    vault,
                    recipient: principal,
                    subject: g.subject,
                };
                let Some(secret) = openers
                    .iter_mut()
                    .find_map(|o| o.open(&binding, &g.envelope).ok())
                else {
                    continue;
                };
                match g.subject {
                    Subject::RecordKey(r) => {
                        if let Some(k) = secret.into_record_key() {
                            record_keys.entry(r).or_insert(k);
                        }
                    }
                    Subject::PrivateKey(kp_id) => {
                        if !keys.contains_key(&kp_id) {
                            if let Some(kek) = secret.into_kek() {
                                learned_kps.push((kp_id, kek));
                            }
                        }
                    }
                }
            }
            drop(openers);
            if known {
                if let Some((_, read)) = cache.opened.get(&principal) {
                    ok.extend(read.iter().copied());
                }
            } else {
                let read = self
                    .records_that_decrypt(vault, &record_keys, cache)
                    .await?;
                ok.extend(read.iter().copied());
                if shared {
                    cache.opened.insert(principal, (key_ids, read));
                }
            }
            for (kp_id, kek) in learned_kps {
                if let Entry::Vacant(slot) = cache.key_pairs.entry(kp_id) {
                    slot.insert(self.engine.key_pair(kp_id).await?);
                }
                let Some(Some(kp)) = cache.key_pairs.get(&kp_id) else {
                    continue;
                };
                if let Some(k) = unlock(kp, vault, &kek) {
                    owners.insert(kp_id, kp.principal);
                    keys.insert(kp_id, k);
                    visited.remove(&kp.principal);
                    queue.push(kp.principal);
                }
            }
        }
        Ok(ok)
    }

    /// The records among `record_keys` whose ciphertext decrypts under the
    /// key to its demo plaintext.
    async fn records_that_decrypt(
        &self,
        vault: VaultId,
        record_keys: &HashMap<RecordId, RecordKey>,
        cache: &mut ReadCache,
    ) -> Result<BTreeSet<RecordId>, DemoError> {
        let mut ok = BTreeSet::new();
        for (r, key) in record_keys {
            if let Entry::Vacant(slot) = cache.records.entry(*r) {
                slot.insert(self.engine.record(*r).await?);
            }
            let Some(Some(ciphertext)) = cache.records.get(r) else {
                continue;
            };
            if decrypt_record(key, vault, *r, ciphertext)
                .is_ok_and(|pt| pt.dangerous_as_bytes() == record_plaintext(*r))
            {
                ok.insert(*r);
            }
        }
        Ok(ok)
    }

    /// Verifies a demo vault: every demo user unlocks with its password and
    /// reads exactly the records the seed granted it (compared by count and
    /// digest of the sorted ids), each decrypting to the seeded plaintext.
    pub async fn verify(
        &self,
        credentials: &Credentials,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<VerifyReport, DemoError> {
        let vault = self.engine.vault_id().await?;
        if vault != credentials.vault {
            return Err(DemoError::CredentialsMismatch);
        }
        let mut report = VerifyReport::default();
        let mut cache = ReadCache::default();
        let total = credentials.users.len();
        for (i, (name, u)) in credentials.users.iter().enumerate() {
            let master = master_secret(&u.password, vault, u.id, &credentials.kdf)?;
            let read = self
                .readable_records_cached(u.id, &master, &mut cache)
                .await?;
            report.users += 1;
            report.records_read += read.len();
            if u.expected_records != read.len() || u.expected_digest != access_digest(&read) {
                report.mismatches.push(format!(
                    "{name}: read {} record(s), expected {}",
                    read.len(),
                    u.expected_records
                ));
            }
            progress(i + 1, total);
        }
        Ok(report)
    }
}

/// Rows read once per verification, shared by every user.
#[derive(Default)]
struct ReadCache {
    grants: HashMap<PrincipalId, Vec<rekey_core::model::GrantRecord>>,
    key_pairs: HashMap<KeyPairId, Option<rekey_core::model::KeyPairRecord>>,
    records: HashMap<RecordId, Option<Vec<u8>>>,
    /// What a shared principal's record grants gave, by the key pairs they
    /// were opened with: the records that decrypted correctly.
    opened: HashMap<PrincipalId, (Vec<KeyPairId>, BTreeSet<RecordId>)>,
}

/// The outcome of `verify`. As JSON it also says whether it `passed`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Users checked.
    pub users: usize,
    /// Record decryptions that matched their plaintext.
    pub records_read: usize,
    /// Users whose access differs from the seed's.
    pub mismatches: Vec<String>,
}

impl VerifyReport {
    /// Whether every user reads exactly what it should.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty() && self.users > 0
    }
}

impl Serialize for VerifyReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("VerifyReport", 4)?;
        out.serialize_field("passed", &self.passed())?;
        out.serialize_field("users", &self.users)?;
        out.serialize_field("records_read", &self.records_read)?;
        out.serialize_field("mismatches", &self.mismatches)?;
        out.end()
    }
}
