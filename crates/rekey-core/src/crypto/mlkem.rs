//! ML-KEM-768 (FIPS 203) on AWS-LC: key generation from the 64-byte seed
//! `d ‖ z`, encapsulation with caller-supplied randomness, decapsulation.
//!
//! aws-lc-rs's `kem` module generates keys and encapsulates only with
//! AWS-LC's own randomness and cannot rebuild a key from its seed, which the
//! HPKE key derivation and the official vectors need. AWS-LC's EVP KEM API
//! does both (`EVP_PKEY_keygen_deterministic`,
//! `EVP_PKEY_encapsulate_deterministic`); the calls are in [`ffi`], the
//! crate's only `unsafe` module besides the RSA one.

use zeroize::Zeroizing;

/// Length of the seed `d ‖ z` a decapsulation key is stored as.
pub(crate) const SEED_LEN: usize = 64;
/// Length of an encapsulation key.
pub(crate) const EK_LEN: usize = 1184;
/// Length of a ciphertext.
pub(crate) const CT_LEN: usize = 1088;
/// Length of the encapsulation randomness `m`.
pub(crate) const RANDOMNESS_LEN: usize = 32;
/// Length of the shared secret.
pub(crate) const SS_LEN: usize = 32;

/// The prime modulus of ML-KEM.
const Q: u16 = 3329;

/// An ML-KEM-768 decapsulation key: AWS-LC's expanded key (freed and wiped
/// by AWS-LC on drop) and the encapsulation key. Whoever holds the seed
/// keeps it; the hybrid KEMs keep their own, shorter one.
pub(crate) struct MlKem768Secret {
    key: ffi::KemKey,
    ek: Box<[u8; EK_LEN]>,
}

impl std::fmt::Debug for MlKem768Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MlKem768Secret([redacted])")
    }
}

impl MlKem768Secret {
    /// `ML-KEM.KeyGen_internal(d, z)` with `seed = d ‖ z`. `None` only if
    /// AWS-LC fails (allocation, or its self-test).
    pub(crate) fn from_seed(seed: &[u8; SEED_LEN]) -> Option<Self> {
        let (key, ek) = ffi::KemKey::from_seed(seed)?;
        Some(Self { key, ek })
    }

    /// The encapsulation key.
    pub(crate) fn encapsulation_key(&self) -> &[u8; EK_LEN] {
        &self.ek
    }

    /// `ML-KEM.Decaps`. A ciphertext of the right length always yields a
    /// secret (implicit rejection); `None` for a wrong length or an AWS-LC
    /// failure.
    pub(crate) fn decapsulate(&self, ct: &[u8]) -> Option<Zeroizing<[u8; SS_LEN]>> {
        if ct.len() != CT_LEN {
            return None;
        }
        self.key.decapsulate(ct)
    }
}

/// FIPS 203 §7.2 encapsulation key check: the right length, and every
/// 12-bit coefficient of the encoded vector below `q` (the last 32 bytes
/// are the seed ρ and are not checked).
pub(crate) fn encapsulation_key_is_valid(ek: &[u8]) -> bool {
    if ek.len() != EK_LEN {
        return false;
    }
    let mut ok = true;
    for chunk in ek[..EK_LEN - 32].chunks_exact(3) {
        let a = u16::from(chunk[0]) | (u16::from(chunk[1] & 0x0f) << 8);
        let b = u16::from(chunk[1] >> 4) | (u16::from(chunk[2]) << 4);
        ok &= a < Q && b < Q;
    }
    ok
}

/// `ML-KEM.Encaps_internal(ek, m)`: `(ciphertext, shared secret)`. `None`
/// if `ek` fails the encapsulation key check or AWS-LC fails.
pub(crate) fn encapsulate_derand(
    ek: &[u8],
    m: &[u8; RANDOMNESS_LEN],
) -> Option<(Vec<u8>, Zeroizing<[u8; SS_LEN]>)> {
    if !encapsulation_key_is_valid(ek) {
        return None;
    }
    ffi::encapsulate_derand(ek, m)
}

