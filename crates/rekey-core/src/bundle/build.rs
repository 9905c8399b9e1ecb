//! Building a bundle on the client (or, for server-held keys, on the
//! server). Pure: the caller supplies the package and the secret that
//! unlocks the legacy key. Legacy grants open on all cores (rayon).
//!
//! The legacy key is RSA before a vault's first migration; when a migrated
//! vault migrates again it is the previous target's key, its grants are
//! HPKE grants (opened with their binding), it signs with ECDSA, and a
//! pending holder's grant is single-shot HPKE to it.

use super::wire::{body_digest, encode_body, signed_message_of_digest};
use super::{
    Bundle, BundleSignature, Candidate, HolderGrant, HolderKey, MigrationPackage, NewGrant,
    NewKeyPair, NonMigratableEntry, NonMigratableReason, PendingGrant, PrincipalPart,
    SignatureKind, SignedBundle,
};
use crate::crypto::PrivateKey;
use crate::crypto::target::{NewPrivateKey, Target};
use crate::envelope::{Envelope, Scheme};
use crate::error::CryptoError;
use crate::grant::{BatchSealer, open_grant, wrap_to_pending_holder};
use crate::ids::{GrantBinding, KeyBinding, KeyPairId, PrincipalId, Subject, VaultId};
use crate::kek::{unwrap_private_key, wrap_private_key};
use crate::secret::{Kek, MasterSecret, SecretBytes};
use rand_core::OsRng;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The scheme rekey uses for a role's new KEK addressed to a member who has
/// not migrated yet, when that member's legacy key is RSA (see
/// `PublicKey::pending_holder_scheme` for the others).
pub const PENDING_HOLDER_SCHEME: Scheme = Scheme::RsaOaepSha256;

/// What unlocks the submitter's legacy private key.
#[derive(Debug)]
pub enum Unlock<'a> {
    /// An e2ee user: the KEK derived from the master secret unwraps the
    /// legacy private key, and wraps the new one.
    MasterSecret(&'a MasterSecret),
    /// A server-held principal: its legacy key from the key directory. The
    /// new private key is returned for the caller to store there.
    ServerKey(&'a PrivateKey),
}

/// How to build. The kind of the new keys is not an option: it is the
/// run's target, which the package names.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildOptions {
    /// Worker threads for the RSA unwraps; `None` uses every core.
    pub threads: Option<usize>,
}

/// What the build did, for the user's screen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildReport {
    /// Legacy grants re-wrapped, all parts together.
    pub grants_rewrapped: usize,
    /// Legacy grants listed as non-migratable.
    pub non_migratable: usize,
    /// Other principals migrated along (roles, managed users).
    pub candidates_migrated: Vec<PrincipalId>,
    /// Candidates left for another holder, with the reason.
    pub candidates_skipped: Vec<(PrincipalId, &'static str)>,
}

/// The result of a build.
#[derive(Debug)]
pub struct BuildOutput {
    /// The bundle to submit.
    pub bundle: SignedBundle,
    /// For [`Unlock::ServerKey`]: the new private key, for the key directory.
    pub new_server_key: Option<NewPrivateKey>,
    /// What happened.
    pub report: BuildReport,
}

/// Why a bundle could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The master secret does not unlock the legacy key (wrong password).
    #[error("the password does not unlock this account's key")]
    WrongMasterSecret,
    /// The package holds no wrapped legacy key for an e2ee user.
    #[error("the migration package has no wrapped legacy private key for this account")]
    MissingWrappedKey,
    /// The unlocked key is not the package's legacy key.
    #[error("the unlocked legacy key does not match the account's legacy public key")]
    LegacyKeyMismatch,
    /// The worker pool could not start.
    #[error("could not start {0} worker threads")]
    Threads(usize),
    /// A crypto operation that should not fail did.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Legacy grants a login has already opened, kept across its attempts: when
