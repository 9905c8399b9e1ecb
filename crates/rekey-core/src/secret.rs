//! Secrets as types: zeroized on drop, redacted in `Debug`, compared in
//! constant time, never `Clone`, `Serialize` or `Display`.

use rand_core::CryptoRngCore;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

macro_rules! fixed_secret {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        pub struct $name(Box<[u8; $len]>);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// A fresh random key.
            pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
                let mut inner = Box::new([0u8; $len]);
                rng.fill_bytes(&mut inner[..]);
                Self(inner)
            }

            /// Takes the key from an array, moved into protected storage.
            pub fn from_array(mut bytes: [u8; $len]) -> Self {
                let out = Self(Box::new(bytes));
                bytes.zeroize();
                out
            }

            /// Takes the key from a byte slice of exactly the right length;
            /// the caller remains responsible for wiping its own copy.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                if bytes.len() != $len {
                    return None;
                }
                let mut inner = Box::new([0u8; $len]);
                inner.copy_from_slice(bytes);
                Some(Self(inner))
            }

            /// The raw key bytes. Named so that every use stands out in review.
            #[must_use]
            pub fn dangerous_as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                self.0.zeroize();
            }
        }

        impl zeroize::ZeroizeOnDrop for $name {}

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0[..].ct_eq(&other.0[..]).into()
            }
        }

        impl Eq for $name {}
    };
}

fixed_secret!(
    /// The AES-256 key a record's content is encrypted under.
    RecordKey,
    32
);
fixed_secret!(
    /// A key-encryption key: wraps a principal's private key (scheme
    /// `aes256gcm-kek`). Derived from a master secret, or random for roles.
    Kek,
    32
);

/// A user's master secret, the output of the vault's password KDF (Argon2id
/// in the reference vault). The library only derives keys from it.
pub struct MasterSecret(Zeroizing<Vec<u8>>);

impl MasterSecret {
    /// Shortest master secret accepted, in bytes.
    pub const MIN_LEN: usize = 16;

    /// Takes a master secret; `None` if it is shorter than [`Self::MIN_LEN`].
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        (bytes.len() >= Self::MIN_LEN).then(|| Self(Zeroizing::new(bytes.to_vec())))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, for a caller that must hand them on (test vectors, a
    /// client's own storage). Named so that each use stands out in review.
    #[must_use]
    pub fn dangerous_as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterSecret([redacted])")
    }
}

/// Unwrapped key material of any length: what opening a grant yields before
/// it is turned into a typed key.
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps bytes that must be wiped after use.
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Copies bytes into a new secret.
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self(Zeroizing::new(bytes.to_vec()))
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The raw bytes. Named so that every use stands out in review.
    #[must_use]
    pub fn dangerous_as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Interprets the bytes as a record key.
    pub fn into_record_key(self) -> Option<RecordKey> {
        RecordKey::from_slice(&self.0)
    }

    /// Interprets the bytes as a key-encryption key.
    pub fn into_kek(self) -> Option<Kek> {
        Kek::from_slice(&self.0)
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes([redacted]; {} bytes)", self.0.len())
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.0[..].ct_eq(&other.0[..]).into()
    }
}

impl Eq for SecretBytes {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_key_bytes() {
        let key = RecordKey::from_slice(&[0xAB; 32]).unwrap();
        let printed = format!("{key:?}");
        assert_eq!(printed, "RecordKey([redacted])");
        let secret = SecretBytes::from_slice(&[0xCD; 5]);
        assert!(!format!("{secret:?}").to_lowercase().contains("cd"));
        let master = MasterSecret::from_slice(&[0x11; 32]).unwrap();
        assert_eq!(format!("{master:?}"), "MasterSecret([redacted])");
    }

    #[test]
    fn wrong_lengths_are_refused() {
        assert!(RecordKey::from_slice(&[0; 31]).is_none());
        assert!(Kek::from_slice(&[0; 33]).is_none());
        assert!(MasterSecret::from_slice(&[0; 15]).is_none());
    }

    #[test]
    fn equality_compares_contents() {
        let a = Kek::from_slice(&[1; 32]).unwrap();
        let b = Kek::from_slice(&[1; 32]).unwrap();
        let c = Kek::from_slice(&[2; 32]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
