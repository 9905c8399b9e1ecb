//! Legacy RSA keys on AWS-LC (constant-time, ~7x faster than the pure-Rust
//! `rsa` crate on this hardware; see README). rekey unwraps legacy grants
//! with them, signs bundles with RSA-PSS, and wraps only to legacy members
//! still pending migration (and in fixtures).

use crate::envelope::Scheme;
use crate::error::CryptoError;
use crate::secret::SecretBytes;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey, PublicEncryptingKey};
use aws_lc_rs::signature::{RSA_PSS_2048_8192_SHA256, UnparsedPublicKey};
use zeroize::Zeroizing;

/// RSA modulus sizes rekey reads.
pub const SUPPORTED_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

/// A legacy RSA private key (PKCS#8). The DER copy is wiped on drop; AWS-LC
/// clears its own copy when the key is freed.
///
/// One AWS-LC key serves every OAEP unwrap and the bundle's PSS signature.
/// aws-lc-rs would parse (and check) the DER twice, once for decryption
/// and once for signing, and each copy would set up its own blinding and
/// Montgomery values on first use: for a user with a hundred grants that
/// was about 1.5 % of the migration's CPU.
pub struct LegacyRsaPrivateKey {
    pkcs8: Zeroizing<Vec<u8>>,
    key: ffi::RawKey,
    spki: Vec<u8>,
    bits: usize,
}

impl std::fmt::Debug for LegacyRsaPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LegacyRsaPrivateKey({} bits, [redacted])", self.bits)
    }
}

/// A legacy RSA public key (X.509 SubjectPublicKeyInfo DER).
#[derive(Clone)]
pub struct LegacyRsaPublicKey {
    spki: Vec<u8>,
    bits: usize,
}

impl std::fmt::Debug for LegacyRsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LegacyRsaPublicKey({} bits)", self.bits)
    }
}

impl PartialEq for LegacyRsaPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki == other.spki
    }
}

impl Eq for LegacyRsaPublicKey {}

impl LegacyRsaPrivateKey {
    /// Reads a PKCS#8 DER private key of 2048 to 4096 bits.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        // AWS-LC checks the key's consistency while parsing it.
        let key = ffi::RawKey::private_from_pkcs8(der).ok_or(CryptoError::InvalidPrivateKey(
            "not an RSA PKCS#8 private key",
        ))?;
        let bits = key.bits();
        if !SUPPORTED_BITS.contains(&bits) {
            return Err(CryptoError::UnsupportedKeySize { bits });
        }
        let spki = key
            .spki_der()
            .ok_or(CryptoError::Library("RSA public key encoding"))?;
        Ok(Self {
            pkcs8: Zeroizing::new(der.to_vec()),
            key,
            spki,
            bits,
        })
    }

    /// Generates a key of 2048, 3072 or 4096 bits (fixtures and the demo).
    pub fn generate(bits: usize) -> Result<Self, CryptoError> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            _ => return Err(CryptoError::UnsupportedKeySize { bits }),
        };
        let key = PrivateDecryptingKey::generate(size)
            .map_err(|_| CryptoError::Library("RSA key generation"))?;
        let der = key
            .as_der()
            .map_err(|_| CryptoError::Library("RSA key encoding"))?;
        Self::from_pkcs8_der(der.as_ref())
    }

    /// Modulus size in bits.
    #[must_use]
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The PKCS#8 DER encoding (what gets wrapped under a KEK).
    #[must_use]
    pub fn dangerous_pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> LegacyRsaPublicKey {
        LegacyRsaPublicKey {
            spki: self.spki.clone(),
            bits: self.bits,
        }
    }

    /// RSA-OAEP decryption of a legacy grant's ciphertext.
    pub(crate) fn decrypt(&self, scheme: Scheme, ct: &[u8]) -> Result<SecretBytes, CryptoError> {
        self.decrypt_with_label(scheme, ct, &[])
    }

    /// OAEP decryption with a label (legacy grants use none; the Wycheproof
    /// vectors use some).
    pub(crate) fn decrypt_with_label(
        &self,
        scheme: Scheme,
        ct: &[u8],
        label: &[u8],
    ) -> Result<SecretBytes, CryptoError> {
        let oaep = ffi::Oaep::of(scheme).ok_or(CryptoError::WrongScheme {
            expected: "an RSA-OAEP scheme",
            found: scheme,
        })?;
        if ct.len() != self.bits / 8 {
            return Err(CryptoError::Decrypt);
        }
        self.key
            .oaep_decrypt(oaep, ct, label)
            .map(|pt| SecretBytes::from_slice(&pt))
            .ok_or(CryptoError::Decrypt)
    }

    /// RSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) over `message`.
    pub fn sign_pss(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message);
        self.key
            .pss_sha256_sign(digest.as_ref())
            .ok_or(CryptoError::Library("RSA-PSS signing"))
    }
}

