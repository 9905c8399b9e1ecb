//! Elliptic-curve keys (P-256, P-521): ECDH for HPKE and ECDSA proofs of
//! possession.
//!
//! P-256 key generation, ECDH and ECDSA verification run on AWS-LC, whose
//! assembly does them several times faster than RustCrypto's portable
//! arithmetic; RustCrypto parses and range-checks scalars and points, and
//! signs, because its ECDSA nonces are deterministic (RFC 6979) and so the
//! worked examples in FORMAT.md can be reproduced. P-521 is all RustCrypto.

use crate::error::CryptoError;
use crate::secret::SecretBytes;
use aws_lc_rs::{agreement, signature as lc_signature};
use elliptic_curve::sec1::ToEncodedPoint;
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A curve rekey writes new keys on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Curve {
    /// NIST P-256 (secp256r1): the default.
    P256,
    /// NIST P-521 (secp521r1): the option commercial vaults chose.
    P521,
}

impl Curve {
    /// Length of a private scalar in bytes.
    #[must_use]
    pub fn scalar_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P521 => 66,
        }
    }

    /// Length of an uncompressed SEC1 public point in bytes.
    #[must_use]
    pub fn point_len(self) -> usize {
        match self {
            Curve::P256 => 65,
            Curve::P521 => 133,
        }
    }
}

/// An EC private key. The inner RustCrypto keys zeroize on drop, and
/// AWS-LC clears its copy when it frees it; the public half is computed
/// once (decapsulation needs it for every grant).
pub struct EcPrivateKey {
    secret: Secret,
    public: EcPublicKey,
}

enum Secret {
    P256 {
        /// Signs, and gives the scalar bytes.
        key: p256::SecretKey,
        /// The same scalar in AWS-LC, for ECDH. `None` only if AWS-LC
        /// refused a scalar RustCrypto accepted (it never has); ECDH then
        /// runs on RustCrypto.
        dh: Option<agreement::PrivateKey>,
    },
    P521(p521::SecretKey),
}

impl std::fmt::Debug for EcPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EcPrivateKey({:?}, [redacted])", self.curve())
    }
}

/// An EC public key, always encoded as an uncompressed SEC1 point.
#[derive(Clone, PartialEq, Eq)]
pub enum EcPublicKey {
    /// P-256.
    P256(p256::PublicKey),
    /// P-521.
    P521(p521::PublicKey),
}

impl std::fmt::Debug for EcPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EcPublicKey({:?}, {})",
            self.curve(),
            hex_prefix(&self.to_sec1())
        )
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .skip(1)
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        + "…"
}

impl EcPrivateKey {
    /// A fresh random key.
    pub fn generate(curve: Curve, rng: &mut impl CryptoRngCore) -> Self {
        match curve {
            Curve::P256 => Self::p256(p256::SecretKey::random(rng)),
            Curve::P521 => Self::p521(p521::SecretKey::random(rng)),
        }
    }

    /// A P-256 key from a scalar RustCrypto has range-checked; AWS-LC
    /// computes the public point (with its precomputed base-point table).
    fn p256(key: p256::SecretKey) -> Self {
        let dh =
            agreement::PrivateKey::from_private_key(&agreement::ECDH_P256, &key.to_bytes()).ok();
        let public = dh
            .as_ref()
            .and_then(|dh| dh.compute_public_key().ok())
            .and_then(|pk| p256::PublicKey::from_sec1_bytes(pk.as_ref()).ok())
            .unwrap_or_else(|| key.public_key());
        Self {
            secret: Secret::P256 { key, dh },
            public: EcPublicKey::P256(public),
        }
    }

    fn p521(key: p521::SecretKey) -> Self {
        let public = EcPublicKey::P521(key.public_key());
        Self {
            secret: Secret::P521(key),
            public,
        }
    }

    /// Reads a private key from its big-endian scalar of exactly
    /// [`Curve::scalar_len`] bytes; zero and out-of-range scalars are refused.
    pub fn from_scalar_bytes(curve: Curve, bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != curve.scalar_len() {
            return Err(CryptoError::InvalidPrivateKey(
                "wrong scalar length for the curve",
            ));
        }
        let bad = |_| CryptoError::InvalidPrivateKey("scalar is zero or not below the curve order");
        Ok(match curve {
            Curve::P256 => Self::p256(p256::SecretKey::from_slice(bytes).map_err(bad)?),
            Curve::P521 => Self::p521(p521::SecretKey::from_slice(bytes).map_err(bad)?),
        })
    }

