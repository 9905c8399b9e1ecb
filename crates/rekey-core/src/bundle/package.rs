//! The migration package as JSON (`rekey-package/2`): what
//! `GET /v1/principals/{id}/package` answers, and the client-side parser
//! that turns it back into a [`MigrationPackage`].
//!
//! The package is untrusted input for the client (a hostile or broken
//! server could send anything), so [`parse_package`] checks every field:
//! the format string, that the package is for the principal (and vault)
//! asked for, every hex string, every public key, every wrapped private
//! key's envelope, and that no grant, candidate or holder appears twice.
//! Only the pending grants' envelopes stay raw bytes: a corrupt one must
//! become a non-migratable entry in the bundle, not fail the package.
//!
//! ```json
//! {
//!   "format": "rekey-package/2",
//!   "vault": "<uuid>", "run": "<uuid>", "principal": "<uuid>",
//!   "target": "hpke-p256" | "hpke-p521" | "hpke-mlkem768-x25519",
//!   "legacy_key": { "id": "<uuid>", "public_key_spki": "<hex>", "wrapped_private": "<hex envelope>" | null },
//!   // or, when a migrated vault migrates again, the previous target's key:
//!   // "legacy_key": { "id": "<uuid>", "target": "hpke-p256" | …, "public_key": "<hex>", "wrapped_private": … },
//!   "pending_grants": [ { "id": "<uuid>", "subject": { "kind": "record_key" | "private_key", "id": "<uuid>" }, "envelope": "<hex>" } ],
//!   "candidates": [ {
//!     "principal": "<uuid>", "legacy_key": { … }, "pending_grants": [ … ],
//!     "holders": [
//!       { "state": "migrated", "principal": "<uuid>", "key_pair": "<uuid>", "target": "hpke-p256" | …, "public_key": "<hex>" },
//!       { "state": "pending", "principal": "<uuid>", "key_pair": "<uuid>", "public_key_spki": "<hex>" }
//!       // (or "target" and "public_key" for a key of an earlier migration)
//!     ]
//!   } ]
//! }
//! ```
//!
//! The package holds only public keys and wrapped (encrypted) material:
//! nothing in it is readable without the account's master secret.

use super::{Candidate, HolderKey, MigrationPackage, PackageLegacyKey, PendingGrant};
use crate::crypto::target::{NewPublicKey, Target};
use crate::{
    Envelope, GrantId, KeyPairId, LegacyRsaPublicKey, PrincipalId, PublicKey, RunId, Subject,
    VaultId,
};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The format string of the package JSON.
pub const PACKAGE_FORMAT: &str = "rekey-package/2";

/// The package as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PackageJson {
    /// Always [`PACKAGE_FORMAT`].
    pub format: String,
    /// The vault.
    pub vault: VaultId,
    /// The migration run.
    pub run: RunId,
    /// The account the package is for.
    pub principal: PrincipalId,
    /// The run's target: the kind of every new key and the scheme of every
    /// re-wrapped grant.
    pub target: Target,
    /// Its legacy key.
    pub legacy_key: LegacyKeyJson,
    /// Its legacy grants.
    pub pending_grants: Vec<PendingGrantJson>,
    /// Principals it may migrate along (roles, managed users).
    pub candidates: Vec<CandidateJson>,
}

/// A legacy key pair: public key and wrapped private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LegacyKeyJson {
    /// The key pair.
    pub id: KeyPairId,
    /// An RSA public key: SPKI DER in hex. Absent for a key of an earlier
    /// migration (`target` and `public_key` instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_spki: Option<String>,
    /// A key of an earlier migration (a migrated vault migrating again):
    /// the target it was made for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// With `target`: the public key in hex, as [`HolderJson::Migrated`]
    /// gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The private key's envelope in hex (under a KEK), if the database
    /// holds it.
    pub wrapped_private: Option<String>,
}

/// A legacy grant to re-wrap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PendingGrantJson {
    /// The grant.
    pub id: GrantId,
    /// What it carries.
    pub subject: Subject,
    /// Its stored envelope bytes in hex.
    pub envelope: String,
}

/// A principal the account may migrate along.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CandidateJson {
    /// The principal.
    pub principal: PrincipalId,
    /// Its legacy key.
    pub legacy_key: LegacyKeyJson,
    /// Its legacy grants.
    pub pending_grants: Vec<PendingGrantJson>,
    /// Everyone who must get its new KEK.
    pub holders: Vec<HolderJson>,
}

