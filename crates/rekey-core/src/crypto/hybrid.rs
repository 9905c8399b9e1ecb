//! A user's post-quantum hybrid key pair: an X-Wing KEM key that grants are
//! wrapped to, and a P-256 ECDSA key for proofs of possession and bundle
//! signatures.
//!
//! The signature key is classical on purpose. A signature only has to be
//! unforgeable when it is checked (at migration time); unlike encrypted
//! grants it cannot be harvested now and broken later. P-256 ECDSA is what
//! bundles already verify (on AWS-LC), its keys and signatures are small
//! (65 and 64 bytes, against ML-DSA-44's 1,312 and 2,420), and the
//! signing code with RFC 6979 nonces is the one rekey already reviews.

use super::ec::{Curve, EcPrivateKey, EcPublicKey};
use super::pq::{XWingPrivateKey, XWingPublicKey};
use crate::error::CryptoError;
use crate::ids::{KeyPairId, PrincipalId, VaultId};
use crate::labels;
use crate::secret::SecretBytes;
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

/// Length of [`HybridPrivateKey::dangerous_to_bytes`]: the X-Wing seed and
/// the P-256 scalar.
const PRIVATE_LEN: usize = XWingPrivateKey::SEED_LEN + 32;

/// A hybrid private key: X-Wing for grants, P-256 ECDSA for signatures.
/// Both halves wipe their secrets on drop; `Debug` prints `[redacted]`.
pub struct HybridPrivateKey(Box<Halves>);

/// The halves, boxed so that [`super::PrivateKey`] stays small.
struct Halves {
    kem: XWingPrivateKey,
    signing: EcPrivateKey,
    public: HybridPublicKey,
}

impl std::fmt::Debug for HybridPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HybridPrivateKey([redacted])")
    }
}

/// The public half: the X-Wing public key (1,216 bytes) and the P-256
/// verifying key (an uncompressed SEC1 point, 65 bytes). Encoded as their
/// concatenation, 1,281 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct HybridPublicKey {
    kem: XWingPublicKey,
    verifying: EcPublicKey,
}

impl std::fmt::Debug for HybridPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridPublicKey")
            .field("kem", &self.kem)
            .field("verifying", &self.verifying)
            .finish()
    }
}

impl HybridPrivateKey {
    /// Length of the encoding a KEK wraps.
    pub const LEN: usize = PRIVATE_LEN;

    /// A fresh key pair from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Result<Self, CryptoError> {
        let kem = XWingPrivateKey::generate(rng)?;
        let signing = EcPrivateKey::generate(Curve::P256, rng);
        Ok(Self::from_parts(kem, signing))
    }

    /// Joins an X-Wing key and a P-256 signing key.
    pub fn from_parts(kem: XWingPrivateKey, signing: EcPrivateKey) -> Self {
        let public = HybridPublicKey {
            kem: kem.public_key(),
            verifying: signing.public_key(),
        };
        Self(Box::new(Halves {
            kem,
            signing,
            public,
        }))
    }

    /// Reads the encoding of [`Self::dangerous_to_bytes`]: the 32-byte X-Wing
    /// seed, then the 32-byte big-endian P-256 scalar. Any other length, a
    /// zero scalar or one not below the group order is refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != PRIVATE_LEN {
            return Err(CryptoError::InvalidPrivateKey(
                "a hybrid private key is 64 bytes: X-Wing seed, P-256 scalar",
            ));
        }
        let (seed, scalar) = bytes.split_at(XWingPrivateKey::SEED_LEN);
        let kem = XWingPrivateKey::from_seed(seed)?;
        let signing = EcPrivateKey::from_scalar_bytes(Curve::P256, scalar)?;
        Ok(Self::from_parts(kem, signing))
    }

    /// The 64 bytes that are the whole private key (X-Wing seed ‖ P-256
    /// scalar): what gets wrapped under a KEK or to a member.
    #[must_use]
    pub fn dangerous_to_bytes(&self) -> SecretBytes {
        let mut out = Zeroizing::new(Vec::with_capacity(PRIVATE_LEN));
        out.extend_from_slice(self.0.kem.dangerous_to_seed_bytes().dangerous_as_bytes());
        out.extend_from_slice(
            self.0
                .signing
                .dangerous_to_scalar_bytes()
                .dangerous_as_bytes(),
        );
        SecretBytes::from_slice(&out)
    }

    /// The KEM half: what grants open with.
    #[must_use]
    pub fn kem_key(&self) -> &XWingPrivateKey {
        &self.0.kem
    }

    /// The signing half.
    #[must_use]
    pub fn signing_key(&self) -> &EcPrivateKey {
        &self.0.signing
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> HybridPublicKey {
        self.0.public.clone()
    }

    /// The public half, borrowed.
    #[must_use]
    pub fn public_key_ref(&self) -> &HybridPublicKey {
        &self.0.public
    }

    /// ECDSA P-256 signature (SHA-256, RFC 6979 nonces, fixed-width
    /// `r ‖ s`) over `message` with the signing half. Binding the KEM half
    /// is the message's job: sign bytes that contain the whole public key,
    /// as [`Self::prove_possession`] does.
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.signing.sign(message)
    }

    /// A proof of possession of this key pair for its place: a signature
    /// over [`labels::hybrid_possession`], which names the vault, the owner,
    /// the key pair and the whole public key (both halves).
    #[must_use]
    pub fn prove_possession(
        &self,
        vault: VaultId,
        owner: PrincipalId,
        key_pair: KeyPairId,
    ) -> Vec<u8> {
        self.sign(&labels::hybrid_possession(
            vault,
            owner,
            key_pair,
            &self.0.public.to_bytes(),
        ))
    }
}