    /// Derives a key from input keying material exactly as RFC 9180
    /// `DeriveKeyPair` does (deterministic fixtures, worked examples).
    pub fn derive_from_ikm(curve: Curve, ikm: &[u8]) -> Result<Self, CryptoError> {
        super::hpke::DhKem(curve).derive_key_pair(ikm)
    }

    /// The curve.
    #[must_use]
    pub fn curve(&self) -> Curve {
        self.public.curve()
    }

    /// The big-endian scalar: what gets wrapped under a KEK or to a member.
    #[must_use]
    pub fn dangerous_to_scalar_bytes(&self) -> SecretBytes {
        match &self.secret {
            Secret::P256 { key, .. } => SecretBytes::new(key.to_bytes().to_vec()),
            Secret::P521(sk) => SecretBytes::new(sk.to_bytes().to_vec()),
        }
    }

    /// The matching public key.
    #[must_use]
    pub fn public_key(&self) -> EcPublicKey {
        self.public.clone()
    }

    /// The matching public key, borrowed.
    #[must_use]
    pub fn public_key_ref(&self) -> &EcPublicKey {
        &self.public
    }

    /// Raw ECDH: the x-coordinate of `sk·P`.
    pub(crate) fn dh(&self, peer: &EcPublicKey) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        match (&self.secret, peer) {
            (Secret::P256 { dh: Some(dh), .. }, EcPublicKey::P256(pk)) => {
                let point = pk.to_encoded_point(false);
                agreement::agree(
                    dh,
                    agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, point.as_bytes()),
                    CryptoError::InvalidPublicKey("ECDH with the point failed"),
                    |shared| Ok(Zeroizing::new(shared.to_vec())),
                )
            }
            (Secret::P256 { key, dh: None }, EcPublicKey::P256(pk)) => {
                let shared = p256::ecdh::diffie_hellman(key.to_nonzero_scalar(), pk.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
            (Secret::P521(sk), EcPublicKey::P521(pk)) => {
                let shared = p521::ecdh::diffie_hellman(sk.to_nonzero_scalar(), pk.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
            _ => Err(CryptoError::InvalidPublicKey(
                "public key is on another curve",
            )),
        }
    }

    /// ECDSA signature over `message` (SHA-256 for P-256, SHA-512 for
    /// P-521; deterministic nonces per RFC 6979), encoded as fixed-width
    /// `r ‖ s` (64 or 132 bytes).
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.secret {
            Secret::P256 { key, .. } => {
                // What `p256::ecdsa::SigningKey::sign` computes, without
                // the public key it would first derive from the scalar.
                use ecdsa::hazmat::{SignPrimitive, bits2field};
                use sha2::{Digest, Sha256};
                let scalar = Zeroizing::new(*key.to_nonzero_scalar());
                bits2field::<p256::NistP256>(&Sha256::digest(message))
                    .and_then(|z| scalar.try_sign_prehashed_rfc6979::<Sha256>(&z, &[]))
                    .map(|(sig, _)| sig.to_bytes().to_vec())
                    // A valid secret scalar always signs.
                    .unwrap_or_default()
            }
            Secret::P521(sk) => {
                use p521::ecdsa::signature::RandomizedSigner;
                p521::ecdsa::SigningKey::from_bytes(&sk.to_bytes())
                    .map(|key| {
                        let sig: p521::ecdsa::Signature =
                            key.sign_with_rng(&mut rand_core::OsRng, message);
                        sig.to_bytes().to_vec()
                    })
                    // A valid secret key is always a valid signing key.
                    .unwrap_or_default()
            }
        }
    }
}

impl EcPublicKey {
    /// Parses an uncompressed SEC1 point (`04 ‖ x ‖ y`); points off the
    /// curve, the identity and compressed forms are refused.
    pub fn from_sec1(curve: Curve, bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != curve.point_len() || bytes.first() != Some(&0x04) {
            return Err(CryptoError::InvalidPublicKey(
                "expected an uncompressed SEC1 point of the curve's length",
            ));
        }
        let bad = |_| CryptoError::InvalidPublicKey("point is not on the curve");
        Ok(match curve {
            Curve::P256 => EcPublicKey::P256(p256::PublicKey::from_sec1_bytes(bytes).map_err(bad)?),
            Curve::P521 => EcPublicKey::P521(p521::PublicKey::from_sec1_bytes(bytes).map_err(bad)?),
        })
    }

    /// The curve.
    #[must_use]
    pub fn curve(&self) -> Curve {
        match self {
            EcPublicKey::P256(_) => Curve::P256,
            EcPublicKey::P521(_) => Curve::P521,
        }
    }