/// Direct AWS-LC calls for ML-KEM-768 through its EVP KEM interface.
#[allow(unsafe_code)]
mod ffi {
    use super::{CT_LEN, EK_LEN, RANDOMNESS_LEN, SEED_LEN, SS_LEN};
    use aws_lc_sys as sys;
    use std::ptr::{NonNull, null_mut};
    use zeroize::Zeroizing;

    /// An owned `EVP_PKEY` of type `EVP_PKEY_KEM`.
    struct Pkey(NonNull<sys::EVP_PKEY>);

    impl Drop for Pkey {
        fn drop(&mut self) {
            // SAFETY: we own the one reference, from EVP_PKEY_keygen_deterministic
            // or EVP_PKEY_kem_new_raw_public_key; AWS-LC's allocator wipes
            // the key material as it frees it.
            unsafe { sys::EVP_PKEY_free(self.0.as_ptr()) }
        }
    }

    /// An owned `EVP_PKEY_CTX`.
    struct Ctx(NonNull<sys::EVP_PKEY_CTX>);

    impl Drop for Ctx {
        fn drop(&mut self) {
            // SAFETY: created by EVP_PKEY_CTX_new(_id), freed once here.
            unsafe { sys::EVP_PKEY_CTX_free(self.0.as_ptr()) }
        }
    }

    impl Ctx {
        fn for_key(key: &Pkey) -> Option<Self> {
            // SAFETY: `key` is a valid EVP_PKEY; the context takes its own
            // reference to it.
            NonNull::new(unsafe { sys::EVP_PKEY_CTX_new(key.0.as_ptr(), null_mut()) }).map(Ctx)
        }
    }

    fn clear_errors() {
        // SAFETY: clears this thread's AWS-LC error queue.
        unsafe { sys::ERR_clear_error() };
    }

    /// A decapsulation key held by AWS-LC.
    pub(super) struct KemKey(Pkey);

    // SAFETY: the EVP_PKEY is not changed after key generation; each
    // decapsulation makes its own EVP_PKEY_CTX, and AWS-LC allows concurrent
    // operations on one key through separate contexts.
    unsafe impl Send for KemKey {}
    unsafe impl Sync for KemKey {}

    impl KemKey {
        /// Deterministic key generation from `d ‖ z`; returns the key and
        /// its encapsulation key.
        pub(super) fn from_seed(seed: &[u8; SEED_LEN]) -> Option<(Self, Box<[u8; EK_LEN]>)> {
            // SAFETY: EVP_PKEY_CTX_new_id returns an owned context or null;
            // `Ctx` frees it.
            let ctx = Ctx(NonNull::new(unsafe {
                sys::EVP_PKEY_CTX_new_id(sys::EVP_PKEY_KEM, null_mut())
            })?);
            let mut raw: *mut sys::EVP_PKEY = null_mut();
            let mut seed_len = SEED_LEN;
            // SAFETY: `ctx` is valid; `seed` has `seed_len` readable bytes;
            // `raw` starts null, so AWS-LC allocates the key and on success
            // hands us its one reference (on failure it leaves it null).
            let ok = unsafe {
                sys::EVP_PKEY_CTX_kem_set_params(ctx.0.as_ptr(), sys::NID_MLKEM768) == 1
                    && sys::EVP_PKEY_keygen_init(ctx.0.as_ptr()) == 1
                    && sys::EVP_PKEY_keygen_deterministic(
                        ctx.0.as_ptr(),
                        &mut raw,
                        seed.as_ptr(),
                        &mut seed_len,
                    ) == 1
            };
            let key = NonNull::new(raw).map(Pkey);
            if !ok {
                clear_errors();
                return None;
            }
            let key = key?;
            let mut ek = Box::new([0u8; EK_LEN]);
            let mut ek_len = EK_LEN;
            // SAFETY: valid key; `ek` has `ek_len` writable bytes, and
            // AWS-LC writes at most that many.
            let rc = unsafe {
                sys::EVP_PKEY_get_raw_public_key(key.0.as_ptr(), ek.as_mut_ptr(), &mut ek_len)
            };
            if rc != 1 || ek_len != EK_LEN {
                clear_errors();
                return None;
            }
            Some((KemKey(key), ek))
        }

