//! RFC 9180 HPKE, base mode, composed by hand over a KEM abstraction
//! ([`Kem`]): DHKEM(P-256, HKDF-SHA256) and DHKEM(P-521, HKDF-SHA512) here,
//! and the post-quantum KEMs of draft-ietf-hpke-pq in [`super::pq`], with
//! HKDF and AES-GCM. Only what rekey needs (and what the vectors exercise).
//!
//! The key schedule depends on the KEM only through its identifier in
//! `suite_id`; everything else a KEM does (key derivation, encapsulation,
//! decapsulation) sits behind the trait.

use super::aead::Aead;
use super::ec::{Curve, EcPrivateKey, EcPublicKey};
use super::kdf::Kdf;
use crate::error::CryptoError;
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

const VERSION_LABEL: &[u8] = b"HPKE-v1";
const MODE_BASE: u8 = 0x00;

/// The KEMs rekey implements, by HPKE identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KemId {
    /// DHKEM(P-256, HKDF-SHA256), 0x0010.
    DhP256,
    /// DHKEM(P-521, HKDF-SHA512), 0x0012.
    DhP521,
    /// ML-KEM-768, 0x0041 (tests: the draft's vectors).
    #[cfg_attr(not(test), allow(dead_code))]
    MlKem768,
    /// MLKEM768-P256, 0x0050 (tests: the draft's vectors).
    #[cfg_attr(not(test), allow(dead_code))]
    MlKem768P256,
    /// MLKEM768-X25519 ("X-Wing"), 0x647a.
    XWing,
}

impl KemId {
    /// The two-byte HPKE KEM identifier.
    pub(crate) fn code(self) -> u16 {
        match self {
            KemId::DhP256 => 0x0010,
            KemId::DhP521 => 0x0012,
            KemId::MlKem768 => 0x0041,
            KemId::MlKem768P256 => 0x0050,
            KemId::XWing => 0x647a,
        }
    }

    /// `suite_id` of the KEM's own derivations: `"KEM" ‖ I2OSP(kem_id, 2)`.
    pub(crate) fn suite_id(self) -> [u8; 5] {
        let [hi, lo] = self.code().to_be_bytes();
        [b'K', b'E', b'M', hi, lo]
    }
}

/// The KEM interface of RFC 9180 §4 as rekey uses it. Each implementation
/// fixes its key types and what makes an encapsulation deterministic: an
/// ephemeral key pair for a DHKEM, the encapsulation randomness for a
/// post-quantum KEM.
pub(crate) trait Kem {
    /// The recipient's public key.
    type PublicKey;
    /// The recipient's private key.
    type PrivateKey;
    /// The sender's per-encapsulation secret input.
    type Ephemeral;

    /// The KEM's HPKE identifier.
    fn id(&self) -> KemId;

    /// A fresh ephemeral input from `rng`.
    fn generate_ephemeral(
        &self,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self::Ephemeral, CryptoError>;

    /// Deterministic `Encap` (DHKEM with a given ephemeral key, or the
    /// post-quantum KEMs' `EncapDerand`). Returns `(shared_secret, enc)`.
    fn encap_with(
        &self,
        pk_r: &Self::PublicKey,
        ephemeral: &Self::Ephemeral,
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), CryptoError>;

    /// `Decap`. A malformed `enc` gives [`CryptoError::Decrypt`].
    fn decap(&self, enc: &[u8], sk_r: &Self::PrivateKey)
    -> Result<Zeroizing<Vec<u8>>, CryptoError>;
}

/// A ciphersuite: KEM, KDF, AEAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Suite {
    pub(crate) kem: KemId,
    pub(crate) kdf: Kdf,
    pub(crate) aead: Aead,
}

impl Suite {
    /// DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
    pub(crate) const P256: Suite = Suite {
        kem: KemId::DhP256,
        kdf: Kdf::Sha256,
        aead: Aead::Aes256Gcm,
    };
    /// DHKEM(P-521, HKDF-SHA512), HKDF-SHA512, AES-256-GCM.
    pub(crate) const P521: Suite = Suite {
        kem: KemId::DhP521,
        kdf: Kdf::Sha512,
        aead: Aead::Aes256Gcm,
    };
    /// MLKEM768-X25519 (X-Wing), HKDF-SHA256, AES-256-GCM.
    pub(crate) const XWING: Suite = Suite {
        kem: KemId::XWing,
        kdf: Kdf::Sha256,
        aead: Aead::Aes256Gcm,
    };