/// a submission loses a race (another member migrated a shared role
/// meanwhile) the rebuild costs no RSA operation for the grants it opened
/// before. An entry is reused only for the same grant id with the same
/// envelope bytes, recipient and subject (an HPKE legacy grant of a second
/// migration opens only under its binding, so a package naming the same
/// bytes for another recipient or subject must not get the secret); the
/// secrets are zeroized when the memo is dropped.
///
/// The memo lives as long as the login, beside the bundle and the server's
/// copy of it, so an entry keeps only a SHA-256 digest of the envelope (32
/// bytes, not the 256 or 512 of an RSA ciphertext) to recognise it.
#[derive(Default)]
pub struct OpenedGrants {
    opened: Mutex<HashMap<crate::ids::GrantId, ([u8; 32], SecretBytes)>>,
}

/// What an entry is recognised by: SHA-256 of the recipient, the subject
/// and the envelope bytes.
fn envelope_digest(recipient: PrincipalId, g: &PendingGrant) -> [u8; 32] {
    use sha2::Digest;
    let (kind, id) = match g.subject {
        Subject::RecordKey(r) => (1u8, *r.0.as_bytes()),
        Subject::PrivateKey(k) => (2u8, *k.0.as_bytes()),
    };
    let mut h = sha2::Sha256::new();
    h.update(recipient.0.as_bytes());
    h.update([kind]);
    h.update(id);
    h.update(&g.envelope_bytes);
    h.finalize().into()
}

impl OpenedGrants {
    /// An empty memo.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Grants remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.opened.lock().map_or(0, |m| m.len())
    }

    /// Whether nothing is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, recipient: PrincipalId, g: &PendingGrant) -> Option<SecretBytes> {
        let digest = envelope_digest(recipient, g);
        let m = self.opened.lock().ok()?;
        let (known, secret) = m.get(&g.id)?;
        (*known == digest).then(|| SecretBytes::from_slice(secret.dangerous_as_bytes()))
    }

    fn put(&self, recipient: PrincipalId, g: &PendingGrant, secret: &SecretBytes) {
        // Hashed before the lock: the build's worker threads all put here.
        let entry = (
            envelope_digest(recipient, g),
            SecretBytes::from_slice(secret.dangerous_as_bytes()),
        );
        if let Ok(mut m) = self.opened.lock() {
            m.insert(g.id, entry);
        }
    }
}

impl std::fmt::Debug for OpenedGrants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenedGrants({} grants, [redacted])", self.len())
    }
}

/// Builds the bundle for `package`. See [`build_bundle_with_progress`].
pub fn build_bundle(
    package: &MigrationPackage,
    unlock: Unlock<'_>,
    options: BuildOptions,
) -> Result<BuildOutput, BuildError> {
    build_bundle_with_progress(package, unlock, options, &|_, _| {})
}

/// Builds the bundle, calling `progress(done, total)` as legacy grants are
/// unwrapped (from worker threads; keep it cheap).
pub fn build_bundle_with_progress(
    package: &MigrationPackage,
    unlock: Unlock<'_>,
    options: BuildOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<BuildOutput, BuildError> {
    build_bundle_reusing(package, unlock, options, progress, &OpenedGrants::new())
}

/// [`build_bundle_with_progress`] that first looks up each legacy grant in
/// `memo` (filled by an earlier attempt of the same login) and adds what it
/// opens to it. The new keys are fresh on every build.
pub fn build_bundle_reusing(
    package: &MigrationPackage,
    unlock: Unlock<'_>,
    options: BuildOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
    memo: &OpenedGrants,
) -> Result<BuildOutput, BuildError> {
    match options.threads {
        // Every core, or one thread: this one (`build_inner` keeps the work
        // on it). A pool of one would start a thread per build and hand
        // every grant to it (login-all runs one build per user, several at
        // once).
        None | Some(1) => build_inner(package, unlock, options, progress, memo),
        Some(n) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|_| BuildError::Threads(n))?;
            pool.install(|| build_inner(package, unlock, options, progress, memo))
        }
    }
}

struct Progress<'a> {
    done: AtomicUsize,
    total: usize,
    report: &'a (dyn Fn(usize, usize) + Sync),
    memo: &'a OpenedGrants,
    /// Whether per-item work goes to rayon's threads; `false` keeps it all
    /// on the calling thread.
    parallel: bool,
}

