//! Wrapping and unwrapping grants.
//!
//! New grants use HPKE, bound to vault, recipient and subject, with an
//! elliptic-curve KEM ([`seal_grant`]) or the post-quantum hybrid X-Wing
//! ([`seal_hybrid_grant`]). A bundle uses the batch form: one encapsulation
//! per recipient ([`BatchSealer`]), each grant's AES-256-GCM key exported
//! from it, so re-wrapping costs a few microseconds per grant.
//! [`GrantOpener`] caches the decapsulation per `enc`, so a client reading
//! a batch pays one decapsulation, not one per grant.
//!
//! Every scheme goes through the same code, generic over the KEM (the
//! crate's HPKE `Kem` trait); only the scheme id differs, inside the same
//! `info` and exporter-context bytes of [`crate::labels`].

use crate::crypto::ec::{EcPrivateKey, EcPublicKey};
use crate::crypto::hpke::{DhKem, Kem};
use crate::crypto::pq::{XWing, XWingPublicKey};
use crate::crypto::rsa::LegacyRsaPublicKey;
use crate::crypto::{
    PrivateKey, PublicKey, hpke, hpke_export_scheme, hpke_scheme, hybrid_hpke_export_scheme,
    hybrid_hpke_scheme, suite_for,
};
use crate::envelope::{Envelope, MAX_SECRET_LEN, NONCE_LEN, Scheme};
use crate::error::CryptoError;
use crate::ids::{GrantBinding, PrincipalId, Subject, VaultId};
use crate::labels;
use crate::secret::SecretBytes;
use rand_core::CryptoRngCore;
use std::collections::HashMap;
use zeroize::Zeroizing;

fn check_len(secret: &[u8]) -> Result<(), CryptoError> {
    if secret.len() > MAX_SECRET_LEN {
        return Err(CryptoError::SecretTooLong {
            len: secret.len(),
            max: MAX_SECRET_LEN,
        });
    }
    Ok(())
}

/// Wraps `secret` to `recipient` with single-shot HPKE, bound to `binding`.
pub fn seal_grant(
    rng: &mut impl CryptoRngCore,
    recipient: &EcPublicKey,
    binding: &GrantBinding,
    secret: &[u8],
) -> Result<Envelope, CryptoError> {
    let sk_e = EcPrivateKey::generate(recipient.curve(), rng);
    seal_grant_with_ephemeral(recipient, &sk_e, binding, secret)
}

/// [`seal_grant`] with a given ephemeral key (worked examples only).
pub(crate) fn seal_grant_with_ephemeral(
    recipient: &EcPublicKey,
    sk_e: &EcPrivateKey,
    binding: &GrantBinding,
    secret: &[u8],
) -> Result<Envelope, CryptoError> {
    let kem = DhKem(recipient.curve());
    seal_single(
        &kem,
        hpke_scheme(recipient.curve()),
        recipient,
        sk_e,
        binding,
        secret,
    )
}

/// Wraps `secret` to a post-quantum hybrid key with single-shot HPKE
/// (scheme `hpke-mlkem768-x25519-sha256-aes256gcm`), bound to `binding`
/// exactly as [`seal_grant`] binds it. The encapsulation randomness comes
/// from `rng`.
pub fn seal_hybrid_grant(
    rng: &mut impl CryptoRngCore,
    recipient: &XWingPublicKey,
    binding: &GrantBinding,
    secret: &[u8],
) -> Result<Envelope, CryptoError> {
    let randomness = XWing.generate_ephemeral(rng)?;
    seal_single(
        &XWing,
        hybrid_hpke_scheme(),
        recipient,
        &randomness,
        binding,
        secret,
    )
}

fn seal_single<K: Kem>(
    kem: &K,
    scheme: Scheme,
    recipient: &K::PublicKey,
    ephemeral: &K::Ephemeral,
    binding: &GrantBinding,
    secret: &[u8],
) -> Result<Envelope, CryptoError> {
    check_len(secret)?;
    let suite = suite_for(scheme).ok_or(CryptoError::Library("HPKE suite"))?;
    let info = labels::grant_info(scheme, binding);
    let (enc, mut ctx) = hpke::setup_base_s(kem, suite, recipient, ephemeral, &info)?;
    let ct = ctx.seal(&Envelope::header(scheme), secret)?;
    Ok(Envelope::from_parts(scheme, &enc, &ct)?)
}

/// Wraps `secret` with a legacy RSA-OAEP scheme. rekey does this only for
/// a role's new private key addressed to a member who has not migrated yet
/// (that member re-wraps it when they migrate), and to build fixtures.
/// Legacy grants carry no binding: that weakness is what migrating removes.
pub fn wrap_legacy_grant(
    recipient: &LegacyRsaPublicKey,
    scheme: Scheme,
    secret: &[u8],
) -> Result<Envelope, CryptoError> {
    if !scheme.is_legacy() {
        return Err(CryptoError::WrongScheme {
            expected: "an RSA-OAEP scheme",
            found: scheme,
        });
    }
    let ct = recipient.encrypt(scheme, secret)?;
    Ok(Envelope::from_parts(scheme, &[], &ct)?)
}

