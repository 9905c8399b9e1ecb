//! Checking a bundle on the server. A [`CheckedBundle`] can only come out
//! of [`check_bundle`]; storage applies nothing else.

use super::wire::{body_digest, signed_message_of_digest};
use super::{Bundle, PrincipalPart, SignatureKind, SignedBundle};
use crate::crypto::PublicKey;
use crate::crypto::target::Target;
use crate::envelope::Scheme;
use crate::ids::{GrantId, KeyPairId, PrincipalId, RunId, Subject, VaultId};
use crate::model::MigrationState;
use std::collections::{HashMap, HashSet};

/// What the server knows about one principal a bundle migrates.
#[derive(Debug, Clone)]
pub struct PrincipalFacts {
    /// Its display name (for messages).
    pub name: String,
    /// Its migration state now.
    pub state: MigrationState,
    /// Its legacy key pair.
    pub legacy_key_pair: KeyPairId,
    /// Its legacy public key, which must sign its part (RSA-PSS for RSA,
    /// ECDSA for a key of an earlier migration).
    pub legacy_public_key: PublicKey,
    /// Its legacy grants still pending, with their subjects.
    pub pending_grants: HashMap<GrantId, Subject>,
    /// Who must receive its new KEK (role members, a managed user's
    /// directory master key); empty for e2ee users and server-held keys.
    pub holders: Vec<PrincipalId>,
    /// Whether its private key lives in the database (wrapped under a KEK)
    /// rather than in the server's key directory.
    pub key_in_database: bool,
}

/// What the server knows about one holder of a migrating key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HolderFacts {
    /// Its migration state now.
    pub state: MigrationState,
    /// Its legacy key pair.
    pub legacy_key_pair: KeyPairId,
    /// The scheme a grant to its legacy key must use while it is pending
    /// (`PublicKey::pending_holder_scheme` of that key).
    pub pending_scheme: Scheme,
    /// Its current (new) key pair, once migrated.
    pub current_key_pair: Option<KeyPairId>,
}

/// The server's view, loaded for the principals a bundle names.
#[derive(Debug, Clone)]
pub struct CheckContext {
    /// This vault.
    pub vault: VaultId,
    /// The current run.
    pub run: RunId,
    /// The run's target: every part's new key must be of it.
    pub target: Target,
    /// Who is authenticated as submitting the bundle.
    pub submitter: PrincipalId,
    /// Facts for every part's principal.
    pub principals: HashMap<PrincipalId, PrincipalFacts>,
    /// Facts for every holder of every part's principal.
    pub holders: HashMap<PrincipalId, HolderFacts>,
    /// Those of the bundle's new key pair ids the vault already has.
    pub taken_key_pairs: HashSet<KeyPairId>,
}

