//! The role evidence a member's client checks (`Engine::role_checks`),
//! kept in memory once read.
//!
//! Every e2ee member of a migrated role checks the same evidence: the
//! grants the migration wrote to the role, the records and key pairs they
//! name, and the role's legacy grants declared non-migratable. All of it is
//! written in the one transaction that applies the role's bundle part and
//! nothing changes it until the run ends (a second part for a migrated role
//! is refused; abort and a new start change the run id; finalize ends the
//! run). Reading it again for each member was the largest database cost of
//! a login: 6 ms per member and role on the 1,000-user benchmark vault,
//! 19 s of a one-client `login-all`'s 85 s.
//!
//! Entries are keyed by run, role and the role's current key pair, and the
//! cache holds at most [`ROLE_EVIDENCE_BYTES`]: the entry used longest ago
//! goes first. A server of a 10,000-user vault thus keeps a bounded share
//! of its roles, not all of them, and the roles many members check stay:
//! its largest role (15,705 grants, 3,000 e2ee members) is checked at a
//! third of all logins, all through the run. With the oldest *read* entry
//! going first instead, that role was read from the database again each
//! time 32 MiB of smaller roles had come in after it.

use hashlink::LinkedHashMap;
use rekey_core::confirm::RoleEvidence;
use rekey_core::{KeyPairId, PrincipalId, RunId};
use std::sync::{Arc, Mutex};

/// The most the cache holds, in bytes of envelopes, ciphertexts and keys
/// (plus a fixed estimate per row).
pub(crate) const ROLE_EVIDENCE_BYTES: usize = 32 << 20;

/// Bytes counted per row besides its variable-length fields.
const ROW_OVERHEAD: usize = 128;

/// The bytes `evidence` is counted as.
fn weight(evidence: &RoleEvidence) -> usize {
    let grants = |g: &[rekey_core::model::GrantRecord]| -> usize {
        g.iter()
            .map(|g| g.envelope.as_bytes().len() + ROW_OVERHEAD)
            .sum()
    };
    grants(&evidence.grants)
        + grants(&evidence.disowned)
        + evidence
            .records
            .iter()
            .map(|r| r.ciphertext.len() + ROW_OVERHEAD)
            .sum::<usize>()
        + evidence
            .subject_keys
            .iter()
            .map(|k| {
                k.public_key.len()
                    + k.wrapped_private_key
                        .as_ref()
                        .map_or(0, |w| w.as_bytes().len())
                    + ROW_OVERHEAD
            })
            .sum::<usize>()
}

/// Which evidence an entry is.
type Key = (RunId, PrincipalId, KeyPairId);

/// Role evidence by run, role and key pair, oldest first out.
#[derive(Default)]
pub(crate) struct RoleEvidenceCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Least recently used first.
    entries: LinkedHashMap<Key, (Arc<RoleEvidence>, usize)>,
    bytes: usize,
}

impl std::fmt::Debug for RoleEvidenceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (roles, bytes) = self
            .inner
            .lock()
            .map_or((0, 0), |i| (i.entries.len(), i.bytes));
        f.debug_struct("RoleEvidenceCache")
            .field("roles", &roles)
            .field("bytes", &bytes)
            .finish()
    }
}

impl RoleEvidenceCache {
    /// The evidence of `role` with current key pair `key_pair` in `run`,
    /// if kept; it becomes the most recently used.
    pub(crate) fn get(
        &self,
        run: RunId,
        role: PrincipalId,
        key_pair: KeyPairId,
    ) -> Option<Arc<RoleEvidence>> {
        let mut inner = self.inner.lock().ok()?;
        inner
            .entries
            .to_back(&(run, role, key_pair))
            .map(|(e, _)| e.clone())
    }

    /// Keeps `evidence`, dropping the least recently used entries while
    /// the cache holds more than its bound (evidence larger than the bound
    /// is not kept).
    pub(crate) fn put(
        &self,
        run: RunId,
        role: PrincipalId,
        key_pair: KeyPairId,
        evidence: Arc<RoleEvidence>,
    ) {
        self.put_bounded(run, role, key_pair, evidence, ROLE_EVIDENCE_BYTES);
    }

