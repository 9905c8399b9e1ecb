//! Key-encryption keys and private keys wrapped under them
//! (`aes256gcm-kek`): raw bytes ([`wrap_private_key`]) or typed hybrid keys
//! ([`wrap_hybrid_private_key`]).

use crate::crypto::aead::Aead;
use crate::crypto::hybrid::HybridPrivateKey;
use crate::crypto::kdf::Kdf;
use crate::envelope::{Envelope, MAX_SECRET_LEN, NONCE_LEN, Scheme};
use crate::error::CryptoError;
use crate::ids::{KeyBinding, PrincipalId, VaultId};
use crate::labels;
use crate::secret::{Kek, MasterSecret, SecretBytes};
use rand_core::CryptoRngCore;

impl Kek {
    /// A user's KEK: HKDF-SHA256 of the master secret, salt
    /// `rekey/v1/kek`, info `rekey/v1/kek:private-key ‖ vault ‖ user`.
    pub fn derive(
        master: &MasterSecret,
        vault: VaultId,
        owner: PrincipalId,
    ) -> Result<Kek, CryptoError> {
        let okm = Kdf::Sha256.derive(
            labels::KEK_SALT,
            master.as_bytes(),
            &labels::kek_info(vault, owner),
            Kek::LEN,
        )?;
        Kek::from_slice(&okm).ok_or(CryptoError::Library("KEK length"))
    }
}

/// Wraps a private key under a KEK, bound to its key pair.
pub fn wrap_private_key(
    rng: &mut impl CryptoRngCore,
    kek: &Kek,
    binding: &KeyBinding,
    secret: &[u8],
) -> Result<Envelope, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    wrap_private_key_with_nonce(kek, binding, secret, nonce)
}

pub(crate) fn wrap_private_key_with_nonce(
    kek: &Kek,
    binding: &KeyBinding,
    secret: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<Envelope, CryptoError> {
    if secret.len() > MAX_SECRET_LEN {
        return Err(CryptoError::SecretTooLong {
            len: secret.len(),
            max: MAX_SECRET_LEN,
        });
    }
    let scheme = Scheme::Aes256GcmKek;
    let aad = labels::private_key_aad(&Envelope::header(scheme), binding);
    let ct = Aead::Aes256Gcm.seal(kek.dangerous_as_bytes(), &nonce, &aad, secret)?;
    Ok(Envelope::from_parts(scheme, &nonce, &ct)?)
}

/// Unwraps a private key wrapped by [`wrap_private_key`].
pub fn unwrap_private_key(
    kek: &Kek,
    binding: &KeyBinding,
    envelope: &Envelope,
) -> Result<SecretBytes, CryptoError> {
    if envelope.scheme() != Scheme::Aes256GcmKek {
        return Err(CryptoError::WrongScheme {
            expected: "aes256gcm-kek",
            found: envelope.scheme(),
        });
    }
    let aad = labels::private_key_aad(envelope.header_bytes(), binding);
    let pt = Aead::Aes256Gcm.open(
        kek.dangerous_as_bytes(),
        envelope.nonce(),
        &aad,
        envelope.ciphertext(),
    )?;
    Ok(SecretBytes::from_slice(&pt))
}

/// The private key of a stored key pair, unwrapped under `kek` (its owner's
/// KEK, or a KEK a grant carried) and parsed: PKCS#8 RSA for a legacy pair,
/// the scalar for a P-256/P-521 one. `None` when the vault holds no wrapped
/// key, or it does not open or parse under `kek`.
#[must_use]
pub fn unlock_key_pair(
    kp: &crate::model::KeyPairRecord,
    vault: VaultId,
    kek: &Kek,
) -> Option<crate::crypto::PrivateKey> {
    use crate::{LegacyRsaPrivateKey, NewPrivateKey, PrivateKey, Target};
    let env = kp.wrapped_private_key.as_ref()?;
    let binding = KeyBinding {
        vault,
        owner: kp.principal,
        key_pair: kp.id,
    };
    let bytes = unwrap_private_key(kek, &binding, env).ok()?;
    if kp.scheme.is_legacy() {
        LegacyRsaPrivateKey::from_pkcs8_der(bytes.dangerous_as_bytes())
            .ok()
            .map(PrivateKey::Rsa)
    } else {
        let target = Target::of_public_key(&kp.public_key)?;
        NewPrivateKey::from_bytes(target, bytes.dangerous_as_bytes())
            .ok()
            .filter(|k| k.public_key().to_bytes() == kp.public_key)
            .map(PrivateKey::from)
    }
}

/// Wraps a hybrid private key under a KEK, bound to its key pair: the
/// `aes256gcm-kek` envelope of [`wrap_private_key`] around the key's 64-byte
/// encoding (X-Wing seed ‖ P-256 scalar), as P-256 keys are wrapped as
/// their 32-byte scalar.
pub fn wrap_hybrid_private_key(
    rng: &mut impl CryptoRngCore,
    kek: &Kek,
    binding: &KeyBinding,
    key: &HybridPrivateKey,
) -> Result<Envelope, CryptoError> {
    wrap_private_key(
        rng,
        kek,
        binding,
        key.dangerous_to_bytes().dangerous_as_bytes(),
    )
}

/// Unwraps a key wrapped by [`wrap_hybrid_private_key`]. Anything that is
/// not a hybrid key's encoding under this KEK and binding fails, with
/// [`CryptoError::Decrypt`] when the envelope does not open.
pub fn unwrap_hybrid_private_key(
    kek: &Kek,
    binding: &KeyBinding,
    envelope: &Envelope,
) -> Result<HybridPrivateKey, CryptoError> {
    let bytes = unwrap_private_key(kek, binding, envelope)?;
    HybridPrivateKey::from_bytes(bytes.dangerous_as_bytes())
}