/// Why a bundle was refused. [`CheckError::is_conflict`] tells the client
/// to fetch a fresh package and rebuild.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The bundle was built for another vault.
    #[error("the bundle is for another vault")]
    WrongVault,
    /// The bundle was built for an earlier run (aborted and restarted).
    #[error("the bundle was built for an earlier migration run; fetch a new package")]
    StaleRun,
    /// The bundle is not the submitter's own.
    #[error("the bundle's first part must be the submitter's own")]
    NotSubmitter,
    /// A part for a principal the server does not know.
    #[error("the bundle names unknown principal {0}")]
    UnknownPrincipal(PrincipalId),
    /// A part's new key is not of the run's target (a client built for
    /// another target, or one that ignores the package's `target`).
    #[error("the new key of a part is {found}, but this migration moves keys to {expected}")]
    WrongTarget {
        /// The run's target.
        expected: Target,
        /// The part's.
        found: Target,
    },
    /// The same principal twice.
    #[error("principal {0} appears in more than one part")]
    DuplicatePart(PrincipalId),
    /// A new key pair id the vault already has, or two parts with the same
    /// one: new ids must be fresh random ones.
    #[error("new key pair id {0} is already taken; use a fresh random id")]
    KeyPairIdTaken(KeyPairId),
    /// A part for a principal whose key the submitter does not hold.
    #[error("the submitter does not hold the key of {0}")]
    NotAHolder(String),
    /// The submitter has migrated already (an earlier bundle of its own,
    /// or another holder's): rebuilding cannot help.
    #[error("{0} has already migrated")]
    SubmitterMigrated(String),
    /// A principal of a later part (a role, a managed user) was migrated by
    /// another holder meanwhile: fetch a new package and rebuild without it.
    #[error("{0} has already migrated")]
    AlreadyMigrated(String),
    /// The principal cannot migrate now (blocked or exempt).
    #[error("{name} cannot migrate: it is {state}")]
    NotPending {
        /// Who.
        name: String,
        /// Its state.
        state: MigrationState,
    },
    /// The part names a legacy key pair that is not the principal's.
    #[error("the legacy key of {0} has changed; fetch a new package")]
    LegacyKeyChanged(String),
    /// The pending grants changed since the package was fetched.
    #[error(
        "the pending grants of {name} changed ({missing} not covered, {unknown} unknown); fetch a new package"
    )]
    CoverageChanged {
        /// Whose.
        name: String,
        /// Pending grants the bundle lacks.
        missing: usize,
        /// Grants the bundle names that are not pending.
        unknown: usize,
    },
    /// A grant named twice in one part.
    #[error("grant {0} appears more than once")]
    DuplicateGrant(GrantId),
    /// A re-wrapped grant whose subject differs from the grant it replaces.
    #[error("grant {0} changes its subject")]
    SubjectChanged(GrantId),
    /// A new grant not in the target scheme.
    #[error("grant {grant} of {name} is not in {expected}")]
    WrongGrantScheme {
        /// Whose.
        name: String,
        /// Which.
        grant: GrantId,
        /// The scheme required.
        expected: &'static str,
    },
    /// A new private key missing or present where it must not be.
    #[error("the new private key of {0} is missing or misplaced")]
    WrappedKeyMisplaced(String),
    /// The holders changed since the package (a member added, removed or
    /// migrated meanwhile).
    #[error("the holders of {0} changed; fetch a new package")]
    HoldersChanged(String),
    /// A holder grant in the wrong scheme or to the wrong key.
    #[error("the new key of {part} is wrapped to the wrong key of holder {holder}")]
    HolderGrantInvalid {
        /// Whose key.
        part: String,
        /// For whom.
        holder: PrincipalId,
    },
    /// A signature is missing.
    #[error("the bundle lacks the {kind} signature of {name}")]
    MissingSignature {
        /// Whose.
        name: String,
        /// Which.
        kind: &'static str,
    },
    /// A signature does not verify.
    #[error("the {kind} signature of {name} does not verify")]
    BadSignature {
        /// Whose.
        name: String,
        /// Which.
        kind: &'static str,
    },
    /// A signature by someone who has no part.
    #[error("the bundle carries an unexpected signature")]
    UnexpectedSignature,
}

impl CheckError {
    /// The vault changed under the client: fetch a new package, rebuild.
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            CheckError::StaleRun
                | CheckError::AlreadyMigrated(_)
                | CheckError::LegacyKeyChanged(_)
                | CheckError::CoverageChanged { .. }
                | CheckError::HoldersChanged(_)
        )
    }

    /// The stable machine-readable code of this refusal, as the server
    /// sends it and `docs/PROTOCOL.md` lists it.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            CheckError::WrongVault => "wrong_vault",
            CheckError::StaleRun => "stale_run",
            CheckError::NotSubmitter => "not_submitter",
            CheckError::UnknownPrincipal(_) => "unknown_principal",
            CheckError::WrongTarget { .. } => "wrong_target",
            CheckError::DuplicatePart(_) => "duplicate_part",
            CheckError::KeyPairIdTaken(_) => "key_pair_id_taken",
            CheckError::NotAHolder(_) => "not_a_holder",
            CheckError::SubmitterMigrated(_) => "already_migrated",
            CheckError::AlreadyMigrated(_) => "candidate_migrated",
            CheckError::NotPending { .. } => "not_pending",
            CheckError::LegacyKeyChanged(_) => "legacy_key_changed",
            CheckError::CoverageChanged { .. } => "coverage_changed",
            CheckError::DuplicateGrant(_) => "duplicate_grant",
            CheckError::SubjectChanged(_) => "subject_changed",
            CheckError::WrongGrantScheme { .. } => "wrong_grant_scheme",
            CheckError::WrappedKeyMisplaced(_) => "wrapped_key_misplaced",
            CheckError::HoldersChanged(_) => "holders_changed",
            CheckError::HolderGrantInvalid { .. } => "holder_grant_invalid",
            CheckError::MissingSignature { .. } => "signature_missing",
            CheckError::BadSignature { .. } => "signature_invalid",
            CheckError::UnexpectedSignature => "signature_unexpected",
        }
    }

    /// A signature is missing or wrong: the submitter is not who it claims.
    #[must_use]
    pub fn is_signature(&self) -> bool {
        matches!(
            self,
            CheckError::MissingSignature { .. }
                | CheckError::BadSignature { .. }
                | CheckError::UnexpectedSignature
                | CheckError::NotSubmitter
                | CheckError::NotAHolder(_)
        )
    }
}

