//! What a migration moves principals to, chosen when it starts: the kind of
//! the new key pairs and the batch scheme every re-wrapped grant uses.
//!
//! | target | new key pair | grants | wire key byte | public key |
//! |---|---|---|---|---|
//! | `hpke-p256` (default) | P-256 | `11` | `01` | 65-byte SEC1 point |
//! | `hpke-p521` | P-521 | `13` | `02` | 133-byte SEC1 point |
//! | `hpke-mlkem768-x25519` | X-Wing KEM + P-256 signing key | `15` | `03` | 1,281 bytes |
//!
//! [`NewPublicKey`] and [`NewPrivateKey`] are the key pairs a migration
//! creates, whatever the target; everything that signs with, seals to or
//! stores a new key goes through them.

use super::ec::{Curve, EcPrivateKey, EcPublicKey};
use super::hybrid::{HybridPrivateKey, HybridPublicKey};
use super::{PrivateKey, PublicKey};
use crate::envelope::Scheme;
use crate::error::CryptoError;
use crate::grant::BatchSealer;
use crate::ids::{PrincipalId, VaultId};
use crate::secret::SecretBytes;
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

/// The migration target. The names are part of the protocol (package
/// JSON, status, the CLI's `--target-scheme`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Target {
    /// P-256 keys, `hpke-p256-sha256-aes256gcm-export` grants.
    #[default]
    #[serde(rename = "hpke-p256")]
    HpkeP256,
    /// P-521 keys, `hpke-p521-sha512-aes256gcm-export` grants.
    #[serde(rename = "hpke-p521")]
    HpkeP521,
    /// Post-quantum hybrid keys (X-Wing for grants, P-256 for signatures),
    /// `hpke-mlkem768-x25519-sha256-aes256gcm-export` grants.
    #[serde(rename = "hpke-mlkem768-x25519")]
    HpkeMlKem768X25519,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 3] = [
        Target::HpkeP256,
        Target::HpkeP521,
        Target::HpkeMlKem768X25519,
    ];

    /// The target's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Target::HpkeP256 => "hpke-p256",
            Target::HpkeP521 => "hpke-p521",
            Target::HpkeMlKem768X25519 => "hpke-mlkem768-x25519",
        }
    }

    /// The target whose keys are on `curve`.
    #[must_use]
    pub fn of_curve(curve: Curve) -> Self {
        match curve {
            Curve::P256 => Target::HpkeP256,
            Curve::P521 => Target::HpkeP521,
        }
    }

    /// The target of a name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The batch scheme of every grant a migration to this target writes.
    #[must_use]
    pub fn batch_scheme(self) -> Scheme {
        match self {
            Target::HpkeP256 => Scheme::HpkeP256Export,
            Target::HpkeP521 => Scheme::HpkeP521Export,
            Target::HpkeMlKem768X25519 => Scheme::HpkeMlKem768X25519Export,
        }
    }

    /// The target whose keys a grant in `scheme` is sealed to (single or
    /// batch form); `None` for legacy and KEK schemes.
    #[must_use]
    pub fn of_scheme(scheme: Scheme) -> Option<Self> {
        match scheme {
            Scheme::HpkeP256 | Scheme::HpkeP256Export => Some(Target::HpkeP256),
            Scheme::HpkeP521 | Scheme::HpkeP521Export => Some(Target::HpkeP521),
            Scheme::HpkeMlKem768X25519 | Scheme::HpkeMlKem768X25519Export => {
                Some(Target::HpkeMlKem768X25519)
            }
            _ => None,
        }
    }

    /// The byte that names the key kind in a bundle (PROTOCOL §7.2).
    #[must_use]
    pub fn key_byte(self) -> u8 {
        match self {
            Target::HpkeP256 => 1,
            Target::HpkeP521 => 2,
            Target::HpkeMlKem768X25519 => 3,
        }
    }

    /// The target of a bundle's key byte.
    #[must_use]
    pub fn from_key_byte(byte: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.key_byte() == byte)
    }

    /// Length of a public key of this target's kind.
    #[must_use]
    pub fn public_key_len(self) -> usize {
        match self {
            Target::HpkeP256 => Curve::P256.point_len(),
            Target::HpkeP521 => Curve::P521.point_len(),
            Target::HpkeMlKem768X25519 => HybridPublicKey::LEN,
        }
    }

    /// The target of a stored public key, told by its length (65, 133 or
    /// 1,281 bytes); `None` for any other length (an RSA SPKI, say).
    #[must_use]
    pub fn of_public_key(bytes: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.public_key_len() == bytes.len())
    }

    /// Whether keys of this target are post-quantum hybrids.
    #[must_use]
    pub fn is_post_quantum(self) -> bool {
        self == Target::HpkeMlKem768X25519
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Target {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or(CryptoError::InvalidPublicKey(
            "unknown target: hpke-p256, hpke-p521 or hpke-mlkem768-x25519",
        ))
    }
}

