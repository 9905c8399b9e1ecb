//! HKDF (RFC 5869) over SHA-256 and SHA-512.

use crate::error::CryptoError;
use hkdf::{Hkdf, HkdfExtract};
use sha2::{Sha256, Sha512};
use zeroize::Zeroizing;

/// The HKDF hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kdf {
    Sha256,
    Sha512,
}

impl Kdf {
    /// RFC 9180 KDF id.
    pub(crate) fn id(self) -> u16 {
        match self {
            Kdf::Sha256 => 0x0001,
            Kdf::Sha512 => 0x0003,
        }
    }

    /// Hash output length.
    pub(crate) fn nh(self) -> usize {
        match self {
            Kdf::Sha256 => 32,
            Kdf::Sha512 => 64,
        }
    }

    /// HKDF-Extract over the concatenation of `ikm_parts`.
    pub(crate) fn extract(self, salt: &[u8], ikm_parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
        match self {
            Kdf::Sha256 => {
                let mut ex = HkdfExtract::<Sha256>::new(Some(salt));
                for part in ikm_parts {
                    ex.input_ikm(part);
                }
                Zeroizing::new(ex.finalize().0.to_vec())
            }
            Kdf::Sha512 => {
                let mut ex = HkdfExtract::<Sha512>::new(Some(salt));
                for part in ikm_parts {
                    ex.input_ikm(part);
                }
                Zeroizing::new(ex.finalize().0.to_vec())
            }
        }
    }

    /// HKDF-Expand of `len` bytes with the concatenation of `info_parts`.
    pub(crate) fn expand(
        self,
        prk: &[u8],
        info_parts: &[&[u8]],
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut okm = Zeroizing::new(vec![0u8; len]);
        let res = match self {
            Kdf::Sha256 => Hkdf::<Sha256>::from_prk(prk)
                .map_err(|_| CryptoError::Library("HKDF pseudorandom key too short"))?
                .expand_multi_info(info_parts, &mut okm),
            Kdf::Sha512 => Hkdf::<Sha512>::from_prk(prk)
                .map_err(|_| CryptoError::Library("HKDF pseudorandom key too short"))?
                .expand_multi_info(info_parts, &mut okm),
        };
        res.map_err(|_| CryptoError::Library("HKDF output too long"))?;
        Ok(okm)
    }

    /// Extract then expand: the whole of RFC 5869.
    pub(crate) fn derive(
        self,
        salt: &[u8],
        ikm: &[u8],
        info: &[u8],
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let prk = self.extract(salt, &[ikm]);
        self.expand(&prk, &[info], len)
    }
}
