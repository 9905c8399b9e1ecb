//! Wrapping and unwrapping grants.
//!
//! New grants use HPKE, bound to vault, recipient and subject. A bundle
//! uses the batch form: one encapsulation per recipient ([`BatchSealer`]),
//! each grant's AES-256-GCM key exported from it, so re-wrapping costs a
//! few microseconds per grant. [`GrantOpener`] caches the decapsulation per
//! `enc`, so a client reading a batch pays one ECDH, not one per grant.

use crate::crypto::ec::{EcPrivateKey, EcPublicKey};
use crate::crypto::rsa::LegacyRsaPublicKey;
use crate::crypto::{PrivateKey, hpke, hpke_export_scheme, hpke_scheme, suite_for};
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
    check_len(secret)?;
    let scheme = hpke_scheme(recipient.curve());
    let suite = suite_for(scheme).ok_or(CryptoError::Library("HPKE suite"))?;
    let (shared, enc) = hpke::encap_with(suite, recipient, sk_e)?;
    let mut ctx = hpke::key_schedule_base(suite, &shared, &labels::grant_info(scheme, binding))?;
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
        let scheme = hpke_export_scheme(recipient_key.curve());
        let suite = suite_for(scheme).ok_or(CryptoError::Library("HPKE suite"))?;
        let (shared, enc) = hpke::encap_with(suite, recipient_key, sk_e)?;
        let ctx = hpke::key_schedule_base(
            suite,
            &shared,
            &labels::batch_info(scheme, vault, recipient),
        )?;
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
        match (self.key, scheme) {
            (PrivateKey::Rsa(rsa), s) if s.is_legacy() => rsa.decrypt(s, envelope.ciphertext()),
            (PrivateKey::Ec(sk), s) if suite_for(s).is_some() => {
                let suite = suite_for(s).ok_or(CryptoError::Decrypt)?;
                if sk.curve() != suite.curve {
                    return Err(CryptoError::WrongScheme {
                        expected: "a scheme on the key's curve",
                        found: s,
                    });
                }
                if s.is_export() {
                    self.open_export(suite, sk, binding, envelope)
                } else {
                    let shared = hpke::decap(suite, envelope.enc(), sk)?;
                    let mut ctx =
                        hpke::key_schedule_base(suite, &shared, &labels::grant_info(s, binding))?;
                    let pt = ctx.open(envelope.header_bytes(), envelope.ciphertext())?;
                    Ok(SecretBytes::from_slice(&pt))
                }
            }
            (PrivateKey::Rsa(_), s) => Err(CryptoError::WrongScheme {
                expected: "an RSA-OAEP scheme for an RSA key",
                found: s,
            }),
            (PrivateKey::Ec(_), s) => Err(CryptoError::WrongScheme {
                expected: "an HPKE scheme for an EC key",
                found: s,
            }),
        }
    }

    fn open_export(
        &mut self,
        suite: hpke::Suite,
        sk: &EcPrivateKey,
        binding: &GrantBinding,
        envelope: &Envelope,
    ) -> Result<SecretBytes, CryptoError> {
        let scheme = envelope.scheme();
        let info = labels::batch_info(scheme, binding.vault, binding.recipient);
        let mut cache_key = envelope.enc().to_vec();
        cache_key.extend_from_slice(&info);
        let exporter = match self.exporters.get(&cache_key) {
            Some(secret) => secret,
            None => {
                let shared = hpke::decap(suite, envelope.enc(), sk)?;
                let ctx = hpke::key_schedule_base(suite, &shared, &info)?;
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
