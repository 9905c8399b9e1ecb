//! RFC 9180 HPKE, base mode, composed on RustCrypto primitives:
//! DHKEM(P-256, HKDF-SHA256) or DHKEM(P-521, HKDF-SHA512), with HKDF and
//! AES-GCM. Only what rekey needs (and what the RFC vectors exercise).

use super::aead::Aead;
use super::ec::{Curve, EcPrivateKey, EcPublicKey};
use super::kdf::Kdf;
use crate::error::CryptoError;
use zeroize::Zeroizing;

const VERSION_LABEL: &[u8] = b"HPKE-v1";
const MODE_BASE: u8 = 0x00;

/// A ciphersuite: KEM (by curve), KDF, AEAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Suite {
    pub(crate) curve: Curve,
    pub(crate) kdf: Kdf,
    pub(crate) aead: Aead,
}

impl Suite {
    /// DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
    pub(crate) const P256: Suite = Suite {
        curve: Curve::P256,
        kdf: Kdf::Sha256,
        aead: Aead::Aes256Gcm,
    };
    /// DHKEM(P-521, HKDF-SHA512), HKDF-SHA512, AES-256-GCM.
    pub(crate) const P521: Suite = Suite {
        curve: Curve::P521,
        kdf: Kdf::Sha512,
        aead: Aead::Aes256Gcm,
    };

    fn kem_id(self) -> u16 {
        match self.curve {
            Curve::P256 => 0x0010,
            Curve::P521 => 0x0012,
        }
    }

    /// The KEM's own KDF (fixed by the KEM, independent of `self.kdf`).
    fn kem_kdf(self) -> Kdf {
        match self.curve {
            Curve::P256 => Kdf::Sha256,
            Curve::P521 => Kdf::Sha512,
        }
    }

    fn n_secret(self) -> usize {
        self.kem_kdf().nh()
    }

    fn kem_suite_id(self) -> Vec<u8> {
        let mut id = b"KEM".to_vec();
        id.extend_from_slice(&self.kem_id().to_be_bytes());
        id
    }

    fn hpke_suite_id(self) -> Vec<u8> {
        let mut id = b"HPKE".to_vec();
        id.extend_from_slice(&self.kem_id().to_be_bytes());
        id.extend_from_slice(&self.kdf.id().to_be_bytes());
        id.extend_from_slice(&self.aead.id().to_be_bytes());
        id
    }
}

fn labeled_extract(
    kdf: Kdf,
    suite_id: &[u8],
    salt: &[u8],
    label: &[u8],
    ikm: &[u8],
) -> Zeroizing<Vec<u8>> {
    kdf.extract(salt, &[VERSION_LABEL, suite_id, label, ikm])
}

fn labeled_expand(
    kdf: Kdf,
    suite_id: &[u8],
    prk: &[u8],
    label: &[u8],
    info: &[u8],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let len_bytes = u16::try_from(len)
        .map_err(|_| CryptoError::Library("HPKE output length"))?
        .to_be_bytes();
    kdf.expand(
        prk,
        &[&len_bytes, VERSION_LABEL, suite_id, label, info],
        len,
    )
}

/// RFC 9180 §7.1.3 DeriveKeyPair for the NIST curves.
pub(crate) fn derive_key_pair(curve: Curve, ikm: &[u8]) -> Result<EcPrivateKey, CryptoError> {
    let suite = Suite {
        curve,
        kdf: Kdf::Sha256,
        aead: Aead::Aes256Gcm,
    };
    let kem_kdf = suite.kem_kdf();
    let sid = suite.kem_suite_id();
    let bitmask = match curve {
        Curve::P256 => 0xff,
        Curve::P521 => 0x01,
    };
    let dkp_prk = labeled_extract(kem_kdf, &sid, b"", b"dkp_prk", ikm);
    for counter in 0u8..=255 {
        let mut bytes = labeled_expand(
            kem_kdf,
            &sid,
            &dkp_prk,
            b"candidate",
            &[counter],
            curve.scalar_len(),
        )?;
        bytes[0] &= bitmask;
        if let Ok(sk) = EcPrivateKey::from_scalar_bytes(curve, &bytes) {
            return Ok(sk);
        }
    }
    Err(CryptoError::Library("DeriveKeyPair found no valid scalar"))
}

fn extract_and_expand(
    suite: Suite,
    dh: &[u8],
    kem_context: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let kdf = suite.kem_kdf();
    let sid = suite.kem_suite_id();
    let eae_prk = labeled_extract(kdf, &sid, b"", b"eae_prk", dh);
    labeled_expand(
        kdf,
        &sid,
        &eae_prk,
        b"shared_secret",
        kem_context,
        suite.n_secret(),
    )
}