        pub(super) fn decapsulate(&self, ct: &[u8]) -> Option<Zeroizing<[u8; SS_LEN]>> {
            debug_assert_eq!(ct.len(), CT_LEN);
            let ctx = Ctx::for_key(&self.0)?;
            let mut ss = Zeroizing::new([0u8; SS_LEN]);
            let mut ss_len = SS_LEN;
            // SAFETY: valid context; `ss` has `ss_len` writable bytes; `ct`
            // is readable for its length.
            let rc = unsafe {
                sys::EVP_PKEY_decapsulate(
                    ctx.0.as_ptr(),
                    ss.as_mut_ptr(),
                    &mut ss_len,
                    ct.as_ptr(),
                    ct.len(),
                )
            };
            if rc != 1 || ss_len != SS_LEN {
                clear_errors();
                return None;
            }
            Some(ss)
        }
    }

    pub(super) fn encapsulate_derand(
        ek: &[u8],
        m: &[u8; RANDOMNESS_LEN],
    ) -> Option<(Vec<u8>, Zeroizing<[u8; SS_LEN]>)> {
        if ek.len() != EK_LEN {
            return None;
        }
        // SAFETY: `ek` is readable for its length; AWS-LC copies it into a
        // new EVP_PKEY (or returns null), which `Pkey` owns.
        let key = NonNull::new(unsafe {
            sys::EVP_PKEY_kem_new_raw_public_key(sys::NID_MLKEM768, ek.as_ptr(), ek.len())
        })
        .map(Pkey);
        let Some(key) = key else {
            clear_errors();
            return None;
        };
        let ctx = Ctx::for_key(&key)?;
        let mut ct = vec![0u8; CT_LEN];
        let mut ct_len = CT_LEN;
        let mut ss = Zeroizing::new([0u8; SS_LEN]);
        let mut ss_len = SS_LEN;
        let mut m_len = RANDOMNESS_LEN;
        // SAFETY: valid context; `ct` and `ss` have `ct_len` and `ss_len`
        // writable bytes, `m` has `m_len` readable bytes.
        let rc = unsafe {
            sys::EVP_PKEY_encapsulate_deterministic(
                ctx.0.as_ptr(),
                ct.as_mut_ptr(),
                &mut ct_len,
                ss.as_mut_ptr(),
                &mut ss_len,
                m.as_ptr(),
                &mut m_len,
            )
        };
        if rc != 1 || ct_len != CT_LEN || ss_len != SS_LEN {
            clear_errors();
            return None;
        }
        Some((ct, ss))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_implicit_rejection() {
        let sk = MlKem768Secret::from_seed(&[7u8; SEED_LEN]).unwrap();
        let (ct, ss) = encapsulate_derand(sk.encapsulation_key(), &[9u8; 32]).unwrap();
        assert_eq!(ct.len(), CT_LEN);
        assert_eq!(*sk.decapsulate(&ct).unwrap(), *ss);
        let mut bad = ct.clone();
        bad[5] ^= 1;
        // Implicit rejection: a secret, but another one.
        assert_ne!(*sk.decapsulate(&bad).unwrap(), *ss);
        assert!(sk.decapsulate(&ct[1..]).is_none());
        // Same seed, same key.
        let again = MlKem768Secret::from_seed(&[7u8; SEED_LEN]).unwrap();
        assert_eq!(again.encapsulation_key(), sk.encapsulation_key());
    }

    #[test]
    fn encapsulation_key_check_refuses_unreduced_coefficients() {
        let sk = MlKem768Secret::from_seed(&[1u8; SEED_LEN]).unwrap();
        let ek = sk.encapsulation_key().to_vec();
        assert!(encapsulation_key_is_valid(&ek));
        let mut bad = ek.clone();
        // First coefficient := 0xfff >= q.
        bad[0] = 0xff;
        bad[1] |= 0x0f;
        assert!(!encapsulation_key_is_valid(&bad));
        assert!(encapsulate_derand(&bad, &[0u8; 32]).is_none());
        assert!(!encapsulation_key_is_valid(&ek[..EK_LEN - 1]));
    }
}
