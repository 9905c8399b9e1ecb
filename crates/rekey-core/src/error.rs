//! The core's errors. Decryption failures say "could not decrypt" and
//! nothing more: which check failed is not the caller's business.

use crate::envelope::Scheme;

/// An envelope's bytes are not a valid rekey envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Fewer bytes than the fixed header.
    #[error("envelope is truncated: {len} bytes, the header alone takes 4")]
    TooShortForHeader {
        /// Bytes received.
        len: usize,
    },
    /// The first two bytes are not the rekey magic.
    #[error("not a rekey envelope (bad magic bytes)")]
    BadMagic,
    /// A format version this build does not know.
    #[error("envelope format version {0} is not supported by this build (it reads version 1)")]
    UnsupportedVersion(u8),
    /// A scheme id this build does not know.
    #[error("unknown scheme id 0x{0:02x}")]
    UnknownScheme(u8),
    /// The body is shorter or longer than the scheme allows.
    #[error("envelope body of {len} bytes is invalid for {scheme}: expected {expected}")]
    BadBodyLength {
        /// The scheme named in the header.
        scheme: Scheme,
        /// Body bytes received.
        len: usize,
        /// What the scheme allows, in words.
        expected: &'static str,
    },
}

/// A cryptographic operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The ciphertext did not open with this key and binding.
    #[error("could not decrypt")]
    Decrypt,
    /// A signature did not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The envelope's scheme does not belong with the key or operation.
    #[error("scheme {found} cannot be used here (expected {expected})")]
    WrongScheme {
        /// What the operation needs.
        expected: &'static str,
        /// What it was given.
        found: Scheme,
    },
    /// A legacy scheme was asked to wrap, which only fixtures may do.
    #[error("scheme {0} is legacy: it can only unwrap")]
    LegacyScheme(Scheme),
    /// A public key's bytes are not a valid key for its scheme.
    #[error("invalid public key: {0}")]
    InvalidPublicKey(&'static str),
    /// A private key's bytes are not a valid key for its scheme.
    #[error("invalid private key: {0}")]
    InvalidPrivateKey(&'static str),
    /// An RSA key size rekey does not handle.
    #[error("unsupported RSA key size: {bits} bits (rekey reads 2048 to 4096)")]
    UnsupportedKeySize {
        /// Modulus size.
        bits: usize,
    },
    /// The secret is too long to wrap with this scheme and key.
    #[error("secret of {len} bytes is too long for this scheme (at most {max})")]
    SecretTooLong {
        /// Secret length.
        len: usize,
        /// Longest allowed.
        max: usize,
    },
    /// A malformed envelope.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The underlying library refused an operation that should not fail
    /// (key generation, the random source).
    #[error("crypto library failure: {0}")]
    Library(&'static str),
}
