//! Cryptographic building blocks. The public surface is the key types; the
//! primitives stay inside the crate and are reached through
//! [`crate::grant`], [`crate::kek`] and [`crate::record`].

pub(crate) mod aead;
pub mod ec;
pub(crate) mod hpke;
pub mod hybrid;
pub(crate) mod kdf;
pub(crate) mod mlkem;
pub mod pq;
pub mod rsa;
pub mod target;

#[cfg(test)]
mod vectors;

use crate::envelope::Scheme;
use ec::EcPublicKey;
use hybrid::{HybridPrivateKey, HybridPublicKey};

/// A principal's public key of either kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// Legacy RSA.
    Rsa(rsa::LegacyRsaPublicKey),
    /// New elliptic-curve key.
    Ec(EcPublicKey),
    /// New post-quantum hybrid key: X-Wing for grants, P-256 for signatures.
    Hybrid(HybridPublicKey),
}

/// A principal's private key of either kind.
#[derive(Debug)]
pub enum PrivateKey {
    /// Legacy RSA.
    Rsa(rsa::LegacyRsaPrivateKey),
    /// New elliptic-curve key.
    Ec(ec::EcPrivateKey),
    /// New post-quantum hybrid key.
    Hybrid(HybridPrivateKey),
}

impl PrivateKey {
    /// A private key unwrapped from a key pair's envelope, parsed as the
    /// kind of `public` says (PKCS#8 DER for RSA, a new key's encoding
    /// otherwise). The caller compares its public half with `public`.
    pub fn from_unwrapped(
        public: &PublicKey,
        bytes: &[u8],
    ) -> Result<Self, crate::error::CryptoError> {
        match public.as_new() {
            None => rsa::LegacyRsaPrivateKey::from_pkcs8_der(bytes).map(PrivateKey::Rsa),
            Some(new) => {
                target::NewPrivateKey::from_bytes(new.target(), bytes).map(PrivateKey::from)
            }
        }
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        match self {
            PrivateKey::Rsa(k) => PublicKey::Rsa(k.public_key()),
            PrivateKey::Ec(k) => PublicKey::Ec(k.public_key()),
            PrivateKey::Hybrid(k) => PublicKey::Hybrid(k.public_key()),
        }
    }

    /// The signature a part's legacy key makes over a bundle (signature
    /// kind 1): RSA-PSS by an RSA key; ECDSA P-256/P-521 by a key of an
    /// earlier migration (a hybrid key's P-256 half), exactly as a new key
    /// signs its proof of possession.
    pub fn sign_legacy(&self, message: &[u8]) -> Result<Vec<u8>, crate::error::CryptoError> {
        match self {
            PrivateKey::Rsa(k) => k.sign_pss(message),
            PrivateKey::Ec(k) => Ok(k.sign(message)),
            PrivateKey::Hybrid(k) => Ok(k.sign(message)),
        }
    }

    /// ECDSA by a new key (a hybrid key's P-256 half), as a new key signs
    /// bundles and receipts; `None` for an RSA key.
    #[must_use]
    pub fn sign_ecdsa(&self, message: &[u8]) -> Option<Vec<u8>> {
        match self {
            PrivateKey::Rsa(_) => None,
            PrivateKey::Ec(k) => Some(k.sign(message)),
            PrivateKey::Hybrid(k) => Some(k.sign(message)),
        }
    }
}

/// The single-grant HPKE scheme for a curve.
#[must_use]
pub fn hpke_scheme(curve: ec::Curve) -> Scheme {
    match curve {
        ec::Curve::P256 => Scheme::HpkeP256,
        ec::Curve::P521 => Scheme::HpkeP521,
    }
}

/// The batch (exporter) HPKE scheme for a curve.
#[must_use]
pub fn hpke_export_scheme(curve: ec::Curve) -> Scheme {
    target::Target::of_curve(curve).batch_scheme()
}

/// The single-grant HPKE scheme for a hybrid (X-Wing) key.
#[must_use]
pub fn hybrid_hpke_scheme() -> Scheme {
    Scheme::HpkeMlKem768X25519
}

/// The batch (exporter) HPKE scheme for a hybrid (X-Wing) key.
#[must_use]
pub fn hybrid_hpke_export_scheme() -> Scheme {
    target::Target::HpkeMlKem768X25519.batch_scheme()
}

/// Lowercase hex SHA-256 of a public key's encoding.
#[must_use]
pub fn fingerprint(public_key_bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(public_key_bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl PublicKey {
    /// A stored key pair's public key, read by its scheme: SPKI DER for a
    /// legacy RSA scheme, the new encodings (told apart by length)
    /// otherwise.
    pub fn from_stored(scheme: Scheme, bytes: &[u8]) -> Result<Self, crate::error::CryptoError> {
        if scheme.is_legacy() {
            rsa::LegacyRsaPublicKey::from_spki_der(bytes).map(PublicKey::Rsa)
        } else {
            target::NewPublicKey::parse(bytes).map(PublicKey::from)
        }
    }

    /// The key as a new (HPKE) key; `None` for RSA.
    #[must_use]
    pub fn as_new(&self) -> Option<target::NewPublicKey> {
        match self {
            PublicKey::Rsa(_) => None,
            PublicKey::Ec(k) => Some(target::NewPublicKey::Ec(k.clone())),
            PublicKey::Hybrid(k) => Some(target::NewPublicKey::Hybrid(k.clone())),
        }
    }

    /// Verifies a legacy-key signature (kind 1) by this key: RSA-PSS for
    /// RSA, ECDSA for a key of an earlier migration.
    pub fn verify_legacy(
        &self,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), crate::error::CryptoError> {
        match self {
            PublicKey::Rsa(k) => k.verify_pss(message, signature),
            PublicKey::Ec(k) => k.verify(message, signature),
            PublicKey::Hybrid(k) => k.verify(message, signature),
        }
    }

    /// The scheme of a grant addressed to this key while its holder has
    /// not migrated (a role's new KEK for a pending member): RSA-OAEP-SHA256
    /// for RSA, the single-shot HPKE scheme of the key's kind otherwise.
    #[must_use]
    pub fn pending_holder_scheme(&self) -> Scheme {
        match self {
            PublicKey::Rsa(_) => Scheme::RsaOaepSha256,
            PublicKey::Ec(k) => hpke_scheme(k.curve()),
            PublicKey::Hybrid(_) => hybrid_hpke_scheme(),
        }
    }

    /// The key's fingerprint (see [`fingerprint`]).
    #[must_use]
    pub fn fingerprint(&self) -> String {
        match self {
            PublicKey::Rsa(k) => k.fingerprint(),
            PublicKey::Ec(k) => k.fingerprint(),
            PublicKey::Hybrid(k) => k.fingerprint(),
        }
    }

    /// The stored encoding: SPKI DER for RSA, uncompressed SEC1 for EC,
    /// X-Wing key ‖ SEC1 P-256 point for hybrid keys.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            PublicKey::Rsa(k) => k.to_spki_der().to_vec(),
            PublicKey::Ec(k) => k.to_sec1(),
            PublicKey::Hybrid(k) => k.to_bytes(),
        }
    }
}

pub(crate) fn suite_for(scheme: Scheme) -> Option<hpke::Suite> {
    match scheme {
        Scheme::HpkeP256 | Scheme::HpkeP256Export => Some(hpke::Suite::P256),
        Scheme::HpkeP521 | Scheme::HpkeP521Export => Some(hpke::Suite::P521),
        Scheme::HpkeMlKem768X25519 | Scheme::HpkeMlKem768X25519Export => Some(hpke::Suite::XWING),
        _ => None,
    }
}