    fn hpke_suite_id(self) -> Vec<u8> {
        let mut id = b"HPKE".to_vec();
        id.extend_from_slice(&self.kem.code().to_be_bytes());
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

/// `SHAKE256.LabeledDerive` of the single-stage KDFs (draft-ietf-hpke-hpke
/// and draft-ietf-hpke-pq §5), with the KEM's `suite_id`:
/// `SHAKE256(ikm ‖ "HPKE-v1" ‖ suite_id ‖ I2OSP(len(label), 2) ‖ label ‖
/// I2OSP(L, 2) ‖ context, L)`. The post-quantum KEMs derive their keys
/// with it.
pub(crate) fn shake256_labeled_derive(
    kem: KemId,
    ikm: &[u8],
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    use sha3::digest::{ExtendableOutput, Update, XofReader};
    let too_long = |_| CryptoError::Library("LabeledDerive input too long");
    let label_len = u16::try_from(label.len()).map_err(too_long)?;
    let out_len = u16::try_from(out.len()).map_err(too_long)?;
    let mut xof = sha3::Shake256::default();
    xof.update(ikm);
    xof.update(VERSION_LABEL);
    xof.update(&kem.suite_id());
    xof.update(&label_len.to_be_bytes());
    xof.update(label);
    xof.update(&out_len.to_be_bytes());
    xof.update(context);
    xof.finalize_xof().read(out);
    Ok(())
}

/// DHKEM over P-256 or P-521 (RFC 9180 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DhKem(pub(crate) Curve);

impl DhKem {
    /// The DHKEM's own KDF (fixed by the KEM, independent of the suite's).
    fn kdf(self) -> Kdf {
        match self.0 {
            Curve::P256 => Kdf::Sha256,
            Curve::P521 => Kdf::Sha512,
        }
    }

    /// RFC 9180 §7.1.3 DeriveKeyPair for the NIST curves.
    pub(crate) fn derive_key_pair(self, ikm: &[u8]) -> Result<EcPrivateKey, CryptoError> {
        let kdf = self.kdf();
        let sid = self.id().suite_id();
        let bitmask = match self.0 {
            Curve::P256 => 0xff,
            Curve::P521 => 0x01,
        };
        let dkp_prk = labeled_extract(kdf, &sid, b"", b"dkp_prk", ikm);
        for counter in 0u8..=255 {
            let mut bytes = labeled_expand(
                kdf,
                &sid,
                &dkp_prk,
                b"candidate",
                &[counter],
                self.0.scalar_len(),
            )?;
            bytes[0] &= bitmask;
            if let Ok(sk) = EcPrivateKey::from_scalar_bytes(self.0, &bytes) {
                return Ok(sk);
            }
        }
        Err(CryptoError::Library("DeriveKeyPair found no valid scalar"))
    }

    fn extract_and_expand(
        self,
        dh: &[u8],
        kem_context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let kdf = self.kdf();
        let sid = self.id().suite_id();
        let eae_prk = labeled_extract(kdf, &sid, b"", b"eae_prk", dh);
        labeled_expand(kdf, &sid, &eae_prk, b"shared_secret", kem_context, kdf.nh())
    }
}

impl Kem for DhKem {
    type PublicKey = EcPublicKey;
    type PrivateKey = EcPrivateKey;
    type Ephemeral = EcPrivateKey;

    fn id(&self) -> KemId {
        match self.0 {
            Curve::P256 => KemId::DhP256,
            Curve::P521 => KemId::DhP521,
        }
    }

    fn generate_ephemeral(
        &self,
        rng: &mut impl CryptoRngCore,
    ) -> Result<EcPrivateKey, CryptoError> {
        Ok(EcPrivateKey::generate(self.0, rng))
    }

    fn encap_with(
        &self,
        pk_r: &EcPublicKey,
        sk_e: &EcPrivateKey,
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), CryptoError> {
        if pk_r.curve() != self.0 || sk_e.curve() != self.0 {
            return Err(CryptoError::InvalidPublicKey(
                "public key is on another curve",
            ));
        }
        let dh = sk_e.dh(pk_r)?;
        let enc = sk_e.public_key().to_sec1();
        let mut kem_context = enc.clone();
        kem_context.extend_from_slice(&pk_r.to_sec1());
        Ok((self.extract_and_expand(&dh, &kem_context)?, enc))
    }

    fn decap(&self, enc: &[u8], sk_r: &EcPrivateKey) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sk_r.curve() != self.0 {
            return Err(CryptoError::Decrypt);
        }
        let pk_e = EcPublicKey::from_sec1(self.0, enc).map_err(|_| CryptoError::Decrypt)?;
        let dh = sk_r.dh(&pk_e)?;
        let mut kem_context = enc.to_vec();
        kem_context.extend_from_slice(&sk_r.public_key_ref().to_sec1());
        self.extract_and_expand(&dh, &kem_context)
    }
}

fn check_suite(kem: &impl Kem, suite: Suite) -> Result<(), CryptoError> {
    if kem.id() == suite.kem {
        Ok(())
    } else {
        Err(CryptoError::Library("HPKE suite names another KEM"))
    }
}

/// `SetupBaseS` with a given ephemeral input: `(enc, context)`.
pub(crate) fn setup_base_s<K: Kem>(
    kem: &K,
    suite: Suite,
    pk_r: &K::PublicKey,
    ephemeral: &K::Ephemeral,
    info: &[u8],
) -> Result<(Vec<u8>, Context), CryptoError> {
    check_suite(kem, suite)?;
    let (shared, enc) = kem.encap_with(pk_r, ephemeral)?;
    Ok((enc, key_schedule_base(suite, &shared, info)?))
}

/// `SetupBaseR`. A malformed `enc` gives [`CryptoError::Decrypt`].
pub(crate) fn setup_base_r<K: Kem>(
    kem: &K,
    suite: Suite,
    enc: &[u8],
    sk_r: &K::PrivateKey,
    info: &[u8],
) -> Result<Context, CryptoError> {
    check_suite(kem, suite)?;
    let shared = kem.decap(enc, sk_r)?;
    key_schedule_base(suite, &shared, info)
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