impl LegacyRsaPublicKey {
    /// Reads an X.509 SubjectPublicKeyInfo DER RSA public key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        let key = PublicEncryptingKey::from_der(der)
            .map_err(|_| CryptoError::InvalidPublicKey("not an RSA SubjectPublicKeyInfo"))?;
        let bits = key.key_size_bits();
        if !SUPPORTED_BITS.contains(&bits) {
            return Err(CryptoError::UnsupportedKeySize { bits });
        }
        Ok(Self {
            spki: der.to_vec(),
            bits,
        })
    }

    /// The SubjectPublicKeyInfo DER.
    #[must_use]
    pub fn to_spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// Modulus size in bits.
    #[must_use]
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Lowercase hex SHA-256 of the SubjectPublicKeyInfo DER: how rekey
    /// names a certificate and its key file.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        super::fingerprint(&self.spki)
    }

    /// Verifies an RSA-PSS SHA-256 signature.
    pub fn verify_pss(&self, message: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        let pkcs1 = aws_lc_rs::rsa::PublicKey::from_der(&self.spki)
            .map_err(|_| CryptoError::BadSignature)?;
        UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, pkcs1.as_ref())
            .verify(message, sig)
            .map_err(|_| CryptoError::BadSignature)
    }

    /// RSA-OAEP encryption with a legacy scheme. Used only to wrap a role's
    /// new key to members who have not migrated yet, and to build fixtures.
    pub(crate) fn encrypt(&self, scheme: Scheme, secret: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let max = self.max_secret_len(scheme)?;
        if secret.len() > max {
            return Err(CryptoError::SecretTooLong {
                len: secret.len(),
                max,
            });
        }
        // max_secret_len has already refused a non-OAEP scheme.
        let oaep = ffi::Oaep::of(scheme).ok_or(CryptoError::WrongScheme {
            expected: "an RSA-OAEP scheme",
            found: scheme,
        })?;
        ffi::RawKey::public_from_spki(&self.spki)
            .and_then(|k| k.oaep_encrypt(oaep, secret))
            .ok_or(CryptoError::Library("RSA-OAEP encryption"))
    }

    /// Longest secret this key can carry with `scheme`.
    pub fn max_secret_len(&self, scheme: Scheme) -> Result<usize, CryptoError> {
        let hash_len = match scheme {
            Scheme::RsaOaepSha1 => 20,
            Scheme::RsaOaepSha256 | Scheme::RsaOaepSha256Mgf1Sha1 => 32,
            other => {
                return Err(CryptoError::WrongScheme {
                    expected: "an RSA-OAEP scheme",
                    found: other,
                });
            }
        };
        Ok(self.bits / 8 - 2 * hash_len - 2)
    }
}

/// Direct AWS-LC calls: one parsed key for OAEP (including SHA-256 with
/// MGF1-SHA-1, which aws-lc-rs does not expose) and PSS signing. Same
/// library and the same constant-time code as aws-lc-rs.
#[allow(unsafe_code)]
mod ffi {
    use aws_lc_sys as sys;
    use std::ptr::{NonNull, null_mut};
    use zeroize::Zeroizing;

    pub(super) struct RawKey(NonNull<sys::EVP_PKEY>);

    // SAFETY: an EVP_PKEY is reference-counted and immutable after parsing;
    // AWS-LC allows concurrent operations on one key (each call makes its own
    // EVP_PKEY_CTX; RSA's blinding and Montgomery caches are locked inside).
    unsafe impl Send for RawKey {}
    unsafe impl Sync for RawKey {}

    impl Drop for RawKey {
        fn drop(&mut self) {
            // SAFETY: we own one reference, taken in `parse`.
            unsafe { sys::EVP_PKEY_free(self.0.as_ptr()) }
        }
    }

    struct Ctx(NonNull<sys::EVP_PKEY_CTX>);

    /// The OAEP digest pairs of the legacy schemes.
    #[derive(Clone, Copy, Debug)]
    pub(super) enum Oaep {
        Sha1,
        Sha256,
        Sha256Mgf1Sha1,
    }

