//! "Nothing lost", measured: what every principal holds before the start,
//! compared with what it holds after the migration, and every grant of the
//! finished vault opened with the key its recipient really has.
//!
//! Shared by the crash, fault and concurrency tests, so "lost", "corrupt"
//! and "migrated twice" mean the same everywhere.
#![allow(dead_code, unreachable_pub)]
#![allow(
    clippy::too_many_lines,
    reason = "a scenario test reads top to bottom; its steps are commented in place"
)]

use rekey_core::kek::unlock_key_pair as unlock;
use rekey_core::model::{KeyState, MigrationState, Phase, PrincipalKind};
use rekey_core::record::decrypt_record;
use rekey_core::{
    GrantBinding, GrantOpener, Kek, KeyPairId, PrincipalId, PrivateKey, RecordId, Subject,
};
use rekey_demo::Credentials;
use rekey_demo::generate::record_plaintext;
use rekey_demo::password::master_secret;
use rekey_keys::KeyDir;
use rekey_storage::Vault;
use std::collections::BTreeMap;

/// What a grant gives access to, independent of key versions: a record's
/// key, or "the key of principal P" (whichever key pair P has now).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Holding {
    Record(RecordId),
    KeyOf(PrincipalId),
}

/// Every principal's holdings (a multiset: a duplicate would show).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub holdings: BTreeMap<PrincipalId, BTreeMap<Holding, usize>>,
    pub names: BTreeMap<PrincipalId, (PrincipalKind, String, MigrationState)>,
    pub grants: usize,
}

/// Reads every principal's grants and maps each to what it opens.
pub async fn snapshot(vault: &Vault) -> Snapshot {
    let mut s = Snapshot::default();
    let mut owner: BTreeMap<KeyPairId, PrincipalId> = BTreeMap::new();
    let mut all = Vec::new();
    for kind in [
        PrincipalKind::User,
        PrincipalKind::Role,
        PrincipalKind::Service,
    ] {
        for p in vault.principals_of_kind(kind).await.expect("principals") {
            for kp in vault.key_pairs(p.id).await.expect("key pairs") {
                owner.insert(kp.id, p.id);
            }
            s.names.insert(p.id, (p.kind, p.name.clone(), p.migration));
            all.push(p.id);
        }
    }
    for p in all {
        let mut h: BTreeMap<Holding, usize> = BTreeMap::new();
        for g in vault.grants_to(p).await.expect("grants") {
            s.grants += 1;
            let what = match g.subject {
                Subject::RecordKey(r) => Holding::Record(r),
                Subject::PrivateKey(kp) => {
                    Holding::KeyOf(*owner.get(&kp).expect("a grant of an unknown key pair"))
                }
            };
            *h.entry(what).or_default() += 1;
        }
        s.holdings.insert(p, h);
    }
    s
}

/// The outcome of [`check_completed`].
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Grants of the finished vault opened (each compared with the seed).
    pub grants_checked: usize,
    /// Holdings before the start that no grant gives any more.
    pub lost: usize,
    /// Grants that do not open with their recipient's key, or open to the
    /// wrong secret.
    pub corrupt: usize,
    /// Holdings given more often than before (a principal migrated twice,
    /// a bundle applied twice).
    pub duplicated: usize,
    /// Principals with other than exactly one current key pair, or not
    /// migrated, or whose key the vault cannot give.
    pub bad_principals: usize,
    /// Principals not named by exactly one `bundle applied` audit event of
    /// the last run.
    pub audit_mismatches: usize,
    /// Bundles applied in the last run, by the audit log.
    pub bundles_applied: usize,
    /// Services migrated whose new key pair has no certificate row (the
    /// key file is there and every grant opens, but the vault no longer
    /// knows the service's certificate). Kept apart from `problems`: the
    /// crash tests count it as a known bug (see `clean`).
    pub missing_certificates: Vec<String>,
    /// Everything found, one line each.
    pub problems: Vec<String>,
}

impl Report {
    /// Nothing found at all.
    pub fn clean(&self) -> bool {
        self.problems.is_empty() && self.missing_certificates.is_empty()
    }

    /// Nothing lost, corrupt, duplicated or unaccounted for; a missing
    /// certificate row aside (a known bug of the server phase after a
    /// crash: engine.rs `run_server_phase` applies a service's bundle and
    /// records its new certificate in two transactions, and a resume
    /// skips migrated services; see the ignored test in
    /// rekey-engine/tests/faults.rs).
    pub fn grants_intact(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, p: String) {
        if self.problems.len() < 50 {
            self.problems.push(p);
        }
    }
}