impl Progress<'_> {
    /// `f` over `items`, in order: spread over rayon's threads, or on this
    /// one.
    fn map_each<T: Sync, R: Send>(&self, items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
        if self.parallel {
            items.par_iter().map(f).collect()
        } else {
            items.iter().map(f).collect()
        }
    }

    fn tick(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if done % 64 == 0 || done == self.total {
            (self.report)(done, self.total);
        }
    }
}

/// A part being built, with the keys that sign it.
struct BuiltPart {
    part: PrincipalPart,
    legacy: Signer,
    new_key: NewPrivateKey,
}

enum Signer {
    Owned(Box<PrivateKey>),
    Borrowed,
}

fn build_inner(
    package: &MigrationPackage,
    unlock: Unlock<'_>,
    options: BuildOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
    memo: &OpenedGrants,
) -> Result<BuildOutput, BuildError> {
    let parallel = options.threads != Some(1);
    let unsigned = build_parts(package, unlock, options, progress, memo)?;
    unsigned.sign_with(parallel)
}

/// A bundle built but not signed yet, with the keys that will sign it:
/// [`build_unsigned`] lets a caller look at (or, in tests, tamper with)
/// the bundle before [`Unsigned::sign`]. Its keys are wiped on drop.
pub struct Unsigned<'a> {
    /// The bundle, as it will be signed.
    pub bundle: Bundle,
    /// What the build did.
    pub report: BuildReport,
    keys: Vec<(Signer, NewPrivateKey)>,
    submitter_legacy: SubmitterLegacy<'a>,
    server_key: bool,
}

enum SubmitterLegacy<'a> {
    Owned(Box<PrivateKey>),
    Server(&'a PrivateKey),
}

impl std::fmt::Debug for Unsigned<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsigned")
            .field("parts", &self.bundle.parts.len())
            .field("keys", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Builds the bundle for `package` without signing it, single-threaded
/// whatever `_options` say.
pub fn build_unsigned<'a>(
    package: &MigrationPackage,
    unlock: Unlock<'a>,
    _options: BuildOptions,
) -> Result<Unsigned<'a>, BuildError> {
    build_parts(
        package,
        unlock,
        BuildOptions { threads: Some(1) },
        &|_, _| {},
        &OpenedGrants::new(),
    )
}

impl Unsigned<'_> {
    /// Encodes the bundle and signs every part: by its legacy key (RSA-PSS,
    /// or ECDSA for a key of an earlier migration), ECDSA by its new key. The parts must still be the built ones, in
    /// order (their contents may have changed).
    pub fn sign(self) -> Result<BuildOutput, BuildError> {
        self.sign_with(false)
    }

    fn sign_with(self, parallel: bool) -> Result<BuildOutput, BuildError> {
        let Unsigned {
            bundle,
            report,
            keys,
            submitter_legacy,
            server_key,
        } = self;
        if keys.len() != bundle.parts.len() {
            return Err(BuildError::Crypto(CryptoError::Library(
                "the bundle's parts are not the ones built",
            )));
        }
        let body = encode_body(&bundle);
        let legacy = match &submitter_legacy {
            SubmitterLegacy::Owned(k) => k,
            SubmitterLegacy::Server(k) => *k,
        };
        let memo = OpenedGrants::new();
        let progress = Progress {
            done: AtomicUsize::new(0),
            total: 0,
            report: &|_, _| {},
            memo: &memo,
            parallel,
        };
        let principals: Vec<PrincipalId> = bundle.parts.iter().map(|p| p.principal).collect();
        let signatures = sign_parts(&principals, &keys, &body_digest(&body), legacy, &progress)?;
        let new_server_key = if server_key {
            keys.into_iter().next().map(|(_, k)| k)
        } else {
            None
        };
        Ok(BuildOutput {
            bundle: SignedBundle::from_parts(body, bundle, signatures),
            new_server_key,
            report,
        })
    }
}