    impl Oaep {
        pub(super) fn of(scheme: crate::envelope::Scheme) -> Option<Self> {
            use crate::envelope::Scheme;
            match scheme {
                Scheme::RsaOaepSha1 => Some(Self::Sha1),
                Scheme::RsaOaepSha256 => Some(Self::Sha256),
                Scheme::RsaOaepSha256Mgf1Sha1 => Some(Self::Sha256Mgf1Sha1),
                _ => None,
            }
        }

        /// The OAEP digest and the MGF1 digest.
        fn digests(self) -> (*const sys::EVP_MD, *const sys::EVP_MD) {
            // SAFETY: these return pointers to static digest tables.
            unsafe {
                match self {
                    Self::Sha1 => (sys::EVP_sha1(), sys::EVP_sha1()),
                    Self::Sha256 => (sys::EVP_sha256(), sys::EVP_sha256()),
                    Self::Sha256Mgf1Sha1 => (sys::EVP_sha256(), sys::EVP_sha1()),
                }
            }
        }
    }

    impl Drop for Ctx {
        fn drop(&mut self) {
            // SAFETY: created by EVP_PKEY_CTX_new, freed once.
            unsafe { sys::EVP_PKEY_CTX_free(self.0.as_ptr()) }
        }
    }

    impl RawKey {
        fn parse(der: &[u8], private: bool) -> Option<Self> {
            let mut cbs = std::mem::MaybeUninit::<sys::CBS>::uninit();
            // SAFETY: CBS_init fully initialises the CBS to borrow `der`,
            // which outlives the parse call; the parser copies what it keeps.
            let pkey = unsafe {
                sys::CBS_init(cbs.as_mut_ptr(), der.as_ptr(), der.len());
                if private {
                    sys::EVP_parse_private_key(cbs.as_mut_ptr())
                } else {
                    sys::EVP_parse_public_key(cbs.as_mut_ptr())
                }
            };
            let key = RawKey(NonNull::new(pkey)?);
            // SAFETY: `key` holds a valid EVP_PKEY.
            let is_rsa = unsafe { sys::EVP_PKEY_id(key.0.as_ptr()) } == sys::EVP_PKEY_RSA;
            is_rsa.then_some(key)
        }

        pub(super) fn private_from_pkcs8(der: &[u8]) -> Option<Self> {
            Self::parse(der, true)
        }

        pub(super) fn public_from_spki(der: &[u8]) -> Option<Self> {
            Self::parse(der, false)
        }

        /// The modulus size in bits.
        pub(super) fn bits(&self) -> usize {
            // SAFETY: valid key.
            let n = unsafe { sys::EVP_PKEY_bits(self.0.as_ptr()) };
            usize::try_from(n).unwrap_or(0)
        }

        /// The public half as X.509 SubjectPublicKeyInfo DER.
        pub(super) fn spki_der(&self) -> Option<Vec<u8>> {
            let mut cbb = std::mem::MaybeUninit::<sys::CBB>::uninit();
            // SAFETY: CBB_init initialises the CBB (it allocates its buffer
            // and can fail only on allocation); after a failed marshal or
            // finish, CBB_cleanup frees it; after CBB_finish the buffer is
            // ours, copied and freed with OPENSSL_free.
            unsafe {
                if sys::CBB_init(cbb.as_mut_ptr(), 600) != 1 {
                    return None;
                }
                let mut out: *mut u8 = null_mut();
                let mut len = 0usize;
                if sys::EVP_marshal_public_key(cbb.as_mut_ptr(), self.0.as_ptr()) != 1
                    || sys::CBB_finish(cbb.as_mut_ptr(), &mut out, &mut len) != 1
                {
                    sys::CBB_cleanup(cbb.as_mut_ptr());
                    sys::ERR_clear_error();
                    return None;
                }
                if out.is_null() {
                    return None;
                }
                let der = std::slice::from_raw_parts(out, len).to_vec();
                sys::OPENSSL_free(out.cast());
                Some(der)
            }
        }