    fn put_bounded(
        &self,
        run: RunId,
        role: PrincipalId,
        key_pair: KeyPairId,
        evidence: Arc<RoleEvidence>,
        bound: usize,
    ) {
        let weight = weight(&evidence);
        if weight > bound {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let key = (run, role, key_pair);
        if inner.entries.contains_key(&key) {
            return;
        }
        while inner.bytes + weight > bound {
            let Some((_, (_, w))) = inner.entries.pop_front() else {
                break;
            };
            inner.bytes -= w;
        }
        inner.entries.insert(key, (evidence, weight));
        inner.bytes += weight;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_core::RecordId;
    use rekey_core::model::RecordRow;

    /// Evidence of one record of `bytes` bytes of ciphertext.
    fn evidence(bytes: usize) -> Arc<RoleEvidence> {
        Arc::new(RoleEvidence {
            grants: Vec::new(),
            records: vec![RecordRow {
                id: RecordId::random(),
                ciphertext: vec![7; bytes],
            }],
            subject_keys: Vec::new(),
            disowned: Vec::new(),
        })
    }

    #[test]
    fn evidence_is_kept_per_run_role_and_key_pair() {
        let cache = RoleEvidenceCache::default();
        let (run, role, key_pair) = (RunId::random(), PrincipalId::random(), KeyPairId::random());
        let e = evidence(100);
        cache.put(run, role, key_pair, e.clone());
        let kept = cache.get(run, role, key_pair).expect("kept");
        assert!(Arc::ptr_eq(&kept, &e));
        // Another run (an abort and a new start), another role or another
        // key pair of the role is another entry.
        assert!(cache.get(RunId::random(), role, key_pair).is_none());
        assert!(cache.get(run, PrincipalId::random(), key_pair).is_none());
        assert!(cache.get(run, role, KeyPairId::random()).is_none());
        // A second put of the same entry keeps the first.
        cache.put(run, role, key_pair, evidence(100));
        assert!(Arc::ptr_eq(
            &cache.get(run, role, key_pair).expect("kept"),
            &e
        ));
    }

    /// `n` roles, each with a key pair.
    fn roles(n: usize) -> Vec<(PrincipalId, KeyPairId)> {
        (0..n)
            .map(|_| (PrincipalId::random(), KeyPairId::random()))
            .collect()
    }

    /// Which of `keys` the cache holds (each look-up counts as a use).
    fn kept(cache: &RoleEvidenceCache, run: RunId, keys: &[(PrincipalId, KeyPairId)]) -> Vec<bool> {
        keys.iter()
            .map(|(r, k)| cache.get(run, *r, *k).is_some())
            .collect()
    }

    #[test]
    fn the_entry_used_longest_ago_goes_first() {
        let cache = RoleEvidenceCache::default();
        let run = RunId::random();
        let bound = 3 * (1000 + ROW_OVERHEAD);
        let keys = roles(4);
        for (role, kp) in &keys[..3] {
            cache.put_bounded(run, *role, *kp, evidence(1000), bound);
        }
        // The first in is read again: the second goes when the fourth
        // comes in.
        assert!(cache.get(run, keys[0].0, keys[0].1).is_some());
        cache.put_bounded(run, keys[3].0, keys[3].1, evidence(1000), bound);
        assert_eq!(kept(&cache, run, &keys), [true, false, true, true]);
    }

    #[test]
    fn the_oldest_entries_go_when_the_bound_is_reached() {
        let cache = RoleEvidenceCache::default();
        let run = RunId::random();
        let bound = 3 * (1000 + ROW_OVERHEAD);
        let keys = roles(4);
        for (role, kp) in &keys {
            cache.put_bounded(run, *role, *kp, evidence(1000), bound);
        }
        assert_eq!(kept(&cache, run, &keys), [false, true, true, true]);
        assert_eq!(
            format!("{cache:?}"),
            format!("RoleEvidenceCache {{ roles: 3, bytes: {bound} }}")
        );
        // Evidence larger than the whole bound is not kept, and evicts
        // nothing.
        let (role, kp) = (PrincipalId::random(), KeyPairId::random());
        cache.put_bounded(run, role, kp, evidence(bound), bound);
        assert!(cache.get(run, role, kp).is_none());
        assert!(cache.get(run, keys[1].0, keys[1].1).is_some());
    }
}