fn build_parts<'a>(
    package: &MigrationPackage,
    unlock: Unlock<'a>,
    options: BuildOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
    memo: &OpenedGrants,
) -> Result<Unsigned<'a>, BuildError> {
    let total = package.pending_grants.len()
        + package
            .candidates
            .iter()
            .map(|c| c.pending_grants.len())
            .sum::<usize>();
    let progress = Progress {
        done: AtomicUsize::new(0),
        total,
        report: progress,
        memo,
        parallel: options.threads != Some(1),
    };
    // 1. Unlock the submitter's legacy key.
    let (owned_legacy, kek) = unlock_legacy(package, &unlock)?;
    let grants_of = |who: PrincipalId| GrantsOf {
        vault: package.vault,
        recipient: who,
    };
    let submitter_legacy = match (owned_legacy, unlock) {
        (Some(k), _) => SubmitterLegacy::Owned(Box::new(k)),
        (None, Unlock::ServerKey(k)) => SubmitterLegacy::Server(k),
        (None, Unlock::MasterSecret(_)) => return Err(BuildError::MissingWrappedKey),
    };
    let legacy_key = match &submitter_legacy {
        SubmitterLegacy::Owned(k) => k,
        SubmitterLegacy::Server(k) => *k,
    };
    if legacy_key.public_key() != package.legacy_key.public_key {
        return Err(BuildError::LegacyKeyMismatch);
    }
    // 2. and 3. The submitter's new key pair and its own grants.
    let mut state = own_part(
        package,
        legacy_key,
        grants_of(package.principal),
        kek.as_ref(),
        &progress,
    )?;
    // 4. Candidates, in waves.
    let holder_sealers = holder_sealers(package, &progress)?;
    build_candidates(package, &holder_sealers, &progress, &mut state)?;
    // 5. The bundle, ready to encode and sign.
    let Building { built, report, .. } = state;
    let mut parts = Vec::with_capacity(built.len());
    let mut keys = Vec::with_capacity(built.len());
    for b in built {
        parts.push(b.part);
        keys.push((b.legacy, b.new_key));
    }
    let server_key = matches!(submitter_legacy, SubmitterLegacy::Server(_));
    Ok(Unsigned {
        bundle: Bundle {
            vault: package.vault,
            run: package.run,
            submitter: package.principal,
            parts,
        },
        report,
        keys,
        submitter_legacy,
        server_key,
    })
}

/// The submitter's legacy private key (unwrapped from the package with the
/// master secret's KEK; a server key comes unwrapped) and that KEK.
fn unlock_legacy(
    package: &MigrationPackage,
    unlock: &Unlock<'_>,
) -> Result<(Option<PrivateKey>, Option<Kek>), BuildError> {
    let Unlock::MasterSecret(master) = unlock else {
        return Ok((None, None));
    };
    let me = package.principal;
    let kek = Kek::derive(master, package.vault, me)?;
    let wrapped = package
        .legacy_key
        .wrapped_private
        .as_ref()
        .ok_or(BuildError::MissingWrappedKey)?;
    let binding = KeyBinding {
        vault: package.vault,
        owner: me,
        key_pair: package.legacy_key.id,
    };
    let der =
        unwrap_private_key(&kek, &binding, wrapped).map_err(|_| BuildError::WrongMasterSecret)?;
    let key = PrivateKey::from_unwrapped(&package.legacy_key.public_key, der.dangerous_as_bytes())?;
    Ok((Some(key), Some(kek)))
}

/// What the build has so far: the parts, the KEKs their grants opened, the
/// principals migrating in this bundle with their new key pair and a
/// sealer to it, and the report.
struct Building {
    built: Vec<BuiltPart>,
    held_keks: HashMap<KeyPairId, SecretBytes>,
    in_bundle: HashMap<PrincipalId, (KeyPairId, BatchSealer)>,
    report: BuildReport,
}