        /// RSA-PSS over a SHA-256 digest: MGF1-SHA-256 and a salt as long
        /// as the digest, as aws-lc-rs's `RSA_PSS_SHA256` signs.
        pub(super) fn pss_sha256_sign(&self, digest: &[u8]) -> Option<Vec<u8>> {
            // SAFETY: valid key; the context is freed by `Ctx`'s Drop; the
            // EVP_MD pointer is static; `sig` has `len` writable bytes.
            unsafe {
                let ctx = Ctx(NonNull::new(sys::EVP_PKEY_CTX_new(
                    self.0.as_ptr(),
                    null_mut(),
                ))?);
                let ok = sys::EVP_PKEY_sign_init(ctx.0.as_ptr()) == 1
                    && sys::EVP_PKEY_CTX_set_rsa_padding(
                        ctx.0.as_ptr(),
                        sys::RSA_PKCS1_PSS_PADDING,
                    ) == 1
                    && sys::EVP_PKEY_CTX_set_signature_md(ctx.0.as_ptr(), sys::EVP_sha256()) == 1
                    && sys::EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.0.as_ptr(), sys::EVP_sha256()) == 1
                    && sys::EVP_PKEY_CTX_set_rsa_pss_saltlen(
                        ctx.0.as_ptr(),
                        sys::RSA_PSS_SALTLEN_DIGEST,
                    ) == 1;
                if !ok {
                    sys::ERR_clear_error();
                    return None;
                }
                let mut sig = vec![0u8; self.size()];
                let mut len = sig.len();
                let rc = sys::EVP_PKEY_sign(
                    ctx.0.as_ptr(),
                    sig.as_mut_ptr(),
                    &mut len,
                    digest.as_ptr(),
                    digest.len(),
                );
                if rc != 1 {
                    sys::ERR_clear_error();
                    return None;
                }
                sig.truncate(len);
                Some(sig)
            }
        }