/// Wraps `secret` to a holder that has not migrated yet, under its legacy
/// key, in [`PublicKey::pending_holder_scheme`]: RSA-OAEP-SHA256 (no
/// binding) for an RSA key, single-shot HPKE bound to `binding` for a key
/// of an earlier migration. The holder re-wraps it when it migrates.
pub fn wrap_to_pending_holder(
    rng: &mut impl CryptoRngCore,
    recipient: &PublicKey,
    binding: &GrantBinding,
    secret: &[u8],
) -> Result<Envelope, CryptoError> {
    match recipient {
        PublicKey::Rsa(k) => wrap_legacy_grant(k, Scheme::RsaOaepSha256, secret),
        PublicKey::Ec(k) => seal_grant(rng, k, binding, secret),
        PublicKey::Hybrid(k) => seal_hybrid_grant(rng, k.kem_key(), binding, secret),
    }
}

/// Opens one grant. For many grants of one batch use [`GrantOpener`].
pub fn open_grant(
    key: &PrivateKey,
    binding: &GrantBinding,
    envelope: &Envelope,
) -> Result<SecretBytes, CryptoError> {
    GrantOpener::new(key).open(binding, envelope)
}

/// Re-wraps many grants to one recipient: one HPKE encapsulation, then one
/// exporter call and one AES-256-GCM seal per grant. `Sync`: share it
/// across threads.
pub struct BatchSealer {
    suite: hpke::Suite,
    scheme: Scheme,
    enc: Vec<u8>,
    exporter_secret: Zeroizing<Vec<u8>>,
    vault: VaultId,
    recipient: PrincipalId,
}

impl std::fmt::Debug for BatchSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSealer")
            .field("scheme", &self.scheme)
            .field("recipient", &self.recipient)
            .finish_non_exhaustive()
    }
}

impl BatchSealer {
    /// One encapsulation to `recipient_key` for grants in `vault` addressed
    /// to `recipient`.
    pub fn new(
        rng: &mut impl CryptoRngCore,
        recipient_key: &EcPublicKey,
        vault: VaultId,
        recipient: PrincipalId,
    ) -> Result<Self, CryptoError> {
        let sk_e = EcPrivateKey::generate(recipient_key.curve(), rng);
        Self::with_ephemeral(recipient_key, &sk_e, vault, recipient)
    }

    /// Same with a given ephemeral key (worked examples and tests only).
    pub(crate) fn with_ephemeral(
        recipient_key: &EcPublicKey,
        sk_e: &EcPrivateKey,
        vault: VaultId,
        recipient: PrincipalId,
    ) -> Result<Self, CryptoError> {
        let kem = DhKem(recipient_key.curve());
        let scheme = hpke_export_scheme(recipient_key.curve());
        Self::setup(&kem, scheme, recipient_key, sk_e, vault, recipient)
    }

    /// One X-Wing encapsulation to a hybrid recipient key (scheme
    /// `hpke-mlkem768-x25519-sha256-aes256gcm-export`), with the same batch
    /// `info` and per-grant exporter contexts as [`Self::new`].
    pub fn new_hybrid(
        rng: &mut impl CryptoRngCore,
        recipient_key: &XWingPublicKey,
        vault: VaultId,
        recipient: PrincipalId,
    ) -> Result<Self, CryptoError> {
        let randomness = XWing.generate_ephemeral(rng)?;
        Self::setup(
            &XWing,
            hybrid_hpke_export_scheme(),
            recipient_key,
            &randomness,
            vault,
            recipient,
        )
    }

    fn setup<K: Kem>(
        kem: &K,
        scheme: Scheme,
        recipient_key: &K::PublicKey,
        ephemeral: &K::Ephemeral,
        vault: VaultId,
        recipient: PrincipalId,
    ) -> Result<Self, CryptoError> {
        let suite = suite_for(scheme).ok_or(CryptoError::Library("HPKE suite"))?;
        let info = labels::batch_info(scheme, vault, recipient);
        let (enc, ctx) = hpke::setup_base_s(kem, suite, recipient_key, ephemeral, &info)?;
        Ok(Self {
            suite,
            scheme,
            enc,
            exporter_secret: ctx.exporter_secret,
            vault,
            recipient,
        })
    }

    /// The batch's exporter secret (worked examples only).
    pub(crate) fn exporter_secret(&self) -> &[u8] {
        &self.exporter_secret
    }

    /// The scheme of the grants this batch seals.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The recipient this batch wraps to.
    #[must_use]
    pub fn recipient(&self) -> PrincipalId {
        self.recipient
    }

