//! Migration bundles: what a client builds from its migration package and
//! submits, and what the server checks before storage applies it.
//!
//! A bundle holds one *part* per principal it migrates: the submitter's own
//! part first, then a part for each principal the submitter holds the key of
//! and that has not migrated yet (the roles a user belongs to; the managed
//! users a directory master key holds). Each part carries the principal's new
//! key pair, every legacy grant addressed to it re-wrapped to the new key,
//! the grants that could not be decrypted, and the new key's KEK wrapped to
//! each holder. Signatures by each part's legacy and new keys cover the
//! exact body bytes (see [`wire`] and docs/FORMAT.md).

mod build;
mod check;
pub mod package;
pub mod wire;

pub use build::{
    BuildError, BuildOptions, BuildOutput, BuildReport, OpenedGrants, PENDING_HOLDER_SCHEME,
    Unlock, Unsigned, build_bundle, build_bundle_reusing, build_bundle_with_progress,
    build_unsigned,
};
pub use check::{
    CheckContext, CheckError, CheckedBundle, HolderFacts, Preconditions, PrincipalFacts,
    check_bundle, check_signed, may_migrate,
};

use crate::crypto::PublicKey;
use crate::crypto::target::{NewPublicKey, Target};
use crate::envelope::Envelope;
use crate::ids::{GrantId, KeyPairId, PrincipalId, RunId, Subject, VaultId};
use serde::{Deserialize, Serialize};

/// The new key pair of a part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKeyPair {
    /// Its id (chosen by the builder).
    pub id: KeyPairId,
    /// The public key.
    pub public_key: NewPublicKey,
    /// The private key under the part's new KEK (`aes256gcm-kek`); `None`
    /// for server-held principals, whose private keys live in the server's
    /// key directory.
    pub wrapped_private: Option<Envelope>,
}

/// One legacy grant re-wrapped to the new key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGrant {
    /// The legacy grant it replaces.
    pub replaces: GrantId,
    /// Its subject (the same as the replaced grant's).
    pub subject: Subject,
    /// The HPKE envelope.
    pub envelope: Envelope,
}

/// The part's new KEK wrapped to one holder of the principal's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderGrant {
    /// The holder (a role member, a directory master key).
    pub holder: PrincipalId,
    /// The holder's key pair the KEK is wrapped to: its new key if it has
    /// migrated (HPKE), its legacy key if not (RSA-OAEP).
    pub holder_key_pair: KeyPairId,
    /// The envelope.
    pub envelope: Envelope,
}

/// Why a legacy grant could not be re-wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NonMigratableReason {
    /// The grant's bytes are not a valid envelope.
    MalformedEnvelope,
    /// The envelope did not decrypt with the recipient's legacy key.
    CouldNotDecrypt,
    /// The envelope uses a scheme that is not a legacy RSA scheme.
    NotLegacy,
}

impl NonMigratableReason {
    /// The wire byte.
    #[must_use]
    pub fn to_byte(self) -> u8 {
        match self {
            NonMigratableReason::MalformedEnvelope => 1,
            NonMigratableReason::CouldNotDecrypt => 2,
            NonMigratableReason::NotLegacy => 3,
        }
    }

    /// From the wire byte.
    #[must_use]
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(NonMigratableReason::MalformedEnvelope),
            2 => Some(NonMigratableReason::CouldNotDecrypt),
            3 => Some(NonMigratableReason::NotLegacy),
            _ => None,
        }
    }

    /// In words, for status output.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            NonMigratableReason::MalformedEnvelope => "the stored grant is not a valid envelope",
            NonMigratableReason::CouldNotDecrypt => {
                "the grant does not decrypt with its recipient's key"
            }
            NonMigratableReason::NotLegacy => "the grant is not in a legacy scheme",
        }
    }
}

impl std::fmt::Display for NonMigratableReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NonMigratableReason::MalformedEnvelope => "malformed_envelope",
            NonMigratableReason::CouldNotDecrypt => "could_not_decrypt",
            NonMigratableReason::NotLegacy => "not_legacy",
        })
    }
}

/// A legacy grant that stays behind, with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonMigratableEntry {
    /// The grant.
    pub grant: GrantId,
    /// Why.
    pub reason: NonMigratableReason,
}

/// Everything that migrates one principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalPart {
    /// The principal.
    pub principal: PrincipalId,
    /// Its legacy key pair (the one that signs this part).
    pub legacy_key_pair: KeyPairId,
    /// Its new key pair.
    pub new_key_pair: NewKeyPair,
    /// Its legacy grants, re-wrapped.
    pub grants: Vec<NewGrant>,
    /// Its legacy grants that could not be re-wrapped.
    pub non_migratable: Vec<NonMigratableEntry>,
    /// The new KEK for each holder of the principal's key.
    pub holder_grants: Vec<HolderGrant>,
}

/// The signed content of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The vault.
    pub vault: VaultId,
    /// The migration run it was built for.
    pub run: RunId,
    /// Who built and submits it; `parts[0]` is theirs.
    pub submitter: PrincipalId,
    /// The parts.
    pub parts: Vec<PrincipalPart>,
}