/// Encap with a given ephemeral key (deterministic; vectors and worked
/// examples). Returns `(shared_secret, enc)`.
pub(crate) fn encap_with(
    suite: Suite,
    pk_r: &EcPublicKey,
    sk_e: &EcPrivateKey,
) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), CryptoError> {
    if pk_r.curve() != suite.curve || sk_e.curve() != suite.curve {
        return Err(CryptoError::InvalidPublicKey(
            "public key is on another curve",
        ));
    }
    let dh = sk_e.dh(pk_r)?;
    let enc = sk_e.public_key().to_sec1();
    let mut kem_context = enc.clone();
    kem_context.extend_from_slice(&pk_r.to_sec1());
    Ok((extract_and_expand(suite, &dh, &kem_context)?, enc))
}

/// Decap: recovers the shared secret from `enc` with the recipient's key.
/// An `enc` that is not a valid point gives [`CryptoError::Decrypt`].
pub(crate) fn decap(
    suite: Suite,
    enc: &[u8],
    sk_r: &EcPrivateKey,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sk_r.curve() != suite.curve {
        return Err(CryptoError::Decrypt);
    }
    let pk_e = EcPublicKey::from_sec1(suite.curve, enc).map_err(|_| CryptoError::Decrypt)?;
    let dh = sk_r.dh(&pk_e)?;
    let mut kem_context = enc.to_vec();
    kem_context.extend_from_slice(&sk_r.public_key_ref().to_sec1());
    extract_and_expand(suite, &dh, &kem_context)
}

/// An HPKE encryption context (base mode).
pub(crate) struct Context {
    suite: Suite,
    pub(crate) key: Zeroizing<Vec<u8>>,
    pub(crate) base_nonce: [u8; 12],
    pub(crate) exporter_secret: Zeroizing<Vec<u8>>,
    seq: u64,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hpke::Context([redacted])")
    }
}

/// RFC 9180 §5.1 KeySchedule for mode_base (no PSK).
pub(crate) fn key_schedule_base(
    suite: Suite,
    shared_secret: &[u8],
    info: &[u8],
) -> Result<Context, CryptoError> {
    let kdf = suite.kdf;
    let sid = suite.hpke_suite_id();
    let psk_id_hash = labeled_extract(kdf, &sid, b"", b"psk_id_hash", b"");
    let info_hash = labeled_extract(kdf, &sid, b"", b"info_hash", info);
    let mut ksc = vec![MODE_BASE];
    ksc.extend_from_slice(&psk_id_hash);
    ksc.extend_from_slice(&info_hash);
    let secret = labeled_extract(kdf, &sid, shared_secret, b"secret", b"");
    let key = labeled_expand(kdf, &sid, &secret, b"key", &ksc, suite.aead.nk())?;
    let nonce = labeled_expand(kdf, &sid, &secret, b"base_nonce", &ksc, 12)?;
    let exporter_secret = labeled_expand(kdf, &sid, &secret, b"exp", &ksc, kdf.nh())?;
    let mut base_nonce = [0u8; 12];
    base_nonce.copy_from_slice(&nonce);
    Ok(Context {
        suite,
        key,
        base_nonce,
        exporter_secret,
        seq: 0,
    })
}

impl Context {
    fn next_nonce(&mut self) -> Result<[u8; 12], CryptoError> {
        let mut nonce = self.base_nonce;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        self.seq = self
            .seq
            .checked_add(1)
            .ok_or(CryptoError::Library("HPKE sequence number overflow"))?;
        Ok(nonce)
    }

    /// Seal the next message.
    pub(crate) fn seal(&mut self, aad: &[u8], pt: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let nonce = self.next_nonce()?;
        self.suite.aead.seal(&self.key, &nonce, aad, pt)
    }

    /// Open the next message. The sequence number advances only on success.
    pub(crate) fn open(
        &mut self,
        aad: &[u8],
        ct: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut nonce = self.base_nonce;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        let pt = self.suite.aead.open(&self.key, &nonce, aad, ct)?;
        self.seq += 1;
        Ok(pt)
    }

    /// RFC 9180 §5.3 secret export.
    #[cfg_attr(not(test), allow(dead_code))] // batches keep only the exporter secret
    pub(crate) fn export(
        &self,
        exporter_context: &[u8],
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        export_from(self.suite, &self.exporter_secret, exporter_context, len)
    }
}

/// Secret export from a bare exporter secret (what a batch keeps).
pub(crate) fn export_from(
    suite: Suite,
    exporter_secret: &[u8],
    exporter_context: &[u8],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    labeled_expand(
        suite.kdf,
        &suite.hpke_suite_id(),
        exporter_secret,
        b"sec",
        exporter_context,
        len,
    )
}