/// The submitter's new key pair (its private key under the submitter's
/// KEK, when it has one) and its legacy grants unwrapped on every core and
/// re-wrapped in one batch.
fn own_part(
    package: &MigrationPackage,
    legacy_key: &PrivateKey,
    whose: GrantsOf,
    kek: Option<&Kek>,
    progress: &Progress<'_>,
) -> Result<Building, BuildError> {
    let (vault, me) = (package.vault, package.principal);
    let new_key = NewPrivateKey::generate(package.target, &mut OsRng)?;
    let new_id = KeyPairId::random();
    let wrapped_private = match kek {
        Some(kek) => Some(wrap_private_key(
            &mut OsRng,
            kek,
            &KeyBinding {
                vault,
                owner: me,
                key_pair: new_id,
            },
            new_key.dangerous_to_bytes().dangerous_as_bytes(),
        )?),
        None => None,
    };
    let opened = unwrap_all(legacy_key, whose, &package.pending_grants, progress);
    let own_sealer = new_key.public_key().batch_sealer(&mut OsRng, vault, me)?;
    let (grants, non_migratable) = rewrap(&own_sealer, &package.pending_grants, &opened)?;
    // Secrets of key-pair subjects: the KEKs of candidates' legacy keys.
    let mut held_keks = HashMap::new();
    collect_held_keks(&package.pending_grants, &opened, &mut held_keks);
    let report = BuildReport {
        grants_rewrapped: grants.len(),
        non_migratable: non_migratable.len(),
        ..BuildReport::default()
    };
    let part = BuiltPart {
        part: PrincipalPart {
            principal: me,
            legacy_key_pair: package.legacy_key.id,
            new_key_pair: NewKeyPair {
                id: new_id,
                public_key: new_key.public_key(),
                wrapped_private,
            },
            grants,
            non_migratable,
            holder_grants: Vec::new(),
        },
        legacy: Signer::Borrowed,
        new_key,
    };
    Ok(Building {
        built: vec![part],
        held_keks,
        in_bundle: HashMap::from([(me, (new_id, own_sealer))]),
        report,
    })
}

/// One batch per migrated holder of any candidate, shared by every
/// candidate.
fn holder_sealers(
    package: &MigrationPackage,
    progress: &Progress<'_>,
) -> Result<HashMap<PrincipalId, BatchSealer>, BuildError> {
    let mut migrated: Vec<(PrincipalId, &crate::crypto::target::NewPublicKey)> = package
        .candidates
        .iter()
        .flat_map(|c| c.holders.iter())
        .filter_map(|h| match h {
            HolderKey::Migrated {
                principal,
                public_key,
                ..
            } if *principal != package.principal => Some((*principal, public_key)),
            _ => None,
        })
        .collect();
    migrated.sort_by_key(|(p, _)| *p);
    migrated.dedup_by_key(|(p, _)| *p);
    Ok(progress
        .map_each(&migrated, |(p, pk)| {
            pk.batch_sealer(&mut OsRng, package.vault, *p)
                .map(|s| (*p, s))
        })
        .into_iter()
        .collect::<Result<_, _>>()?)
}

/// The candidates, in waves, each wave in parallel. A candidate is ready
/// once a part already built opened the KEK of its legacy key (a role's
/// KEK is granted to a managed user the directory key migrates in the same
/// bundle) and none of its holders is a candidate still to be built: a
/// holder migrating in this bundle gets the KEK under its new key, never
/// under its legacy key. What never gets ready is reported as skipped.
fn build_candidates(
    package: &MigrationPackage,
    holder_sealers: &HashMap<PrincipalId, BatchSealer>,
    progress: &Progress<'_>,
    state: &mut Building,
) -> Result<(), BuildError> {
    let mut waiting: Vec<&Candidate> = package.candidates.iter().collect();
    loop {
        let unbuilt: HashSet<PrincipalId> = waiting.iter().map(|c| c.principal).collect();
        let (ready, rest): (Vec<&Candidate>, Vec<&Candidate>) =
            waiting.iter().copied().partition(|c| {
                state.held_keks.contains_key(&c.legacy_key.id)
                    && !c
                        .holders
                        .iter()
                        .any(|h| h.principal() != c.principal && unbuilt.contains(&h.principal()))
            });
        if ready.is_empty() {
            break;
        }
        waiting = rest;
        let results = progress.map_each(&ready, |c| {
            build_candidate(
                c,
                package.vault,
                package.target,
                &state.held_keks,
                &state.in_bundle,
                holder_sealers,
                progress,
            )
        });
        for (c, result) in ready.iter().zip(results) {
            match result? {
                Ok(b) => {
                    let r = &mut state.report;
                    r.grants_rewrapped += b.part.part.grants.len();
                    r.non_migratable += b.part.part.non_migratable.len();
                    r.candidates_migrated.push(c.principal);
                    state.held_keks.extend(b.held_keks);
                    state
                        .in_bundle
                        .insert(c.principal, (b.part.part.new_key_pair.id, b.sealer));
                    state.built.push(b.part);
                }
                Err(why) => state.report.candidates_skipped.push((c.principal, why)),
            }
        }
    }
    for c in waiting {
        for _ in &c.pending_grants {
            progress.tick();
        }
        let why = if state.held_keks.contains_key(&c.legacy_key.id) {
            "a holder of its key could not be migrated first"
        } else {
            "no readable grant of its key"
        };
        state.report.candidates_skipped.push((c.principal, why));
    }
    Ok(())
}