    /// Lowercase hex SHA-256 of the uncompressed SEC1 point.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        super::fingerprint(&self.to_sec1())
    }

    /// Uncompressed SEC1 encoding.
    #[must_use]
    pub fn to_sec1(&self) -> Vec<u8> {
        match self {
            EcPublicKey::P256(pk) => pk.to_encoded_point(false).as_bytes().to_vec(),
            EcPublicKey::P521(pk) => pk.to_encoded_point(false).as_bytes().to_vec(),
        }
    }

    /// Verifies a fixed-width `r ‖ s` ECDSA signature made by
    /// [`EcPrivateKey::sign`].
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        use p256::ecdsa::signature::Verifier;
        let ok = match self {
            EcPublicKey::P256(pk) => {
                let point = pk.to_encoded_point(false);
                Some(
                    lc_signature::UnparsedPublicKey::new(
                        &lc_signature::ECDSA_P256_SHA256_FIXED,
                        point.as_bytes(),
                    )
                    .verify(message, signature)
                    .is_ok(),
                )
            }
            EcPublicKey::P521(pk) => {
                let sig = p521::ecdsa::Signature::from_slice(signature).ok();
                let vk = p521::ecdsa::VerifyingKey::from_affine(*pk.as_affine()).ok();
                sig.zip(vk)
                    .map(|(sig, vk)| vk.verify(message, &sig).is_ok())
            }
        };
        if ok == Some(true) {
            Ok(())
        } else {
            Err(CryptoError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn sign_verify_both_curves_and_reject_other_message() {
        for curve in [Curve::P256, Curve::P521] {
            let sk = EcPrivateKey::generate(curve, &mut OsRng);
            let pk = sk.public_key();
            let sig = sk.sign(b"bundle bytes");
            assert_eq!(sig.len(), 2 * curve.scalar_len());
            pk.verify(b"bundle bytes", &sig).unwrap();
            assert_eq!(
                pk.verify(b"bundle bytez", &sig),
                Err(CryptoError::BadSignature)
            );
            let other = EcPrivateKey::generate(curve, &mut OsRng).public_key();
            assert_eq!(
                other.verify(b"bundle bytes", &sig),
                Err(CryptoError::BadSignature)
            );
        }
    }

    #[test]
    fn scalar_and_point_round_trip() {
        for curve in [Curve::P256, Curve::P521] {
            let sk = EcPrivateKey::generate(curve, &mut OsRng);
            let bytes = sk.dangerous_to_scalar_bytes();
            let back = EcPrivateKey::from_scalar_bytes(curve, bytes.dangerous_as_bytes()).unwrap();
            assert_eq!(back.public_key(), sk.public_key());
            let point = sk.public_key().to_sec1();
            assert_eq!(
                EcPublicKey::from_sec1(curve, &point).unwrap(),
                sk.public_key()
            );
            assert!(EcPrivateKey::from_scalar_bytes(curve, &vec![0; curve.scalar_len()]).is_err());
        }
    }

    #[test]
    fn p256_on_aws_lc_computes_what_rustcrypto_computes() {
        use p256::ecdsa::signature::Signer;
        for i in 0..16u8 {
            let sk = EcPrivateKey::generate(Curve::P256, &mut OsRng);
            let peer = EcPrivateKey::generate(Curve::P256, &mut OsRng);
            let (Secret::P256 { key, dh }, EcPublicKey::P256(peer_pk)) =
                (&sk.secret, peer.public_key_ref())
            else {
                panic!("a P-256 key");
            };
            assert!(dh.is_some(), "AWS-LC holds every P-256 scalar");
            assert_eq!(sk.public_key(), EcPublicKey::P256(key.public_key()));
            let rc = p256::ecdh::diffie_hellman(key.to_nonzero_scalar(), peer_pk.as_affine());
            assert_eq!(
                &sk.dh(peer.public_key_ref()).unwrap()[..],
                &rc.raw_secret_bytes()[..]
            );
            let message = [i; 40];
            let rc: p256::ecdsa::Signature = p256::ecdsa::SigningKey::from(key).sign(&message);
            assert_eq!(sk.sign(&message), rc.to_bytes().to_vec());
        }
    }

    #[test]
    fn debug_is_redacted() {
        let sk = EcPrivateKey::generate(Curve::P256, &mut OsRng);
        let scalar = sk.dangerous_to_scalar_bytes();
        let hex: String = scalar
            .dangerous_as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let printed = format!("{sk:?}");
        assert!(printed.contains("[redacted]"));
        assert!(!printed.contains(&hex[..8]));
    }
}
