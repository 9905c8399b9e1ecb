//! AES-GCM with 96-bit nonces and 128-bit tags (and, in tests only,
//! ChaCha20-Poly1305 for the draft-ietf-hpke-pq X-Wing vectors).

use crate::error::CryptoError;
use aes_gcm::aead::{Aead as _, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use zeroize::Zeroizing;

/// The AEAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Aead {
    #[cfg_attr(not(test), allow(dead_code))] // in the RFC 9180 vectors
    Aes128Gcm,
    Aes256Gcm,
    /// Only the official X-Wing vectors use it; rekey never writes it.
    #[cfg(test)]
    ChaCha20Poly1305,
}

impl Aead {
    /// RFC 9180 AEAD id.
    pub(crate) fn id(self) -> u16 {
        match self {
            Aead::Aes128Gcm => 0x0001,
            Aead::Aes256Gcm => 0x0002,
            #[cfg(test)]
            Aead::ChaCha20Poly1305 => 0x0003,
        }
    }

    /// Key length.
    pub(crate) fn nk(self) -> usize {
        match self {
            Aead::Aes128Gcm => 16,
            Aead::Aes256Gcm => 32,
            #[cfg(test)]
            Aead::ChaCha20Poly1305 => 32,
        }
    }

    /// Encrypts; the output is the ciphertext followed by the 16-byte tag.
    pub(crate) fn seal(
        self,
        key: &[u8],
        nonce: &[u8; 12],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let payload = Payload {
            msg: plaintext,
            aad,
        };
        #[allow(deprecated)] // aes-gcm 0.10 takes generic-array 0.14
        let nonce = Nonce::from_slice(nonce);
        let out = match self {
            Aead::Aes128Gcm => Aes128Gcm::new_from_slice(key)
                .map_err(|_| CryptoError::Library("AES-128 key length"))?
                .encrypt(nonce, payload),
            Aead::Aes256Gcm => Aes256Gcm::new_from_slice(key)
                .map_err(|_| CryptoError::Library("AES-256 key length"))?
                .encrypt(nonce, payload),
            #[cfg(test)]
            Aead::ChaCha20Poly1305 => chacha20poly1305::ChaCha20Poly1305::new_from_slice(key)
                .map_err(|_| CryptoError::Library("ChaCha20 key length"))?
                .encrypt(nonce, payload),
        };
        out.map_err(|_| CryptoError::Library("AES-GCM encryption"))
    }

    /// Decrypts and authenticates `ciphertext ‖ tag`.
    pub(crate) fn open(
        self,
        key: &[u8],
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if nonce.len() != 12 {
            return Err(CryptoError::Decrypt);
        }
        let payload = Payload {
            msg: ciphertext,
            aad,
        };
        #[allow(deprecated)] // aes-gcm 0.10 takes generic-array 0.14
        let nonce = Nonce::from_slice(nonce);
        let out = match self {
            Aead::Aes128Gcm => Aes128Gcm::new_from_slice(key)
                .map_err(|_| CryptoError::Decrypt)?
                .decrypt(nonce, payload),
            Aead::Aes256Gcm => Aes256Gcm::new_from_slice(key)
                .map_err(|_| CryptoError::Decrypt)?
                .decrypt(nonce, payload),
            #[cfg(test)]
            Aead::ChaCha20Poly1305 => chacha20poly1305::ChaCha20Poly1305::new_from_slice(key)
                .map_err(|_| CryptoError::Decrypt)?
                .decrypt(nonce, payload),
        };
        out.map(Zeroizing::new).map_err(|_| CryptoError::Decrypt)
    }
}