/// A new key pair's public half.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewPublicKey {
    /// P-256 or P-521.
    Ec(EcPublicKey),
    /// X-Wing + P-256.
    Hybrid(HybridPublicKey),
}

impl NewPublicKey {
    /// Parses a public key of `target`'s kind.
    pub fn from_bytes(target: Target, bytes: &[u8]) -> Result<Self, CryptoError> {
        match target {
            Target::HpkeP256 => EcPublicKey::from_sec1(Curve::P256, bytes).map(Self::Ec),
            Target::HpkeP521 => EcPublicKey::from_sec1(Curve::P521, bytes).map(Self::Ec),
            Target::HpkeMlKem768X25519 => HybridPublicKey::from_bytes(bytes).map(Self::Hybrid),
        }
    }

    /// Parses a stored public key, its kind told by its length.
    pub fn parse(bytes: &[u8]) -> Result<Self, CryptoError> {
        let target = Target::of_public_key(bytes).ok_or(CryptoError::InvalidPublicKey(
            "a new public key is 65 (P-256), 133 (P-521) or 1,281 (hybrid) bytes",
        ))?;
        Self::from_bytes(target, bytes)
    }

    /// The target this key is for.
    #[must_use]
    pub fn target(&self) -> Target {
        match self {
            NewPublicKey::Ec(k) => Target::of_curve(k.curve()),
            NewPublicKey::Hybrid(_) => Target::HpkeMlKem768X25519,
        }
    }

    /// The stored encoding (see the module table).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            NewPublicKey::Ec(k) => k.to_sec1(),
            NewPublicKey::Hybrid(k) => k.to_bytes(),
        }
    }

    /// Lowercase hex SHA-256 of [`Self::to_bytes`].
    #[must_use]
    pub fn fingerprint(&self) -> String {
        match self {
            NewPublicKey::Ec(k) => k.fingerprint(),
            NewPublicKey::Hybrid(k) => k.fingerprint(),
        }
    }

    /// Verifies an ECDSA signature by the key (the signing half of a
    /// hybrid key).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        match self {
            NewPublicKey::Ec(k) => k.verify(message, signature),
            NewPublicKey::Hybrid(k) => k.verify(message, signature),
        }
    }

    /// One batch encapsulation to this key, for grants addressed to
    /// `recipient` in `vault`.
    pub fn batch_sealer(
        &self,
        rng: &mut impl CryptoRngCore,
        vault: VaultId,
        recipient: PrincipalId,
    ) -> Result<BatchSealer, CryptoError> {
        match self {
            NewPublicKey::Ec(k) => BatchSealer::new(rng, k, vault, recipient),
            NewPublicKey::Hybrid(k) => BatchSealer::new_hybrid(rng, k.kem_key(), vault, recipient),
        }
    }
}

impl From<NewPublicKey> for PublicKey {
    fn from(k: NewPublicKey) -> Self {
        match k {
            NewPublicKey::Ec(k) => PublicKey::Ec(k),
            NewPublicKey::Hybrid(k) => PublicKey::Hybrid(k),
        }
    }
}

/// A new key pair's private half. Zeroized on drop by its parts; prints
/// as `[redacted]`.
// The EC variant is inline (the hybrid one is boxed already): a build holds
// one per part, and boxing would add an allocation to every key.
#[allow(clippy::large_enum_variant)]
pub enum NewPrivateKey {
    /// P-256 or P-521.
    Ec(EcPrivateKey),
    /// X-Wing + P-256.
    Hybrid(HybridPrivateKey),
}

impl std::fmt::Debug for NewPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NewPrivateKey({}, [redacted])", self.target())
    }
}

impl NewPrivateKey {
    /// A fresh key pair for `target`.
    pub fn generate(target: Target, rng: &mut impl CryptoRngCore) -> Result<Self, CryptoError> {
        Ok(match target {
            Target::HpkeP256 => Self::Ec(EcPrivateKey::generate(Curve::P256, rng)),
            Target::HpkeP521 => Self::Ec(EcPrivateKey::generate(Curve::P521, rng)),
            Target::HpkeMlKem768X25519 => Self::Hybrid(HybridPrivateKey::generate(rng)?),
        })
    }