        fn oaep_ctx(&self, oaep: Oaep, encrypt: bool, label: &[u8]) -> Option<Ctx> {
            let (md, mgf1) = oaep.digests();
            // SAFETY: valid key; the context is freed by `Ctx`'s Drop; the
            // EVP_MD pointers are static.
            unsafe {
                let ctx = Ctx(NonNull::new(sys::EVP_PKEY_CTX_new(
                    self.0.as_ptr(),
                    null_mut(),
                ))?);
                let init = if encrypt {
                    sys::EVP_PKEY_encrypt_init(ctx.0.as_ptr())
                } else {
                    sys::EVP_PKEY_decrypt_init(ctx.0.as_ptr())
                };
                let ok = init == 1
                    && sys::EVP_PKEY_CTX_set_rsa_padding(
                        ctx.0.as_ptr(),
                        sys::RSA_PKCS1_OAEP_PADDING,
                    ) == 1
                    && sys::EVP_PKEY_CTX_set_rsa_oaep_md(ctx.0.as_ptr(), md) == 1
                    && sys::EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.0.as_ptr(), mgf1) == 1;
                if !ok {
                    return None;
                }
                if !label.is_empty() {
                    // set0 takes ownership of a buffer from AWS-LC's allocator.
                    let buf = sys::OPENSSL_malloc(label.len()).cast::<u8>();
                    if buf.is_null() {
                        return None;
                    }
                    std::ptr::copy_nonoverlapping(label.as_ptr(), buf, label.len());
                    if sys::EVP_PKEY_CTX_set0_rsa_oaep_label(ctx.0.as_ptr(), buf, label.len()) != 1
                    {
                        sys::OPENSSL_free(buf.cast());
                        return None;
                    }
                }
                Some(ctx)
            }
        }

        fn size(&self) -> usize {
            // SAFETY: valid key.
            let n = unsafe { sys::EVP_PKEY_size(self.0.as_ptr()) };
            usize::try_from(n).unwrap_or(0)
        }

        pub(super) fn oaep_decrypt(
            &self,
            oaep: Oaep,
            ct: &[u8],
            label: &[u8],
        ) -> Option<Zeroizing<Vec<u8>>> {
            let ctx = self.oaep_ctx(oaep, false, label)?;
            let mut out = Zeroizing::new(vec![0u8; self.size()]);
            let mut len = out.len();
            // SAFETY: `out` has `len` writable bytes; `ct` is readable.
            let rc = unsafe {
                sys::EVP_PKEY_decrypt(
                    ctx.0.as_ptr(),
                    out.as_mut_ptr(),
                    &mut len,
                    ct.as_ptr(),
                    ct.len(),
                )
            };
            if rc != 1 {
                // SAFETY: clears this thread's AWS-LC error queue.
                unsafe { sys::ERR_clear_error() };
                return None;
            }
            out.truncate(len);
            Some(out)
        }

        pub(super) fn oaep_encrypt(&self, oaep: Oaep, pt: &[u8]) -> Option<Vec<u8>> {
            let ctx = self.oaep_ctx(oaep, true, &[])?;
            let mut out = vec![0u8; self.size()];
            let mut len = out.len();
            // SAFETY: `out` has `len` writable bytes; `pt` is readable.
            let rc = unsafe {
                sys::EVP_PKEY_encrypt(
                    ctx.0.as_ptr(),
                    out.as_mut_ptr(),
                    &mut len,
                    pt.as_ptr(),
                    pt.len(),
                )
            };
            if rc != 1 {
                // SAFETY: clears this thread's AWS-LC error queue.
                unsafe { sys::ERR_clear_error() };
                return None;
            }
            out.truncate(len);
            Some(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rsa::{OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256};
    use aws_lc_rs::signature::{RSA_PSS_SHA256, RsaKeyPair};

    const KEYS: [&[u8]; 2] = [
        include_bytes!("../../tests/fixtures/rsa-2048-a.pk8"),
        include_bytes!("../../tests/fixtures/rsa-4096-a.pk8"),
    ];

    /// The one raw AWS-LC key computes what aws-lc-rs's two typed keys
    /// (decrypting, signing) computed before: the same public key, the same
    /// OAEP plaintexts, PSS signatures the verifier accepts as it accepts
    /// aws-lc-rs's.
    #[test]
    fn one_raw_key_does_what_the_aws_lc_rs_keys_did() {
        for der in KEYS {
            let ours = LegacyRsaPrivateKey::from_pkcs8_der(der).unwrap();
            let typed = PrivateDecryptingKey::from_pkcs8(der).unwrap();
            assert_eq!(ours.bits(), typed.key_size_bits());
            let spki = typed.public_key().as_der().unwrap();
            assert_eq!(ours.public_key().to_spki_der(), spki.as_ref());

            // OAEP, for both schemes aws-lc-rs has: ours encrypts, and ours
            // and aws-lc-rs's typed key both decrypt.
            let oaep_typed = aws_lc_rs::rsa::OaepPrivateDecryptingKey::new(typed).unwrap();
            let public = ours.public_key();
            for (scheme, alg) in [
                (Scheme::RsaOaepSha1, &OAEP_SHA1_MGF1SHA1),
                (Scheme::RsaOaepSha256, &OAEP_SHA256_MGF1SHA256),
            ] {
                let secret = [7u8; 32];
                let ct = public.encrypt(scheme, &secret).unwrap();
                assert_eq!(
                    ours.decrypt(scheme, &ct).unwrap().dangerous_as_bytes(),
                    &secret
                );
                let mut out = vec![0u8; oaep_typed.min_output_size()];
                let pt = oaep_typed.decrypt(alg, &ct, &mut out, None).unwrap();
                assert_eq!(pt, &secret);
                // A ciphertext under the other scheme does not open.
                let other = if scheme == Scheme::RsaOaepSha1 {
                    Scheme::RsaOaepSha256
                } else {
                    Scheme::RsaOaepSha1
                };
                assert!(ours.decrypt(other, &ct).is_err());
            }

            // PSS: our signature verifies with aws-lc-rs's verifier, only
            // for its message; so does an aws-lc-rs signature.
            let msg = b"rekey bundle digest";
            let sig = ours.sign_pss(msg).unwrap();
            assert_eq!(sig.len(), ours.bits() / 8);
            public.verify_pss(msg, &sig).unwrap();
            assert!(public.verify_pss(b"another message", &sig).is_err());
            let signer = RsaKeyPair::from_pkcs8(der).unwrap();
            let mut theirs = vec![0u8; signer.public_modulus_len()];
            signer
                .sign(
                    &RSA_PSS_SHA256,
                    &aws_lc_rs::rand::SystemRandom::new(),
                    msg,
                    &mut theirs,
                )
                .unwrap();
            public.verify_pss(msg, &theirs).unwrap();
        }
    }

    #[test]
    fn a_cut_short_or_foreign_key_is_refused() {
        let der = KEYS[0];
        assert!(LegacyRsaPrivateKey::from_pkcs8_der(&der[..der.len() - 1]).is_err());
        assert!(LegacyRsaPrivateKey::from_pkcs8_der(&[]).is_err());
        assert!(LegacyRsaPrivateKey::from_pkcs8_der(b"not a key").is_err());
    }
}