impl HybridPublicKey {
    /// Length of the encoding.
    pub const LEN: usize = XWingPublicKey::LEN + 65;

    /// Parses `X-Wing public key ‖ P-256 SEC1 point`; refuses another
    /// length and either half that does not parse.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != Self::LEN {
            return Err(CryptoError::InvalidPublicKey(
                "a hybrid public key is 1281 bytes: X-Wing key, P-256 point",
            ));
        }
        let (kem, verifying) = bytes.split_at(XWingPublicKey::LEN);
        Ok(Self {
            kem: XWingPublicKey::from_bytes(kem)?,
            verifying: EcPublicKey::from_sec1(Curve::P256, verifying)?,
        })
    }

    /// The encoding: X-Wing public key, then the P-256 point.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(self.kem.as_bytes());
        out.extend_from_slice(&self.verifying.to_sec1());
        out
    }

    /// The KEM half: what grants are sealed to.
    #[must_use]
    pub fn kem_key(&self) -> &XWingPublicKey {
        &self.kem
    }

    /// The verifying half.
    #[must_use]
    pub fn verifying_key(&self) -> &EcPublicKey {
        &self.verifying
    }

    /// Lowercase hex SHA-256 of the encoding.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        super::fingerprint(&self.to_bytes())
    }

    /// Verifies a signature made by [`HybridPrivateKey::sign`].
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        self.verifying.verify(message, signature)
    }

    /// Verifies a proof made by [`HybridPrivateKey::prove_possession`] for
    /// this public key and place.
    pub fn verify_possession(
        &self,
        vault: VaultId,
        owner: PrincipalId,
        key_pair: KeyPairId,
        proof: &[u8],
    ) -> Result<(), CryptoError> {
        self.verify(
            &labels::hybrid_possession(vault, owner, key_pair, &self.to_bytes()),
            proof,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn bytes_round_trip_and_lengths() {
        let sk = HybridPrivateKey::generate(&mut OsRng).unwrap();
        let bytes = sk.dangerous_to_bytes();
        assert_eq!(bytes.dangerous_as_bytes().len(), HybridPrivateKey::LEN);
        let back = HybridPrivateKey::from_bytes(bytes.dangerous_as_bytes()).unwrap();
        assert_eq!(back.public_key(), sk.public_key());
        let pk = sk.public_key().to_bytes();
        assert_eq!(pk.len(), HybridPublicKey::LEN);
        assert_eq!(HybridPublicKey::from_bytes(&pk).unwrap(), sk.public_key());
        assert!(HybridPublicKey::from_bytes(&pk[1..]).is_err());
        assert!(HybridPrivateKey::from_bytes(&bytes.dangerous_as_bytes()[1..]).is_err());
        let mut zero_scalar = bytes.dangerous_as_bytes().to_vec();
        zero_scalar[32..].fill(0);
        assert!(HybridPrivateKey::from_bytes(&zero_scalar).is_err());
    }

    #[test]
    fn possession_proof_binds_place_and_both_halves() {
        let sk = HybridPrivateKey::generate(&mut OsRng).unwrap();
        let pk = sk.public_key();
        let (v, o, k) = (
            VaultId::random(),
            PrincipalId::random(),
            KeyPairId::random(),
        );
        let proof = sk.prove_possession(v, o, k);
        pk.verify_possession(v, o, k, &proof).unwrap();
        assert_eq!(
            pk.verify_possession(v, o, KeyPairId::random(), &proof),
            Err(CryptoError::BadSignature)
        );
        // Same signing key with another KEM key: the proof does not carry over.
        let other_kem = XWingPrivateKey::generate(&mut OsRng).unwrap();
        let signing = EcPrivateKey::from_scalar_bytes(
            Curve::P256,
            sk.signing_key()
                .dangerous_to_scalar_bytes()
                .dangerous_as_bytes(),
        )
        .unwrap();
        let swapped = HybridPrivateKey::from_parts(other_kem, signing).public_key();
        assert_eq!(
            swapped.verify_possession(v, o, k, &proof),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn keys_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<HybridPrivateKey>();
        send_sync::<HybridPublicKey>();
        send_sync::<crate::crypto::PrivateKey>();
        send_sync::<crate::grant::BatchSealer>();
    }

    #[test]
    fn debug_is_redacted() {
        let sk = HybridPrivateKey::generate(&mut OsRng).unwrap();
        let hex: String = sk
            .dangerous_to_bytes()
            .dangerous_as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let printed = format!("{sk:?}");
        assert_eq!(printed, "HybridPrivateKey([redacted])");
        assert!(!printed.contains(&hex[..8]));
    }
}