    /// Wraps one secret for `subject`.
    pub fn seal(
        &self,
        rng: &mut impl CryptoRngCore,
        subject: Subject,
        secret: &[u8],
    ) -> Result<Envelope, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        self.seal_with_nonce(subject, secret, nonce)
    }

    pub(crate) fn seal_with_nonce(
        &self,
        subject: Subject,
        secret: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Result<Envelope, CryptoError> {
        check_len(secret)?;
        let key = hpke::export_from(
            self.suite,
            &self.exporter_secret,
            &labels::batch_grant_context(subject),
            self.suite.aead.nk(),
        )?;
        let ct = self
            .suite
            .aead
            .seal(&key, &nonce, &Envelope::header(self.scheme), secret)?;
        let mut prefix = Vec::with_capacity(self.enc.len() + NONCE_LEN);
        prefix.extend_from_slice(&self.enc);
        prefix.extend_from_slice(&nonce);
        Ok(Envelope::from_parts(self.scheme, &prefix, &ct)?)
    }

    /// The binding a grant sealed by this batch must be opened with.
    #[must_use]
    pub fn binding(&self, subject: Subject) -> GrantBinding {
        GrantBinding {
            vault: self.vault,
            recipient: self.recipient,
            subject,
        }
    }
}

/// Opens grants with one private key, remembering each batch's exporter
/// secret so a batch costs one decapsulation.
pub struct GrantOpener<'k> {
    key: &'k PrivateKey,
    exporters: HashMap<Vec<u8>, Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for GrantOpener<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantOpener")
            .field("cached_batches", &self.exporters.len())
            .finish_non_exhaustive()
    }
}

impl<'k> GrantOpener<'k> {
    /// An opener for `key`.
    #[must_use]
    pub fn new(key: &'k PrivateKey) -> Self {
        Self {
            key,
            exporters: HashMap::new(),
        }
    }

    /// Opens one grant. Legacy grants ignore `binding` (they carry none).
    pub fn open(
        &mut self,
        binding: &GrantBinding,
        envelope: &Envelope,
    ) -> Result<SecretBytes, CryptoError> {
        let scheme = envelope.scheme();
        let suite = suite_for(scheme);
        match (self.key, suite) {
            (PrivateKey::Rsa(rsa), _) if scheme.is_legacy() => {
                rsa.decrypt(scheme, envelope.ciphertext())
            }
            (PrivateKey::Ec(sk), Some(suite)) if is_dhkem(suite.kem) => {
                let kem = DhKem(sk.curve());
                if kem.id() != suite.kem {
                    return Err(CryptoError::WrongScheme {
                        expected: "a scheme on the key's curve",
                        found: scheme,
                    });
                }
                self.open_hpke(&kem, suite, sk, binding, envelope)
            }
            (PrivateKey::Hybrid(sk), Some(suite)) if suite.kem == XWing.id() => {
                self.open_hpke(&XWing, suite, sk.kem_key(), binding, envelope)
            }
            (PrivateKey::Rsa(_), _) => Err(CryptoError::WrongScheme {
                expected: "an RSA-OAEP scheme for an RSA key",
                found: scheme,
            }),
            (PrivateKey::Ec(_), _) => Err(CryptoError::WrongScheme {
                expected: "an elliptic-curve HPKE scheme for an EC key",
                found: scheme,
            }),
            (PrivateKey::Hybrid(_), _) => Err(CryptoError::WrongScheme {
                expected: "an X-Wing HPKE scheme for a hybrid key",
                found: scheme,
            }),
        }
    }

    fn open_hpke<K: Kem>(
        &mut self,
        kem: &K,
        suite: hpke::Suite,
        sk: &K::PrivateKey,
        binding: &GrantBinding,
        envelope: &Envelope,
    ) -> Result<SecretBytes, CryptoError> {
        let scheme = envelope.scheme();
        if !scheme.is_export() {
            let info = labels::grant_info(scheme, binding);
            let mut ctx = hpke::setup_base_r(kem, suite, envelope.enc(), sk, &info)?;
            let pt = ctx.open(envelope.header_bytes(), envelope.ciphertext())?;
            return Ok(SecretBytes::from_slice(&pt));
        }
        let info = labels::batch_info(scheme, binding.vault, binding.recipient);
        let mut cache_key = envelope.enc().to_vec();
        cache_key.extend_from_slice(&info);
        let exporter = match self.exporters.get(&cache_key) {
            Some(secret) => secret,
            None => {
                let ctx = hpke::setup_base_r(kem, suite, envelope.enc(), sk, &info)?;
                self.exporters
                    .entry(cache_key)
                    .or_insert(ctx.exporter_secret)
            }
        };
        let key = hpke::export_from(
            suite,
            exporter,
            &labels::batch_grant_context(binding.subject),
            suite.aead.nk(),
        )?;
        let pt = suite.aead.open(
            &key,
            envelope.nonce(),
            envelope.header_bytes(),
            envelope.ciphertext(),
        )?;
        Ok(SecretBytes::from_slice(&pt))
    }
}

fn is_dhkem(kem: hpke::KemId) -> bool {
    matches!(kem, hpke::KemId::DhP256 | hpke::KemId::DhP521)
}