/// Checks a completed (finalized) demo vault against the snapshot taken
/// before the start: the same holdings per principal, exactly one current
/// key pair each, every grant opening to the seeded secret, every service
/// key in the key directory with its certificate, and an audit log that
/// names every principal in exactly one applied bundle.
pub async fn check_completed(
    vault: &Vault,
    before: &Snapshot,
    keys: &KeyDir,
    creds: &Credentials,
) -> Report {
    let mut r = Report::default();
    let row = vault.migration().await.expect("migration row");
    if row.phase != Phase::Completed {
        r.problem(format!("phase is {}, not completed", row.phase));
    }
    let after = snapshot(vault).await;
    let name = |p: &PrincipalId| {
        before
            .names
            .get(p)
            .map_or_else(|| p.to_string(), |n| n.1.clone())
    };

    // Holdings, principal by principal.
    for (p, held) in &before.holdings {
        if before.names.get(p).map(|n| n.2) == Some(MigrationState::Exempt) {
            continue;
        }
        let now = after.holdings.get(p).cloned().unwrap_or_default();
        for (h, n) in held {
            let m = now.get(h).copied().unwrap_or(0);
            if m < *n {
                r.lost += n - m;
                r.problem(format!("{}: lost {h:?}", name(p)));
            } else if m > *n {
                r.duplicated += m - n;
                r.problem(format!("{}: {h:?} {m} times, was {n}", name(p)));
            }
        }
        for (h, m) in &now {
            if !held.contains_key(h) {
                r.duplicated += m;
                r.problem(format!("{}: gained {h:?}", name(p)));
            }
        }
    }

    // Keys: every principal has exactly one key pair, current, migrated.
    let vault_id = vault.vault_id().await.expect("vault id");
    let mut current: BTreeMap<PrincipalId, rekey_core::model::KeyPairRecord> = BTreeMap::new();
    for (p, (_, n, _)) in &after.names {
        let pairs = vault.key_pairs(*p).await.expect("key pairs");
        let state = vault
            .principal(*p)
            .await
            .expect("principal")
            .map(|x| x.migration);
        if state == Some(MigrationState::Exempt) {
            continue;
        }
        let cur: Vec<_> = pairs
            .iter()
            .filter(|k| k.state == KeyState::Current)
            .collect();
        if pairs.len() != 1 || cur.len() != 1 || state != Some(MigrationState::Migrated) {
            r.bad_principals += 1;
            r.problem(format!(
                "{n}: {} key pair(s), {} current, state {state:?}",
                pairs.len(),
                cur.len()
            ));
        }
        if let Some(k) = cur.first() {
            current.insert(*p, (*k).clone());
        }
    }

    // The private key of every principal, as its rightful holder gets it.
    let mut private: BTreeMap<PrincipalId, PrivateKey> = BTreeMap::new();
    for u in creds.users.values() {
        let Some(kp) = current.get(&u.id) else {
            continue;
        };
        let master = master_secret(&u.password, vault_id, u.id, &creds.kdf).expect("master secret");
        let kek = Kek::derive(&master, vault_id, u.id).expect("kek");
        match unlock(kp, vault_id, &kek) {
            Some(k) => {
                private.insert(u.id, k);
            }
            None => {
                r.bad_principals += 1;
                r.problem(format!(
                    "{}: password no longer unlocks its key",
                    name(&u.id)
                ));
            }
        }
    }
    let certificates = vault.certificates().await.expect("certificates");
    for (p, (kind, n, _)) in &after.names {
        if *kind != PrincipalKind::Service {
            continue;
        }
        let Some(kp) = current.get(p) else { continue };
        let fp = rekey_core::crypto::fingerprint(&kp.public_key);
        if !certificates
            .iter()
            .any(|c| c.key_pair == kp.id && c.fingerprint == fp)
        {
            r.missing_certificates.push(n.clone());
        }
        match keys.new_key(&fp) {
            Ok(Some(k)) => {
                private.insert(*p, PrivateKey::from(k));
            }
            _ => {
                r.bad_principals += 1;
                r.problem(format!(
                    "service {n}: current key {fp} not in the key directory"
                ));
            }
        }
    }
    // Roles and managed users: through the grants their holders have.
    let mut grants_of: BTreeMap<PrincipalId, Vec<rekey_core::model::GrantRecord>> = BTreeMap::new();
    for p in after.names.keys() {
        grants_of.insert(*p, vault.grants_to(*p).await.expect("grants"));
    }
    let mut queue: Vec<PrincipalId> = private.keys().copied().collect();
    let owner_of: BTreeMap<KeyPairId, PrincipalId> =
        current.iter().map(|(p, k)| (k.id, *p)).collect();
    while let Some(holder) = queue.pop() {
        let Some(key) = private.get(&holder) else {
            continue;
        };
        let mut opener = GrantOpener::new(key);
        let mut learned = Vec::new();
        for g in &grants_of[&holder] {
            let Subject::PrivateKey(kp) = g.subject else {
                continue;
            };
            let Some(owner) = owner_of.get(&kp) else {
                continue;
            };
            if private.contains_key(owner) {
                continue;
            }
            let binding = GrantBinding {
                vault: vault_id,
                recipient: holder,
                subject: g.subject,
            };
            if let Some(kek) = opener
                .open(&binding, &g.envelope)
                .ok()
                .and_then(|s| s.into_kek())
            {
                if let Some(k) = unlock(&current[owner], vault_id, &kek) {
                    learned.push((*owner, k));
                }
            }
        }
        for (owner, k) in learned {
            if let std::collections::btree_map::Entry::Vacant(v) = private.entry(owner) {
                v.insert(k);
                queue.push(owner);
            }
        }
    }

    // Every grant, opened by its recipient's key.
    let mut records: BTreeMap<RecordId, Option<Vec<u8>>> = BTreeMap::new();
    for (p, grants) in &grants_of {
        let Some(key) = private.get(p) else {
            if !grants.is_empty() {
                r.corrupt += grants.len();
                r.problem(format!(
                    "{}: no key opens its {} grant(s)",
                    name(p),
                    grants.len()
                ));
            }
            continue;
        };
        let mut opener = GrantOpener::new(key);
        for g in grants {
            r.grants_checked += 1;
            let binding = GrantBinding {
                vault: vault_id,
                recipient: *p,
                subject: g.subject,
            };
            let ok = match (opener.open(&binding, &g.envelope), g.subject) {
                (Ok(secret), Subject::RecordKey(rec)) => {
                    if let std::collections::btree_map::Entry::Vacant(slot) = records.entry(rec) {
                        let row = vault.record(rec).await.expect("record");
                        slot.insert(row.map(|x| x.ciphertext));
                    }
                    match (secret.into_record_key(), &records[&rec]) {
                        (Some(k), Some(ct)) => decrypt_record(&k, vault_id, rec, ct)
                            .is_ok_and(|pt| pt.dangerous_as_bytes() == record_plaintext(rec)),
                        _ => false,
                    }
                }
                (Ok(secret), Subject::PrivateKey(kp)) => match owner_of.get(&kp) {
                    Some(owner) => secret
                        .into_kek()
                        .and_then(|kek| unlock(&current[owner], vault_id, &kek))
                        .is_some(),
                    None => false,
                },
                (Err(_), _) => false,
            };
            if !ok {
                r.corrupt += 1;
                r.problem(format!("{}: grant {} does not open", name(p), g.id));
            }
        }
    }

    // The audit log of the last run: each principal in exactly one
    // applied bundle.
    let events = vault.audit_events(0, 10_000_000).await.expect("audit");
    let start = events
        .iter()
        .rposition(|(_, e)| e.action == "start")
        .unwrap_or(0);
    let mut applied: BTreeMap<PrincipalId, usize> = BTreeMap::new();
    for (_, e) in &events[start..] {
        if e.action != "bundle applied" {
            continue;
        }
        r.bundles_applied += 1;
        let d: serde_json::Value = serde_json::from_str(&e.details).expect("audit details");
        for p in d["principals"].as_array().expect("principals in the audit") {
            let id: PrincipalId = p.as_str().expect("id").parse().expect("a principal id");
            *applied.entry(id).or_default() += 1;
        }
    }
    for (p, (_, n, state)) in &before.names {
        if *state == MigrationState::Exempt {
            continue;
        }
        let times = applied.get(p).copied().unwrap_or(0);
        if times != 1 {
            r.audit_mismatches += 1;
            r.problem(format!("{n}: in {times} applied bundles"));
        }
    }
    let completed = events[start..]
        .iter()
        .filter(|(_, e)| e.action == "completed")
        .count();
    if completed != 1 {
        r.audit_mismatches += 1;
        r.problem(format!("{completed} `completed` audit events in the run"));
    }
    let progress = vault.progress().await.expect("progress");
    let migrated = progress.users.migrated + progress.roles.migrated + progress.services.migrated;
    if migrated as usize != applied.len() {
        r.audit_mismatches += 1;
        r.problem(format!(
            "{migrated} principals migrated but {} named by the audit log",
            applied.len()
        ));
    }
    r
}