    /// Reads the encoding of [`Self::dangerous_to_bytes`] for `target`.
    pub fn from_bytes(target: Target, bytes: &[u8]) -> Result<Self, CryptoError> {
        match target {
            Target::HpkeP256 => EcPrivateKey::from_scalar_bytes(Curve::P256, bytes).map(Self::Ec),
            Target::HpkeP521 => EcPrivateKey::from_scalar_bytes(Curve::P521, bytes).map(Self::Ec),
            Target::HpkeMlKem768X25519 => HybridPrivateKey::from_bytes(bytes).map(Self::Hybrid),
        }
    }

    /// The target this key is for.
    #[must_use]
    pub fn target(&self) -> Target {
        match self {
            NewPrivateKey::Ec(k) => Target::of_curve(k.curve()),
            NewPrivateKey::Hybrid(_) => Target::HpkeMlKem768X25519,
        }
    }

    /// The whole private key, as a KEK or a holder grant wraps it: the
    /// big-endian scalar of an EC key, the 64-byte seed ‖ scalar of a
    /// hybrid key.
    #[must_use]
    pub fn dangerous_to_bytes(&self) -> SecretBytes {
        match self {
            NewPrivateKey::Ec(k) => k.dangerous_to_scalar_bytes(),
            NewPrivateKey::Hybrid(k) => k.dangerous_to_bytes(),
        }
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> NewPublicKey {
        match self {
            NewPrivateKey::Ec(k) => NewPublicKey::Ec(k.public_key()),
            NewPrivateKey::Hybrid(k) => NewPublicKey::Hybrid(k.public_key()),
        }
    }

    /// ECDSA (SHA-256 or SHA-512 by curve; P-256 for hybrid keys), fixed
    /// width `r ‖ s`.
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            NewPrivateKey::Ec(k) => k.sign(message),
            NewPrivateKey::Hybrid(k) => k.sign(message),
        }
    }
}

impl From<NewPrivateKey> for PrivateKey {
    fn from(k: NewPrivateKey) -> Self {
        match k {
            NewPrivateKey::Ec(k) => PrivateKey::Ec(k),
            NewPrivateKey::Hybrid(k) => PrivateKey::Hybrid(k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn names_bytes_and_lengths_round_trip() {
        for t in Target::ALL {
            assert_eq!(Target::from_name(t.name()), Some(t));
            assert_eq!(Target::from_key_byte(t.key_byte()), Some(t));
            assert_eq!(Target::of_scheme(t.batch_scheme()), Some(t));
            assert!(t.batch_scheme().is_export());
            let sk = NewPrivateKey::generate(t, &mut OsRng).unwrap();
            let pk = sk.public_key();
            assert_eq!(pk.target(), t);
            let bytes = pk.to_bytes();
            assert_eq!(bytes.len(), t.public_key_len());
            assert_eq!(Target::of_public_key(&bytes), Some(t));
            assert_eq!(NewPublicKey::parse(&bytes).unwrap(), pk);
            let again =
                NewPrivateKey::from_bytes(t, sk.dangerous_to_bytes().dangerous_as_bytes()).unwrap();
            assert_eq!(again.public_key(), pk);
            let sig = sk.sign(b"m");
            pk.verify(b"m", &sig).unwrap();
            assert!(pk.verify(b"n", &sig).is_err());
            assert!(format!("{sk:?}").contains("[redacted]"));
        }
        assert_eq!(Target::from_name("hpke-x448"), None);
        assert_eq!(Target::from_key_byte(0), None);
        assert_eq!(Target::of_public_key(&[4u8; 64]), None);
        assert_eq!(Target::default(), Target::HpkeP256);
        assert_eq!(
            serde_json::to_string(&Target::HpkeMlKem768X25519).unwrap(),
            "\"hpke-mlkem768-x25519\""
        );
    }

    #[test]
    fn a_key_of_one_kind_does_not_parse_as_another() {
        let p256 = NewPrivateKey::generate(Target::HpkeP256, &mut OsRng)
            .unwrap()
            .public_key()
            .to_bytes();
        assert!(NewPublicKey::from_bytes(Target::HpkeMlKem768X25519, &p256).is_err());
        assert!(NewPublicKey::from_bytes(Target::HpkeP521, &p256).is_err());
    }

    #[test]
    fn batch_sealers_write_the_target_scheme() {
        for t in Target::ALL {
            let pk = NewPrivateKey::generate(t, &mut OsRng).unwrap().public_key();
            let s = pk
                .batch_sealer(&mut OsRng, VaultId::random(), PrincipalId::random())
                .unwrap();
            assert_eq!(s.scheme(), t.batch_scheme());
        }
    }
}
