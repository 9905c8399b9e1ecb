//! Verification as a client would do it: every demo user unlocks with its
//! password and the keys the vault holds now, follows its grants (through
//! roles and managed users) and decrypts every record it is granted; the
//! records it reads are compared with what the seed granted it.

use crate::credentials::{Credentials, DemoUser, access_digest};
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
            let mut key_ids: Vec<KeyPairId> = keys
                .keys()
                .filter(|kp| owners.get(kp) == Some(&principal))
                .copied()
                .collect();
            key_ids.sort_unstable();
            // A principal reached through a key (a role, a managed user)
            // reads the same records for every user that reaches it with
            // the same keys: its record grants are opened and checked once,
            // and only its key grants are kept for the next user (the
            // record grants of every role would not fit in memory on a
            // large vault). Anything else is read for this visit alone.
            let shared = principal != user;
            let known = shared
                && cache
                    .opened
                    .get(&principal)
                    .is_some_and(|(ids, _)| *ids == key_ids);
            let fetched = if known {
                Vec::new()
            } else {
                self.engine.grants_to(principal).await?
            };
            let grants = if known {
                cache
                    .key_grants
                    .get(&principal)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
            } else {
                fetched.as_slice()
            };
            let (record_keys, learned_kps) = open_grants(vault, principal, grants, &key_ids, &keys);
            if shared && !known {
                cache.key_grants.insert(
                    principal,
                    fetched
                        .into_iter()
                        .filter(|g| matches!(g.subject, Subject::PrivateKey(_)))
                        .collect(),
                );
            }
            if known {
                if let Some((_, read)) = cache.opened.get(&principal) {
                    ok.extend(read.iter().copied());
                }
            } else {
                let read = self.records_that_decrypt(vault, &record_keys).await?;
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
    /// key to its demo plaintext (the ciphertexts read in batches).
    async fn records_that_decrypt(
        &self,
        vault: VaultId,
        record_keys: &HashMap<RecordId, RecordKey>,
    ) -> Result<BTreeSet<RecordId>, DemoError> {
        let mut ids: Vec<RecordId> = record_keys.keys().copied().collect();
        ids.sort_unstable();
        let mut ok = BTreeSet::new();
        for (r, ciphertext) in self.engine.records(&ids).await? {
            let Some(key) = record_keys.get(&r) else {
                continue;
            };
            if decrypt_record(key, vault, r, &ciphertext)
                .is_ok_and(|pt| pt.dangerous_as_bytes() == record_plaintext(r))
            {
                ok.insert(r);
            }
        }
        Ok(ok)
    }

    /// Verifies a demo vault: every demo user unlocks with its password and
    /// reads exactly the records the seed granted it (compared by count and
    /// digest of the sorted ids), each decrypting to the seeded plaintext.
    ///
    /// Users are checked by one worker per core, each with a contiguous
    /// share of the users (by name) and its own [`ReadCache`]: a role is
    /// read and opened once per worker that reaches it, and the cache holds
    /// only what several users share (a user's own grants and records are
    /// read and dropped), so memory grows with the roles, not the users.
    pub async fn verify(
        &self,
        credentials: &Credentials,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<VerifyReport, DemoError> {
        let vault = self.engine.vault_id().await?;
        if vault != credentials.vault {
            return Err(DemoError::CredentialsMismatch);
        }
        let mut users: Vec<(String, DemoUser)> = credentials
            .users
            .iter()
            .map(|(n, u)| (n.clone(), u.clone()))
            .collect();
        let total = users.len();
        let workers = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .clamp(1, total.max(1));
        let share = total.div_ceil(workers).max(1);
        let (tick, mut ticks) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut tasks = tokio::task::JoinSet::new();
        while !users.is_empty() {
            let rest = users.split_off(share.min(users.len()));
            let mine = std::mem::replace(&mut users, rest);
            let (engine, kdf, tick) = (self.engine.clone(), credentials.kdf, tick.clone());
            tasks.spawn(async move {
                let reader = Reader::new(&engine);
                let mut cache = ReadCache::default();
                let mut out = Vec::with_capacity(mine.len());
                for (name, u) in mine {
                    let (password, id) = (u.password.clone(), u.id);
                    let master = tokio::task::spawn_blocking(move || {
                        master_secret(&password, vault, id, &kdf)
                    })
                    .await
                    .map_err(|_| DemoError::Internal("a password hash panicked"))??;
                    let read = reader
                        .readable_records_cached(u.id, &master, &mut cache)
                        .await?;
                    let _ = tick.send(());
                    // The count and digest only: a user's record ids are
                    // dropped here, not held until every user is done.
                    let matches = u.expected_records == read.len()
                        && u.expected_digest == access_digest(&read);
                    out.push((name, u.expected_records, read.len(), matches));
                }
                Ok::<_, DemoError>(out)
            });
        }
        drop(tick);
        let mut done = 0;
        while ticks.recv().await.is_some() {
            done += 1;
            progress(done, total);
        }
        let mut checked = Vec::with_capacity(total);
        while let Some(joined) = tasks.join_next().await {
            checked.extend(joined.map_err(|_| DemoError::Internal("a verify worker panicked"))??);
        }
        checked.sort_by(|a, b| a.0.cmp(&b.0));
        let mut report = VerifyReport::default();
        for (name, expected, read, matches) in checked {
            report.users += 1;
            report.records_read += read;
            if !matches {
                report.mismatches.push(format!(
                    "{name}: read {read} record(s), expected {expected}"
                ));
            }
        }
        Ok(report)
    }
}

/// Opens `principal`'s `grants` with its keys among `keys` (`key_ids`):
/// the record keys by record, and the KEKs of key pairs not in `keys` yet.
/// One opener per key for the whole principal: a batch of grants costs one
/// decapsulation.
fn open_grants(
    vault: VaultId,
    principal: PrincipalId,
    grants: &[rekey_core::model::GrantRecord],
    key_ids: &[KeyPairId],
    keys: &HashMap<KeyPairId, PrivateKey>,
) -> (HashMap<RecordId, RecordKey>, Vec<(KeyPairId, Kek)>) {
    let mut openers: Vec<GrantOpener<'_>> = key_ids
        .iter()
        .filter_map(|kp| keys.get(kp))
        .map(GrantOpener::new)
        .collect();
    let mut record_keys: HashMap<RecordId, RecordKey> = HashMap::new();
    let mut learned_kps = Vec::new();
    for g in grants {
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
    (record_keys, learned_kps)
}

/// Rows read once per verification worker, shared by its users: those of
/// principals reached through keys (roles, managed users), not a user's
/// own.
#[derive(Default)]
struct ReadCache {
    /// The key grants (subject: a private key) of principals reached
    /// through keys, once their records were read.
    key_grants: HashMap<PrincipalId, Vec<rekey_core::model::GrantRecord>>,
    key_pairs: HashMap<KeyPairId, Option<rekey_core::model::KeyPairRecord>>,
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
