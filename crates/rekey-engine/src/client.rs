//! The client side, as the demo simulates it: log in (password → master
//! secret), build the bundle on all cores, submit, rebuild on a conflict;
//! and `verify`: every demo user unlocks with the keys the vault holds now
//! and decrypts every record it is granted.

use crate::demo::{Credentials, record_plaintext};
use crate::engine::{ApplyReport, Engine};
use crate::error::EngineError;
use crate::password::master_secret;
use rekey_core::bundle::{
    BuildOptions, BuildOutput, BuildReport, OpenedGrants, Unlock, build_bundle_reusing,
};
use rekey_core::grant::GrantOpener;
use rekey_core::kek::unwrap_private_key;
use rekey_core::model::{KeyCustody, PrincipalKind};
use rekey_core::record::decrypt_record;
use rekey_core::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

/// How many times a login builds its bundle before giving up on conflicts.
/// A conflict means another client's bundle was applied meanwhile (the
/// vault is read-only otherwise), so the migration as a whole always moves
/// on; the cap only bounds how long one client keeps rebuilding while many
/// logins that share its roles commit around it. A 10,000-user vault with
/// users logging in by name (members of the same roles together) needed
/// more than 5.
pub const LOGIN_ATTEMPTS: usize = 30;

/// The pause before rebuild number `retry` (from 1): up to 5 ms per retry
/// so far (at most 100 ms), drawn at random so that clients racing for the
/// same roles stop rebuilding in lockstep. A rebuild reopens no grant
/// opened before, so it is much shorter than the first build.
#[must_use]
pub fn conflict_backoff(retry: usize) -> std::time::Duration {
    use rand_core::RngCore;
    let cap_ms = 5 * u64::try_from(retry.clamp(1, 20)).unwrap_or(20);
    let micros = u64::from(rand_core::OsRng.next_u32()) % (cap_ms * 1000);
    std::time::Duration::from_micros(micros)
}

/// What one login did.
#[derive(Debug, Clone, Default)]
pub struct LoginReport {
    /// What the bundle build did.
    pub build: BuildReport,
    /// What the server applied.
    pub applied: ApplyReport,
    /// Rebuilds after conflicts.
    pub retries: usize,
}