impl Bundle {
    /// Every re-wrapped grant in the bundle.
    #[must_use]
    pub fn grant_count(&self) -> usize {
        self.parts
            .iter()
            .map(|p| p.grants.len() + p.holder_grants.len())
            .sum()
    }
}

/// Which key made a signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureKind {
    /// By the part's legacy key: only its holder can migrate it. RSA-PSS
    /// for an RSA key; ECDSA for a key of an earlier migration.
    LegacyKey,
    /// ECDSA by the part's new key: proof of possession.
    NewKeyEcdsa,
}

impl SignatureKind {
    /// The wire byte.
    #[must_use]
    pub fn to_byte(self) -> u8 {
        match self {
            SignatureKind::LegacyKey => 1,
            SignatureKind::NewKeyEcdsa => 2,
        }
    }

    /// From the wire byte.
    #[must_use]
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(SignatureKind::LegacyKey),
            2 => Some(SignatureKind::NewKeyEcdsa),
            _ => None,
        }
    }
}

/// One signature over the bundle body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSignature {
    /// The part's principal.
    pub principal: PrincipalId,
    /// Which key.
    pub kind: SignatureKind,
    /// The signature bytes.
    pub bytes: Vec<u8>,
}

/// A bundle as it travels: the exact body bytes, their decoding, and the
/// signatures over them. Parsing keeps the bytes that arrived, so the
/// signatures are checked over exactly those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBundle {
    body: Vec<u8>,
    bundle: Bundle,
    signatures: Vec<BundleSignature>,
}

impl SignedBundle {
    /// The decoded body.
    #[must_use]
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The exact body bytes the signatures cover.
    #[must_use]
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The signatures.
    #[must_use]
    pub fn signatures(&self) -> &[BundleSignature] {
        &self.signatures
    }

    /// The decoded body alone (the body bytes and signatures dropped).
    #[must_use]
    pub fn into_bundle(self) -> Bundle {
        self.bundle
    }
}

/// A key a package names, with its public half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageLegacyKey {
    /// The key pair.
    pub id: KeyPairId,
    /// Its public key: RSA before the first migration, the key of the
    /// previous migration's target when a migrated vault migrates again.
    pub public_key: PublicKey,
    /// Its private key under its KEK, when the database holds it (e2ee
    /// users: under the KEK from the master secret; roles and managed users:
    /// under a KEK their holders have grants for). `None` for server-held
    /// keys, which live in the key directory.
    pub wrapped_private: Option<Envelope>,
}

/// One legacy grant to re-wrap. The envelope is kept as raw bytes: a
/// corrupt one must become a non-migratable entry, not fail the package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingGrant {
    /// The grant.
    pub id: GrantId,
    /// What it carries.
    pub subject: Subject,
    /// Its stored bytes.
    pub envelope_bytes: Vec<u8>,
}

/// A holder of a candidate's key, and the key to wrap the new KEK to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderKey {
    /// Migrated: HPKE to its current key.
    Migrated {
        /// The holder.
        principal: PrincipalId,
        /// Its current key pair.
        key_pair: KeyPairId,
        /// Its public key.
        public_key: NewPublicKey,
    },
    /// Pending (or the submitter itself, resolved by the builder): wrapped
    /// to its legacy key in that key's pending-holder scheme (RSA-OAEP, or
    /// single-shot HPKE for a key of an earlier migration); it re-wraps the
    /// grant when it migrates.
    Pending {
        /// The holder.
        principal: PrincipalId,
        /// Its legacy key pair.
        key_pair: KeyPairId,
        /// Its legacy public key.
        public_key: PublicKey,
    },
}

impl HolderKey {
    /// The holder.
    #[must_use]
    pub fn principal(&self) -> PrincipalId {
        match self {
            HolderKey::Migrated { principal, .. } | HolderKey::Pending { principal, .. } => {
                *principal
            }
        }
    }
}

/// A principal the submitter may migrate along with itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The principal (a role, a managed user).
    pub principal: PrincipalId,
    /// Its legacy key.
    pub legacy_key: PackageLegacyKey,
    /// Its legacy grants.
    pub pending_grants: Vec<PendingGrant>,
    /// Everyone who must get its new KEK (including the submitter).
    pub holders: Vec<HolderKey>,
}

/// What the server gives a client to migrate: everything the client needs,
/// nothing it may not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationPackage {
    /// The vault.
    pub vault: VaultId,
    /// The run.
    pub run: RunId,
    /// The submitter.
    pub principal: PrincipalId,
    /// The run's target: the kind of every new key pair and the scheme of
    /// every re-wrapped grant the bundle must use.
    pub target: Target,
    /// The submitter's legacy key.
    pub legacy_key: PackageLegacyKey,
    /// The submitter's legacy grants.
    pub pending_grants: Vec<PendingGrant>,
    /// Principals not migrated yet whose key the submitter holds.
    pub candidates: Vec<Candidate>,
}