/// What must still hold when storage applies a checked bundle, inside the
/// applying transaction (the vault may change between check and apply).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// Principals that must still be pending: every part's principal, and
    /// every holder that received a legacy (RSA) grant.
    pub pending: Vec<PrincipalId>,
    /// Holders that must still have this current key pair.
    pub current_keys: Vec<(PrincipalId, KeyPairId)>,
    /// Per part: the exact legacy grants it covers (re-wrapped or listed as
    /// non-migratable). Must still be exactly the pending set.
    pub covered: Vec<(PrincipalId, Vec<GrantId>)>,
}

/// A bundle whose signatures, coverage and schemes were checked.
#[derive(Debug, Clone)]
pub struct CheckedBundle {
    bundle: Bundle,
    preconditions: Preconditions,
}

impl CheckedBundle {
    /// The bundle.
    #[must_use]
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// What must still hold when it is applied.
    #[must_use]
    pub fn preconditions(&self) -> &Preconditions {
        &self.preconditions
    }

    /// The bundle and its preconditions, by value: a write set can move
    /// the envelopes instead of copying a large bundle once more.
    #[must_use]
    pub fn into_parts(self) -> (Bundle, Preconditions) {
        (self.bundle, self.preconditions)
    }
}

/// Checks a signed bundle against the server's view. The checked bundle
/// is a copy; [`check_signed`] takes the signed bundle instead.
pub fn check_bundle(
    signed: &SignedBundle,
    ctx: &CheckContext,
) -> Result<CheckedBundle, CheckError> {
    Ok(CheckedBundle {
        preconditions: preconditions_of(signed, ctx)?,
        bundle: signed.bundle().clone(),
    })
}

/// [`check_bundle`] that consumes the signed bundle, so the checked one
/// holds the only decoded copy (the signed body is dropped).
pub fn check_signed(signed: SignedBundle, ctx: &CheckContext) -> Result<CheckedBundle, CheckError> {
    let preconditions = preconditions_of(&signed, ctx)?;
    Ok(CheckedBundle {
        bundle: signed.into_bundle(),
        preconditions,
    })
}