/// A holder of a candidate's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
pub enum HolderJson {
    /// Migrated: its current key.
    Migrated {
        /// The holder.
        principal: PrincipalId,
        /// Its current key pair.
        key_pair: KeyPairId,
        /// The target its key is of.
        target: Target,
        /// The public key in hex: a SEC1 uncompressed point, or a hybrid
        /// key's 1,281 bytes.
        public_key: String,
    },
    /// Pending: its legacy key (RSA, or the key of an earlier migration).
    Pending {
        /// The holder.
        principal: PrincipalId,
        /// Its legacy key pair.
        key_pair: KeyPairId,
        /// An RSA public key, SPKI DER in hex.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        public_key_spki: Option<String>,
        /// A key of an earlier migration: its target.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<Target>,
        /// With `target`: the public key in hex.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        public_key: Option<String>,
    },
}

/// Why a package from the server was refused by the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// Not JSON of the expected shape.
    #[error("the package is not valid rekey-package JSON: {0}")]
    Json(String),
    /// Another format.
    #[error("the package has format {0:?}; this build reads {PACKAGE_FORMAT}")]
    Format(String),
    /// For another account.
    #[error("the server sent the package of another account")]
    WrongPrincipal,
    /// For another vault.
    #[error("the server sent a package of another vault")]
    WrongVault,
    /// A field that must be hex is not.
    #[error("{0} is not valid hex")]
    Hex(&'static str),
    /// A key that does not parse.
    #[error("{0} is not a valid key")]
    BadKey(&'static str),
    /// A wrapped key that does not parse.
    #[error("the wrapped private key of {0} is not a valid envelope")]
    BadEnvelope(&'static str),
    /// Something appears twice.
    #[error("{0} appears more than once")]
    Duplicate(&'static str),
}

fn hex_of(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn unhex(s: &str, what: &'static str) -> Result<Vec<u8>, PackageError> {
    hex::decode(s).map_err(|_| PackageError::Hex(what))
}

/// A legacy public key's JSON fields: `public_key_spki` for RSA, or
/// `target` and `public_key` for a key of an earlier migration.
type LegacyPublicFields = (Option<String>, Option<Target>, Option<String>);

fn legacy_public_to_json(k: &PublicKey) -> LegacyPublicFields {
    match (k, k.as_new()) {
        (PublicKey::Rsa(rsa), _) => (Some(hex_of(rsa.to_spki_der())), None, None),
        (_, Some(new)) => (None, Some(new.target()), Some(hex_of(&new.to_bytes()))),
        (_, None) => (None, None, None),
    }
}

/// Exactly one of the two forms, and the key parses as the form says.
fn legacy_public_from_json(
    (spki, target, public_key): LegacyPublicFields,
    what: &'static str,
) -> Result<PublicKey, PackageError> {
    match (spki, target, public_key) {
        (Some(spki), None, None) => LegacyRsaPublicKey::from_spki_der(&unhex(&spki, what)?)
            .map(PublicKey::Rsa)
            .map_err(|_| PackageError::BadKey(what)),
        (None, Some(target), Some(pk)) => NewPublicKey::from_bytes(target, &unhex(&pk, what)?)
            .map(PublicKey::from)
            .map_err(|_| PackageError::BadKey(what)),
        _ => Err(PackageError::BadKey(what)),
    }
}

impl LegacyKeyJson {
    fn from_key(k: &PackageLegacyKey) -> Self {
        let (public_key_spki, target, public_key) = legacy_public_to_json(&k.public_key);
        Self {
            id: k.id,
            public_key_spki,
            target,
            public_key,
            wrapped_private: k.wrapped_private.as_ref().map(|e| hex_of(e.as_bytes())),
        }
    }

    fn into_key(self, what: &'static str) -> Result<PackageLegacyKey, PackageError> {
        let public_key =
            legacy_public_from_json((self.public_key_spki, self.target, self.public_key), what)?;
        let wrapped_private = match self.wrapped_private {
            Some(h) => Some(
                Envelope::parse(&unhex(&h, what)?).map_err(|_| PackageError::BadEnvelope(what))?,
            ),
            None => None,
        };
        Ok(PackageLegacyKey {
            id: self.id,
            public_key,
            wrapped_private,
        })
    }
}

fn grants_to_json(grants: &[PendingGrant]) -> Vec<PendingGrantJson> {
    grants
        .iter()
        .map(|g| PendingGrantJson {
            id: g.id,
            subject: g.subject,
            envelope: hex_of(&g.envelope_bytes),
        })
        .collect()
}

fn grants_from_json(grants: Vec<PendingGrantJson>) -> Result<Vec<PendingGrant>, PackageError> {
    let mut seen = HashSet::with_capacity(grants.len());
    grants
        .into_iter()
        .map(|g| {
            if !seen.insert(g.id) {
                return Err(PackageError::Duplicate("a pending grant"));
            }
            Ok(PendingGrant {
                id: g.id,
                subject: g.subject,
                envelope_bytes: unhex(&g.envelope, "a pending grant's envelope")?,
            })
        })
        .collect()
}

impl From<&MigrationPackage> for PackageJson {
    fn from(p: &MigrationPackage) -> Self {
        Self {
            format: PACKAGE_FORMAT.to_owned(),
            vault: p.vault,
            run: p.run,
            principal: p.principal,
            target: p.target,
            legacy_key: LegacyKeyJson::from_key(&p.legacy_key),
            pending_grants: grants_to_json(&p.pending_grants),
            candidates: p
                .candidates
                .iter()
                .map(|c| CandidateJson {
                    principal: c.principal,
                    legacy_key: LegacyKeyJson::from_key(&c.legacy_key),
                    pending_grants: grants_to_json(&c.pending_grants),
                    holders: c
                        .holders
                        .iter()
                        .map(|h| match h {
                            HolderKey::Migrated {
                                principal,
                                key_pair,
                                public_key,
                            } => HolderJson::Migrated {
                                principal: *principal,
                                key_pair: *key_pair,
                                target: public_key.target(),
                                public_key: hex_of(&public_key.to_bytes()),
                            },
                            HolderKey::Pending {
                                principal,
                                key_pair,
                                public_key,
                            } => {
                                let (public_key_spki, target, public_key) =
                                    legacy_public_to_json(public_key);
                                HolderJson::Pending {
                                    principal: *principal,
                                    key_pair: *key_pair,
                                    public_key_spki,
                                    target,
                                    public_key,
                                }
                            }
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl PackageJson {
    /// Checks everything and builds the package; `expected_principal` is
    /// the account the client asked for, `expected_vault` the vault it
    /// knows (if it knows one).
    pub fn into_package(
        self,
        expected_principal: PrincipalId,
        expected_vault: Option<VaultId>,
    ) -> Result<MigrationPackage, PackageError> {
        if self.format != PACKAGE_FORMAT {
            return Err(PackageError::Format(self.format));
        }
        if self.principal != expected_principal {
            return Err(PackageError::WrongPrincipal);
        }
        if expected_vault.is_some_and(|v| v != self.vault) {
            return Err(PackageError::WrongVault);
        }
        let mut seen_candidates = HashSet::new();
        let mut candidates = Vec::with_capacity(self.candidates.len());
        for c in self.candidates {
            if c.principal == self.principal || !seen_candidates.insert(c.principal) {
                return Err(PackageError::Duplicate("a candidate principal"));
            }
            let mut seen_holders = HashSet::new();
            let mut holders = Vec::with_capacity(c.holders.len());
            for h in c.holders {
                let holder = match h {
                    HolderJson::Migrated {
                        principal,
                        key_pair,
                        target,
                        public_key,
                    } => HolderKey::Migrated {
                        principal,
                        key_pair,
                        public_key: NewPublicKey::from_bytes(
                            target,
                            &unhex(&public_key, "a holder's public key")?,
                        )
                        .map_err(|_| PackageError::BadKey("a holder's public key"))?,
                    },
                    HolderJson::Pending {
                        principal,
                        key_pair,
                        public_key_spki,
                        target,
                        public_key,
                    } => HolderKey::Pending {
                        principal,
                        key_pair,
                        public_key: legacy_public_from_json(
                            (public_key_spki, target, public_key),
                            "a holder's public key",
                        )?,
                    },
                };
                if !seen_holders.insert(holder.principal()) {
                    return Err(PackageError::Duplicate("a holder"));
                }
                holders.push(holder);
            }
            candidates.push(Candidate {
                principal: c.principal,
                legacy_key: c.legacy_key.into_key("a candidate's legacy key")?,
                pending_grants: grants_from_json(c.pending_grants)?,
                holders,
            });
        }
        Ok(MigrationPackage {
            vault: self.vault,
            run: self.run,
            principal: self.principal,
            target: self.target,
            legacy_key: self.legacy_key.into_key("the account's legacy key")?,
            pending_grants: grants_from_json(self.pending_grants)?,
            candidates,
        })
    }
}

/// Parses and checks a package the server sent (see the module docs).
pub fn parse_package(
    bytes: &[u8],
    expected_principal: PrincipalId,
    expected_vault: Option<VaultId>,
) -> Result<MigrationPackage, PackageError> {
    let json: PackageJson =
        serde_json::from_slice(bytes).map_err(|e| PackageError::Json(e.to_string()))?;
    json.into_package(expected_principal, expected_vault)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa() -> LegacyRsaPublicKey {
        let der = include_bytes!("../../tests/fixtures/rsa-2048-a.pk8");
        crate::LegacyRsaPrivateKey::from_pkcs8_der(der)
            .unwrap()
            .public_key()
    }

    proptest::proptest! {
        /// Any mix of the two legacy-key forms, with arbitrary or real key
        /// bytes: never a panic, and a key only from exactly one whole
        /// form whose bytes are a key of that form.
        #[test]
        fn legacy_keys_parse_only_from_exactly_one_whole_form(
            spki in proptest::option::of(proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..400)),
            target in proptest::option::of(0usize..3),
            public_key in proptest::option::of(proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..1300)),
            real_spki: bool,
            real_point: bool,
        ) {
            let p = sample();
            let mut j = PackageJson::from(&p);
            let real_rsa = hex_of(rsa().to_spki_der());
            let ec = crate::EcPrivateKey::derive_from_ikm(crate::Curve::P256, &[3u8; 32]).unwrap();
            let real_ec = hex_of(&NewPublicKey::Ec(ec.public_key()).to_bytes());
            j.legacy_key.public_key_spki = spki.map(|b| if real_spki { real_rsa.clone() } else { hex_of(&b) });
            j.legacy_key.target = target.map(|i| Target::ALL[i]);
            j.legacy_key.public_key = public_key.map(|b| if real_point { real_ec.clone() } else { hex_of(&b) });
            let forms = (
                j.legacy_key.public_key_spki.is_some(),
                j.legacy_key.target.is_some() && j.legacy_key.public_key.is_some(),
                j.legacy_key.target.is_some() || j.legacy_key.public_key.is_some(),
            );
            let parsed = parse_package(&serde_json::to_vec(&j).unwrap(), p.principal, Some(p.vault));
            if let Ok(package) = parsed {
                match &package.legacy_key.public_key {
                    PublicKey::Rsa(_) => proptest::prop_assert!(forms.0 && !forms.2),
                    _ => proptest::prop_assert!(!forms.0 && forms.1),
                }
            } else {
                proptest::prop_assert!(matches!(parsed, Err(PackageError::BadKey(_) | PackageError::Hex(_))));
            }
        }
    }

    #[test]
    fn a_second_migration_names_the_previous_targets_keys() {
        let mut p = sample();
        let ec = crate::EcPrivateKey::derive_from_ikm(crate::Curve::P256, &[9u8; 32]).unwrap();
        let previous = PublicKey::Ec(ec.public_key());
        p.legacy_key.public_key = previous.clone();
        p.candidates[0].holders[1] = HolderKey::Pending {
            principal: p.principal,
            key_pair: KeyPairId::random(),
            public_key: previous.clone(),
        };
        let json = serde_json::to_value(PackageJson::from(&p)).unwrap();
        assert_eq!(json["legacy_key"]["target"], "hpke-p256");
        assert!(json["legacy_key"].get("public_key_spki").is_none());
        assert_eq!(
            json["legacy_key"]["public_key"],
            hex_of(&previous.to_bytes())
        );
        assert_eq!(json["candidates"][0]["holders"][1]["target"], "hpke-p256");
        let bytes = serde_json::to_vec(&json).unwrap();
        assert_eq!(
            parse_package(&bytes, p.principal, Some(p.vault)).unwrap(),
            p
        );
    }

    fn sample() -> MigrationPackage {
        let ec = crate::EcPrivateKey::derive_from_ikm(crate::Curve::P256, &[7u8; 32]).unwrap();
        let principal = PrincipalId::random();
        let legacy_key = PackageLegacyKey {
            id: KeyPairId::random(),
            public_key: PublicKey::Rsa(rsa()),
            wrapped_private: None,
        };
        MigrationPackage {
            vault: VaultId::random(),
            run: RunId::random(),
            principal,
            target: Target::HpkeMlKem768X25519,
            legacy_key: legacy_key.clone(),
            pending_grants: vec![PendingGrant {
                id: GrantId::random(),
                subject: Subject::RecordKey(crate::RecordId::random()),
                envelope_bytes: vec![1, 2, 3],
            }],
            candidates: vec![Candidate {
                principal: PrincipalId::random(),
                legacy_key,
                pending_grants: Vec::new(),
                holders: vec![
                    HolderKey::Migrated {
                        principal: PrincipalId::random(),
                        key_pair: KeyPairId::random(),
                        public_key: NewPublicKey::Ec(ec.public_key()),
                    },
                    HolderKey::Pending {
                        principal,
                        key_pair: KeyPairId::random(),
                        public_key: PublicKey::Rsa(rsa()),
                    },
                ],
            }],
        }
    }

    #[test]
    fn round_trips_through_json() {
        let p = sample();
        let bytes = serde_json::to_vec(&PackageJson::from(&p)).unwrap();
        assert_eq!(
            parse_package(&bytes, p.principal, Some(p.vault)).unwrap(),
            p
        );
    }

    #[test]
    fn refuses_what_a_hostile_server_could_send() {
        let p = sample();
        let good = PackageJson::from(&p);
        let parse = |j: &PackageJson| {
            parse_package(&serde_json::to_vec(j).unwrap(), p.principal, Some(p.vault))
        };
        let mut j = good.clone();
        j.format = "rekey-package/1".into();
        assert!(matches!(parse(&j), Err(PackageError::Format(_))));
        assert_eq!(
            parse_package(
                &serde_json::to_vec(&good).unwrap(),
                PrincipalId::random(),
                None
            ),
            Err(PackageError::WrongPrincipal)
        );
        assert_eq!(
            parse_package(
                &serde_json::to_vec(&good).unwrap(),
                p.principal,
                Some(VaultId::random())
            ),
            Err(PackageError::WrongVault)
        );
        let mut j = good.clone();
        j.legacy_key.public_key_spki = Some("zz".into());
        assert!(matches!(parse(&j), Err(PackageError::Hex(_))));
        let mut j = good.clone();
        j.legacy_key.public_key_spki = Some("3000".into());
        assert!(matches!(parse(&j), Err(PackageError::BadKey(_))));
        // Both forms at once, or neither: refused.
        let mut j = good.clone();
        j.legacy_key.target = Some(Target::HpkeP256);
        j.legacy_key.public_key = Some(hex_of(&[4u8; 65]));
        assert!(matches!(parse(&j), Err(PackageError::BadKey(_))));
        let mut j = good.clone();
        j.legacy_key.public_key_spki = None;
        assert!(matches!(parse(&j), Err(PackageError::BadKey(_))));
        // A key of an earlier migration whose bytes are not of its target.
        let mut j = good.clone();
        j.legacy_key.public_key_spki = None;
        j.legacy_key.target = Some(Target::HpkeMlKem768X25519);
        j.legacy_key.public_key = Some(hex_of(
            &NewPublicKey::Ec(
                crate::EcPrivateKey::derive_from_ikm(crate::Curve::P256, &[7u8; 32])
                    .unwrap()
                    .public_key(),
            )
            .to_bytes(),
        ));
        assert!(matches!(parse(&j), Err(PackageError::BadKey(_))));
        let mut j = good.clone();
        j.legacy_key.wrapped_private = Some("00ff".into());
        assert!(matches!(parse(&j), Err(PackageError::BadEnvelope(_))));
        let mut j = good.clone();
        j.pending_grants.push(j.pending_grants[0].clone());
        assert!(matches!(parse(&j), Err(PackageError::Duplicate(_))));
        let mut j = good.clone();
        j.candidates.push(j.candidates[0].clone());
        assert!(matches!(parse(&j), Err(PackageError::Duplicate(_))));
        let mut j = good.clone();
        if let HolderJson::Migrated { public_key, .. } = &mut j.candidates[0].holders[0] {
            *public_key = hex::encode([4u8; 65]);
        }
        assert!(matches!(parse(&j), Err(PackageError::BadKey(_))));
        // A P-256 point named as a hybrid key.
        let mut j = good.clone();
        if let HolderJson::Migrated { target, .. } = &mut j.candidates[0].holders[0] {
            *target = Target::HpkeMlKem768X25519;
        }
        assert!(matches!(parse(&j), Err(PackageError::BadKey(_))));
        let mut v = serde_json::to_value(&good).unwrap();
        v["target"] = serde_json::json!("hpke-x448");
        assert!(matches!(
            parse_package(&serde_json::to_vec(&v).unwrap(), p.principal, None),
            Err(PackageError::Json(_))
        ));
        let mut v = serde_json::to_value(&good).unwrap();
        v["extra"] = serde_json::json!(1);
        assert!(matches!(
            parse_package(&serde_json::to_vec(&v).unwrap(), p.principal, None),
            Err(PackageError::Json(_))
        ));
        assert!(matches!(
            parse_package(b"\xff not json", p.principal, None),
            Err(PackageError::Json(_))
        ));
    }
}