/// Each part's two signatures over the body's digest: RSA-PSS by its
/// legacy key, ECDSA by its new key (the proof of possession).
fn sign_parts(
    principals: &[PrincipalId],
    keys: &[(Signer, NewPrivateKey)],
    digest: &[u8; 32],
    submitter_legacy: &PrivateKey,
    progress: &Progress<'_>,
) -> Result<Vec<BundleSignature>, CryptoError> {
    let items: Vec<(PrincipalId, &(Signer, NewPrivateKey))> =
        principals.iter().copied().zip(keys).collect();
    let signed: Vec<Vec<BundleSignature>> = progress
        .map_each(&items, |(p, (legacy, new_key))| {
            let p = *p;
            let legacy: &PrivateKey = match legacy {
                Signer::Owned(k) => k,
                Signer::Borrowed => submitter_legacy,
            };
            let by_legacy = legacy.sign_legacy(&signed_message_of_digest(
                digest,
                SignatureKind::LegacyKey,
                p,
            ))?;
            let ec = new_key.sign(&signed_message_of_digest(
                digest,
                SignatureKind::NewKeyEcdsa,
                p,
            ));
            Ok(vec![
                BundleSignature {
                    principal: p,
                    kind: SignatureKind::LegacyKey,
                    bytes: by_legacy,
                },
                BundleSignature {
                    principal: p,
                    kind: SignatureKind::NewKeyEcdsa,
                    bytes: ec,
                },
            ])
        })
        .into_iter()
        .collect::<Result<_, CryptoError>>()?;
    Ok(signed.into_iter().flatten().collect())
}

/// Whose legacy grants are being opened: an HPKE legacy grant (a second
/// migration's) is bound to its vault and recipient.
#[derive(Clone, Copy)]
struct GrantsOf {
    vault: VaultId,
    recipient: PrincipalId,
}

/// Opens every legacy grant with `key`; a failure becomes its reason.
fn unwrap_all(
    key: &PrivateKey,
    whose: GrantsOf,
    grants: &[PendingGrant],
    progress: &Progress<'_>,
) -> Vec<Result<SecretBytes, NonMigratableReason>> {
    progress.map_each(grants, |g| {
        let out = match progress.memo.get(whose.recipient, g) {
            Some(secret) => Ok(secret),
            None => {
                let out = open_legacy(key, whose, g);
                if let Ok(secret) = &out {
                    progress.memo.put(whose.recipient, g, secret);
                }
                out
            }
        };
        progress.tick();
        out
    })
}

/// RSA grants carry no binding: only the scheme and the key matter. An
/// HPKE grant of an earlier migration opens only under its binding. A
/// grant in a scheme the legacy key cannot open is `not_legacy`.
fn open_legacy(
    key: &PrivateKey,
    whose: GrantsOf,
    g: &PendingGrant,
) -> Result<SecretBytes, NonMigratableReason> {
    let env =
        Envelope::parse(&g.envelope_bytes).map_err(|_| NonMigratableReason::MalformedEnvelope)?;
    let binding = GrantBinding {
        vault: whose.vault,
        recipient: whose.recipient,
        subject: g.subject,
    };
    match open_grant(key, &binding, &env) {
        Ok(secret) => Ok(secret),
        Err(CryptoError::WrongScheme { .. }) => Err(NonMigratableReason::NotLegacy),
        Err(_) => Err(NonMigratableReason::CouldNotDecrypt),
    }
}