/// Every check of [`check_bundle`]; what must still hold when applied.
fn preconditions_of(
    signed: &SignedBundle,
    ctx: &CheckContext,
) -> Result<Preconditions, CheckError> {
    let bundle = signed.bundle();
    if bundle.vault != ctx.vault {
        return Err(CheckError::WrongVault);
    }
    if bundle.run != ctx.run {
        return Err(CheckError::StaleRun);
    }
    if bundle.submitter != ctx.submitter
        || bundle.parts.first().map(|p| p.principal) != Some(ctx.submitter)
    {
        return Err(CheckError::NotSubmitter);
    }
    let mut seen = HashSet::new();
    let mut new_ids = HashSet::new();
    for part in &bundle.parts {
        if !seen.insert(part.principal) {
            return Err(CheckError::DuplicatePart(part.principal));
        }
        if !new_ids.insert(part.new_key_pair.id) {
            return Err(CheckError::KeyPairIdTaken(part.new_key_pair.id));
        }
        let found = part.new_key_pair.public_key.target();
        if found != ctx.target {
            return Err(CheckError::WrongTarget {
                expected: ctx.target,
                found,
            });
        }
    }
    // The signatures before anything about the principals' state: a
    // bundle its own keys did not sign learns nothing of the vault.
    check_signatures(signed, ctx)?;

    let mut pre = Preconditions::default();
    // Each part's new key pair: a holder migrating in this bundle gets the
    // KEK under its new key.
    let new_keys: HashMap<PrincipalId, KeyPairId> = bundle
        .parts
        .iter()
        .map(|p| (p.principal, p.new_key_pair.id))
        .collect();
    // Principals of the parts before this one (linear in parts x holders;
    // the directory key's bundle has thousands of parts).
    let mut earlier: HashSet<PrincipalId> = HashSet::with_capacity(bundle.parts.len());
    for (index, part) in bundle.parts.iter().enumerate() {
        let facts = ctx
            .principals
            .get(&part.principal)
            .ok_or(CheckError::UnknownPrincipal(part.principal))?;
        // The submitter holds the key of every later part's principal, itself
        // or through a principal of an earlier part (a role whose members are
        // managed users the directory key migrates in the same bundle).
        if index > 0 && !facts.holders.iter().any(|h| earlier.contains(h)) {
            return Err(CheckError::NotAHolder(facts.name.clone()));
        }
        earlier.insert(part.principal);
        if index == 0 {
            may_migrate(&facts.name, facts.state)?;
        } else if facts.state == MigrationState::Migrated {
            return Err(CheckError::AlreadyMigrated(facts.name.clone()));
        } else {
            may_migrate(&facts.name, facts.state)?;
        }
        // After the state: a bundle sent again after a lost answer is
        // `already_migrated`, not a clash with the key pair it created.
        if ctx.taken_key_pairs.contains(&part.new_key_pair.id) {
            return Err(CheckError::KeyPairIdTaken(part.new_key_pair.id));
        }
        if part.legacy_key_pair != facts.legacy_key_pair {
            return Err(CheckError::LegacyKeyChanged(facts.name.clone()));
        }
        if part.new_key_pair.wrapped_private.is_some() != facts.key_in_database {
            return Err(CheckError::WrappedKeyMisplaced(facts.name.clone()));
        }
        pre.covered
            .push((part.principal, check_coverage(part, facts)?));
        pre.pending.push(part.principal);
        check_holders(part, facts, ctx, &new_keys, &mut pre)?;
    }
    Ok(pre)
}

fn check_coverage(
    part: &PrincipalPart,
    facts: &PrincipalFacts,
) -> Result<Vec<GrantId>, CheckError> {
    let target = part.new_key_pair.public_key.target().batch_scheme();
    let mut covered = HashSet::with_capacity(part.grants.len() + part.non_migratable.len());
    let mut unknown = 0usize;
    for g in &part.grants {
        if !covered.insert(g.replaces) {
            return Err(CheckError::DuplicateGrant(g.replaces));
        }
        match facts.pending_grants.get(&g.replaces) {
            Some(subject) if *subject != g.subject => {
                return Err(CheckError::SubjectChanged(g.replaces));
            }
            Some(_) => {}
            None => unknown += 1,
        }
        if g.envelope.scheme() != target {
            return Err(CheckError::WrongGrantScheme {
                name: facts.name.clone(),
                grant: g.replaces,
                expected: target.name(),
            });
        }
    }
    for nm in &part.non_migratable {
        if !covered.insert(nm.grant) {
            return Err(CheckError::DuplicateGrant(nm.grant));
        }
        if !facts.pending_grants.contains_key(&nm.grant) {
            unknown += 1;
        }
    }
    let missing = facts
        .pending_grants
        .keys()
        .filter(|id| !covered.contains(id))
        .count();
    if missing > 0 || unknown > 0 {
        return Err(CheckError::CoverageChanged {
            name: facts.name.clone(),
            missing,
            unknown,
        });
    }
    let mut ids: Vec<GrantId> = covered.into_iter().collect();
    ids.sort();
    Ok(ids)
}