impl Engine {
    /// Logs `name` in with `password` and migrates it (and the roles it is
    /// the first member of to log in). `progress(done, total)` reports the
    /// legacy unwraps.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        threads: Option<usize>,
        progress: std::sync::Arc<dyn Fn(usize, usize) + Send + Sync>,
    ) -> Result<LoginReport, EngineError> {
        let p = self
            .vault()
            .principal_by_name(name)
            .await?
            .filter(|p| p.kind == PrincipalKind::User)
            .ok_or_else(|| EngineError::UnknownUser(name.to_owned()))?;
        if p.custody != KeyCustody::E2ee {
            return Err(EngineError::NotE2ee(name.to_owned()));
        }
        let mut retries = 0;
        // A rebuild after a conflict reopens no grant opened before.
        let memo = std::sync::Arc::new(OpenedGrants::new());
        loop {
            let package = self.package_of(&p).await?;
            let vault = package.vault;
            let password = zeroize::Zeroizing::new(password.to_owned());
            let progress = progress.clone();
            let memo = memo.clone();
            let built = tokio::task::spawn_blocking(move || {
                let master = master_secret(&password, vault, package.principal)?;
                let options = BuildOptions {
                    threads,
                    ..BuildOptions::default()
                };
                build_bundle_reusing(
                    &package,
                    Unlock::MasterSecret(&master),
                    options,
                    &*progress,
                    &memo,
                )
                .map_err(EngineError::from)
            })
            .await
            .map_err(|_| EngineError::Internal("the bundle builder panicked"))??;
            // Only the encoded bytes go on: the decoded bundle is dropped
            // before the server side decodes its own copy.
            let BuildOutput { bundle, report, .. } = built;
            let bytes = bundle.encode();
            drop(bundle);
            match self.submit(p.id, &bytes).await {
                Ok(applied) => {
                    return Ok(LoginReport {
                        build: report,
                        applied,
                        retries,
                    });
                }
                Err(e) if e.is_conflict() && retries + 1 < LOGIN_ATTEMPTS => {
                    retries += 1;
                    tokio::time::sleep(conflict_backoff(retries)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Every record `user` can read with the keys the vault holds now,
    /// following grants through roles; each decrypted and compared with its
    /// expected plaintext. Returns the record ids read correctly.
    pub async fn readable_records(
        &self,
        user: PrincipalId,
        master: &MasterSecret,
    ) -> Result<BTreeSet<RecordId>, EngineError> {
        self.readable_records_cached(user, master, &mut ReadCache::default())
            .await
    }

    /// [`Engine::readable_records`] with rows shared across users (a role's
    /// grants are read once for all its members).
    async fn readable_records_cached(
        &self,
        user: PrincipalId,
        master: &MasterSecret,
        cache: &mut ReadCache,
    ) -> Result<BTreeSet<RecordId>, EngineError> {
        let vault = self.vault_id().await?;
        let kek = Kek::derive(master, vault, user)?;
        let mut keys: HashMap<KeyPairId, PrivateKey> = HashMap::new();
        for kp in self.vault().key_pairs(user).await? {
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
    ) -> Result<BTreeSet<RecordId>, EngineError> {
        let keydir = self.key_dir().ok_or(EngineError::Internal(
            "reading as a server-held key needs the key directory (--key-dir)",
        ))?;
        let vault = self.vault_id().await?;
        let mut keys: HashMap<KeyPairId, PrivateKey> = HashMap::new();
        for kp in self.vault().key_pairs(service).await? {
            let key = if kp.scheme.is_legacy() {
                let fp = LegacyRsaPublicKey::from_spki_der(&kp.public_key)?.fingerprint();
                keydir.legacy_key(&fp)?.map(PrivateKey::Rsa)
            } else {
                let curve = Curve::of_point(&kp.public_key);
                let fp = EcPublicKey::from_sec1(curve, &kp.public_key)?.fingerprint();
                keydir.new_key(&fp)?.map(PrivateKey::Ec)
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
    ) -> Result<BTreeSet<RecordId>, EngineError> {
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
                slot.insert(self.vault().grants_to(principal).await?);
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
                    slot.insert(self.vault().key_pair(kp_id).await?);
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
    ) -> Result<BTreeSet<RecordId>, EngineError> {
        let mut ok = BTreeSet::new();
        for (r, key) in record_keys {
            if let Entry::Vacant(slot) = cache.records.entry(*r) {
                slot.insert(self.vault().record(*r).await?.map(|row| row.ciphertext));
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
    ) -> Result<VerifyReport, EngineError> {
        let vault = self.vault_id().await?;
        if vault != credentials.vault {
            return Err(EngineError::CredentialsMismatch);
        }
        let mut report = VerifyReport::default();
        let mut cache = ReadCache::default();
        let total = credentials.users.len();
        for (i, (name, u)) in credentials.users.iter().enumerate() {
            let master = master_secret(&u.password, vault, u.id)?;
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

/// The outcome of `verify`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
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

/// Hex SHA-256 over the sorted record ids a user can read.
#[must_use]
pub fn access_digest(records: &BTreeSet<RecordId>) -> String {
    let mut h = Sha256::new();
    for r in records {
        h.update(r.to_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn unlock(kp: &rekey_core::model::KeyPairRecord, vault: VaultId, kek: &Kek) -> Option<PrivateKey> {
    let env = kp.wrapped_private_key.as_ref()?;
    let binding = KeyBinding {
        vault,
        owner: kp.principal,
        key_pair: kp.id,
    };
    let bytes = unwrap_private_key(kek, &binding, env).ok()?;
    if kp.scheme.is_legacy() {
        LegacyRsaPrivateKey::from_pkcs8_der(bytes.dangerous_as_bytes())
            .ok()
            .map(PrivateKey::Rsa)
    } else {
        let curve = Curve::of_point(&kp.public_key);
        EcPrivateKey::from_scalar_bytes(curve, bytes.dangerous_as_bytes())
            .ok()
            .map(PrivateKey::Ec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_retries_and_stays_bounded() {
        for retry in [0, 1, 2, 7, 20, 1000] {
            let cap = std::time::Duration::from_millis(5 * retry.clamp(1, 20) as u64);
            for _ in 0..200 {
                assert!(conflict_backoff(retry) < cap);
            }
        }
        // Jittered: 200 draws are not all the same.
        let draws: std::collections::BTreeSet<_> = (0..200).map(|_| conflict_backoff(10)).collect();
        assert!(draws.len() > 1);
    }
}