fn rewrap(
    sealer: &BatchSealer,
    grants: &[PendingGrant],
    opened: &[Result<SecretBytes, NonMigratableReason>],
) -> Result<(Vec<NewGrant>, Vec<NonMigratableEntry>), CryptoError> {
    let mut out = Vec::with_capacity(grants.len());
    let mut nm = Vec::new();
    for (g, o) in grants.iter().zip(opened) {
        match o {
            Ok(secret) => out.push(NewGrant {
                replaces: g.id,
                subject: g.subject,
                envelope: sealer.seal(&mut OsRng, g.subject, secret.dangerous_as_bytes())?,
            }),
            Err(reason) => nm.push(NonMigratableEntry {
                grant: g.id,
                reason: *reason,
            }),
        }
    }
    Ok((out, nm))
}

/// Copies the opened secrets of key-pair subjects (the KEKs of other
/// principals' legacy keys) into `into`.
fn collect_held_keks(
    grants: &[PendingGrant],
    opened: &[Result<SecretBytes, NonMigratableReason>],
    into: &mut HashMap<KeyPairId, SecretBytes>,
) {
    for (g, o) in grants.iter().zip(opened) {
        if let (Subject::PrivateKey(kp), Ok(secret)) = (g.subject, o) {
            into.insert(kp, SecretBytes::from_slice(secret.dangerous_as_bytes()));
        }
    }
}

/// The candidate's new KEK for each of its holders: under the new key of a
/// holder migrating in this bundle (the submitter included), under the
/// current key of a migrated holder, under the legacy key of a pending one
/// (RSA-OAEP, or single-shot HPKE to a key of an earlier migration).
fn holder_grants(
    c: &Candidate,
    vault: VaultId,
    new_id: KeyPairId,
    new_kek: &Kek,
    in_bundle: &HashMap<PrincipalId, (KeyPairId, BatchSealer)>,
    holder_sealers: &HashMap<PrincipalId, BatchSealer>,
) -> Result<Vec<HolderGrant>, BuildError> {
    let subject = Subject::PrivateKey(new_id);
    let mut out = Vec::with_capacity(c.holders.len());
    for h in &c.holders {
        let (holder_key_pair, envelope) = match (in_bundle.get(&h.principal()), h) {
            (Some((kp, sealer)), _) => (
                *kp,
                sealer.seal(&mut OsRng, subject, new_kek.dangerous_as_bytes())?,
            ),
            (
                None,
                HolderKey::Migrated {
                    principal,
                    key_pair,
                    ..
                },
            ) => {
                let sealer = holder_sealers
                    .get(principal)
                    .ok_or(CryptoError::Library("holder batch missing"))?;
                (
                    *key_pair,
                    sealer.seal(&mut OsRng, subject, new_kek.dangerous_as_bytes())?,
                )
            }
            (
                None,
                HolderKey::Pending {
                    principal,
                    key_pair,
                    public_key,
                },
            ) => (
                *key_pair,
                wrap_to_pending_holder(
                    &mut OsRng,
                    public_key,
                    &GrantBinding {
                        vault,
                        recipient: *principal,
                        subject,
                    },
                    new_kek.dangerous_as_bytes(),
                )?,
            ),
        };
        out.push(HolderGrant {
            holder: h.principal(),
            holder_key_pair,
            envelope,
        });
    }
    Ok(out)
}

/// A candidate's part, with what later candidates may need of it: the KEKs
/// its grants opened and a batch sealer to its new key.
struct BuiltCandidate {
    part: BuiltPart,
    held_keks: HashMap<KeyPairId, SecretBytes>,
    sealer: BatchSealer,
}