fn check_holders(
    part: &PrincipalPart,
    facts: &PrincipalFacts,
    ctx: &CheckContext,
    new_keys: &HashMap<PrincipalId, KeyPairId>,
    pre: &mut Preconditions,
) -> Result<(), CheckError> {
    let expected: HashSet<PrincipalId> = facts.holders.iter().copied().collect();
    let given: HashSet<PrincipalId> = part.holder_grants.iter().map(|h| h.holder).collect();
    if given.len() != part.holder_grants.len() || given != expected {
        return Err(CheckError::HoldersChanged(facts.name.clone()));
    }
    let hpke = part.new_key_pair.public_key.target().batch_scheme();
    for h in &part.holder_grants {
        let invalid = || CheckError::HolderGrantInvalid {
            part: facts.name.clone(),
            holder: h.holder,
        };
        let scheme = h.envelope.scheme();
        if let Some(new) = new_keys.get(&h.holder) {
            if h.holder_key_pair != *new || scheme != hpke {
                return Err(invalid());
            }
            continue;
        }
        let holder = ctx
            .holders
            .get(&h.holder)
            .ok_or_else(|| CheckError::HoldersChanged(facts.name.clone()))?;
        match (holder.state, holder.current_key_pair) {
            (MigrationState::Migrated, Some(current)) => {
                if h.holder_key_pair != current {
                    return Err(CheckError::HoldersChanged(facts.name.clone()));
                }
                if !scheme.is_hpke() {
                    return Err(invalid());
                }
                pre.current_keys.push((h.holder, current));
            }
            _ => {
                if h.holder_key_pair != holder.legacy_key_pair {
                    return Err(CheckError::HoldersChanged(facts.name.clone()));
                }
                if scheme != holder.pending_scheme {
                    return Err(invalid());
                }
                pre.pending.push(h.holder);
            }
        }
    }
    Ok(())
}

fn kind_name(kind: SignatureKind) -> &'static str {
    match kind {
        SignatureKind::LegacyKey => "legacy-key",
        SignatureKind::NewKeyEcdsa => "new-key ECDSA",
    }
}

fn check_signatures(signed: &SignedBundle, ctx: &CheckContext) -> Result<(), CheckError> {
    let bundle = signed.bundle();
    let mut by: HashMap<(PrincipalId, SignatureKind), &[u8]> = HashMap::new();
    for s in signed.signatures() {
        if by.insert((s.principal, s.kind), &s.bytes).is_some() {
            return Err(CheckError::UnexpectedSignature);
        }
    }
    if by.len() != bundle.parts.len() * 2 {
        // Either one is missing (found below) or a stranger signed.
        let parts: HashSet<PrincipalId> = bundle.parts.iter().map(|p| p.principal).collect();
        if by.keys().any(|(p, _)| !parts.contains(p)) {
            return Err(CheckError::UnexpectedSignature);
        }
    }
    let digest = body_digest(signed.body());
    for part in &bundle.parts {
        let facts = ctx
            .principals
            .get(&part.principal)
            .ok_or(CheckError::UnknownPrincipal(part.principal))?;
        for kind in [SignatureKind::LegacyKey, SignatureKind::NewKeyEcdsa] {
            let sig =
                by.get(&(part.principal, kind))
                    .ok_or_else(|| CheckError::MissingSignature {
                        name: facts.name.clone(),
                        kind: kind_name(kind),
                    })?;
            let msg = signed_message_of_digest(&digest, kind, part.principal);
            let ok = match kind {
                SignatureKind::LegacyKey => facts.legacy_public_key.verify_legacy(&msg, sig),
                SignatureKind::NewKeyEcdsa => part.new_key_pair.public_key.verify(&msg, sig),
            };
            if ok.is_err() {
                return Err(CheckError::BadSignature {
                    name: facts.name.clone(),
                    kind: kind_name(kind),
                });
            }
        }
    }
    Ok(())
}

/// Whether an account in `state` may migrate now, as the submitter of a
/// bundle or as the account a package is asked for: only a pending one
/// may. A migrated account is `already_migrated` (rebuilding cannot help),
/// a blocked or exempt one `not_pending`.
pub fn may_migrate(name: &str, state: MigrationState) -> Result<(), CheckError> {
    match state {
        MigrationState::Pending => Ok(()),
        MigrationState::Migrated => Err(CheckError::SubmitterMigrated(name.to_owned())),
        state => Err(CheckError::NotPending {
            name: name.to_owned(),
            state,
        }),
    }
}