fn build_candidate(
    c: &Candidate,
    vault: VaultId,
    target: Target,
    held_keks: &HashMap<KeyPairId, SecretBytes>,
    in_bundle: &HashMap<PrincipalId, (KeyPairId, BatchSealer)>,
    holder_sealers: &HashMap<PrincipalId, BatchSealer>,
    progress: &Progress<'_>,
) -> Result<Result<BuiltCandidate, &'static str>, BuildError> {
    let skip = |why| {
        for _ in &c.pending_grants {
            progress.tick();
        }
        Ok(Err(why))
    };
    let Some(kek) = held_keks
        .get(&c.legacy_key.id)
        .and_then(|s| Kek::from_slice(s.dangerous_as_bytes()))
    else {
        return skip("no readable grant of its key");
    };
    let Some(wrapped) = &c.legacy_key.wrapped_private else {
        return skip("its legacy private key is not in the package");
    };
    let binding = KeyBinding {
        vault,
        owner: c.principal,
        key_pair: c.legacy_key.id,
    };
    let Ok(der) = unwrap_private_key(&kek, &binding, wrapped) else {
        return skip("its legacy private key does not decrypt");
    };
    let Ok(legacy) = PrivateKey::from_unwrapped(&c.legacy_key.public_key, der.dangerous_as_bytes())
    else {
        return skip("its legacy private key does not parse");
    };
    if legacy.public_key() != c.legacy_key.public_key {
        return skip("its legacy private key does not match its public key");
    }

    let new_key = NewPrivateKey::generate(target, &mut OsRng)?;
    let new_id = KeyPairId::random();
    let new_kek = Kek::generate(&mut OsRng);
    let wrapped_private = wrap_private_key(
        &mut OsRng,
        &new_kek,
        &KeyBinding {
            vault,
            owner: c.principal,
            key_pair: new_id,
        },
        new_key.dangerous_to_bytes().dangerous_as_bytes(),
    )?;

    let whose = GrantsOf {
        vault,
        recipient: c.principal,
    };
    let opened = unwrap_all(&legacy, whose, &c.pending_grants, progress);
    let sealer = new_key
        .public_key()
        .batch_sealer(&mut OsRng, vault, c.principal)?;
    let (grants, non_migratable) = rewrap(&sealer, &c.pending_grants, &opened)?;
    let mut held = HashMap::new();
    collect_held_keks(&c.pending_grants, &opened, &mut held);

    let holder_grants = holder_grants(c, vault, new_id, &new_kek, in_bundle, holder_sealers)?;
    Ok(Ok(BuiltCandidate {
        part: BuiltPart {
            part: PrincipalPart {
                principal: c.principal,
                legacy_key_pair: c.legacy_key.id,
                new_key_pair: NewKeyPair {
                    id: new_id,
                    public_key: new_key.public_key(),
                    wrapped_private: Some(wrapped_private),
                },
                grants,
                non_migratable,
                holder_grants,
            },
            legacy: Signer::Owned(Box::new(legacy)),
            new_key,
        },
        held_keks: held,
        sealer,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{GrantId, RecordId};

    fn pending(id: u8, envelope: &[u8]) -> PendingGrant {
        PendingGrant {
            id: GrantId::from_bytes([id; 16]),
            subject: Subject::RecordKey(RecordId::from_bytes([id; 16])),
            envelope_bytes: envelope.to_vec(),
        }
    }

    #[test]
    fn the_memo_answers_only_for_the_same_grant_envelope_and_binding() {
        let memo = OpenedGrants::new();
        let me = PrincipalId::from_bytes([9; 16]);
        let g = pending(1, b"envelope one");
        memo.put(me, &g, &SecretBytes::from_slice(b"secret one"));
        let hit = memo.get(me, &g).expect("same grant, same bytes");
        assert_eq!(hit.dangerous_as_bytes(), b"secret one");
        assert!(
            memo.get(me, &pending(1, b"envelope two")).is_none(),
            "bytes differ"
        );
        assert!(
            memo.get(me, &pending(2, b"envelope one")).is_none(),
            "id differs"
        );
        assert!(
            memo.get(PrincipalId::from_bytes([8; 16]), &g).is_none(),
            "recipient differs"
        );
        let mut other_subject = pending(1, b"envelope one");
        other_subject.subject = Subject::PrivateKey(KeyPairId::from_bytes([1; 16]));
        assert!(memo.get(me, &other_subject).is_none(), "subject differs");
        assert_eq!(memo.len(), 1);
        assert!(!format!("{memo:?}").contains("secret one"));
    }
}
