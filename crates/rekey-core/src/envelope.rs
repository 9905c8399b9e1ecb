//! The wrapped-key envelope: `magic ‖ version ‖ scheme ‖ body`.
//!
//! An [`Envelope`] keeps the exact bytes it was parsed from; its accessors
//! slice them according to the scheme, whose lengths were checked by
//! [`Envelope::parse`]. The parser is total: any byte string yields an
//! envelope or an [`EnvelopeError`], never a panic. Layout: docs/FORMAT.md.

use crate::error::EnvelopeError;
use serde::{Deserialize, Serialize};

/// The two magic bytes every envelope starts with: ASCII `rk`.
pub const MAGIC: [u8; 2] = *b"rk";
/// The envelope format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Length of the fixed header: magic, version, scheme.
pub const HEADER_LEN: usize = 4;
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Longest secret any envelope carries (a legacy RSA-4096 PKCS#8 private key
/// is about 2.4 KB).
pub const MAX_SECRET_LEN: usize = 8192;
/// Shortest and longest RSA ciphertexts (1024- to 8192-bit moduli) the parser
/// accepts; which sizes a key actually has is checked when unwrapping.
pub const RSA_CT_RANGE: std::ops::RangeInclusive<usize> = 128..=1024;

/// How a secret is wrapped. The numeric ids are part of the format.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Scheme {
    /// Legacy RSA-OAEP, SHA-1 and MGF1-SHA-1 (unwrap only).
    #[serde(rename = "rsa-oaep-sha1")]
    RsaOaepSha1,
    /// Legacy RSA-OAEP, SHA-256 and MGF1-SHA-256 (unwrap only).
    #[serde(rename = "rsa-oaep-sha256")]
    RsaOaepSha256,
    /// Legacy RSA-OAEP, SHA-256 with MGF1-SHA-1: Java's
    /// `OAEPWithSHA-256AndMGF1Padding` (unwrap only).
    #[serde(rename = "rsa-oaep-sha256-mgf1sha1")]
    RsaOaepSha256Mgf1Sha1,
    /// RFC 9180 HPKE base mode, DHKEM(P-256, HKDF-SHA256), HKDF-SHA256,
    /// AES-256-GCM; one encapsulation per grant.
    #[serde(rename = "hpke-p256-sha256-aes256gcm")]
    HpkeP256,
    /// The batch form of the same suite: one encapsulation per recipient
    /// per bundle, each grant's key from the HPKE exporter.
    #[serde(rename = "hpke-p256-sha256-aes256gcm-export")]
    HpkeP256Export,
    /// RFC 9180 HPKE base mode, DHKEM(P-521, HKDF-SHA512), HKDF-SHA512,
    /// AES-256-GCM.
    #[serde(rename = "hpke-p521-sha512-aes256gcm")]
    HpkeP521,
    /// The batch form of the P-521 suite.
    #[serde(rename = "hpke-p521-sha512-aes256gcm-export")]
    HpkeP521Export,
    /// HPKE base mode with the post-quantum hybrid KEM MLKEM768-X25519
    /// ("X-Wing", KEM 0x647a, draft-ietf-hpke-pq), HKDF-SHA256,
    /// AES-256-GCM; one encapsulation per grant.
    #[serde(rename = "hpke-mlkem768-x25519-sha256-aes256gcm")]
    HpkeMlKem768X25519,
    /// The batch form of the X-Wing suite. Every grant repeats its batch's
    /// 1,120-byte `enc`, as the elliptic-curve batch schemes do.
    #[serde(rename = "hpke-mlkem768-x25519-sha256-aes256gcm-export")]
    HpkeMlKem768X25519Export,
    /// A private key under its owner's key-encryption key: AES-256-GCM,
    /// 96-bit random nonce.
    #[serde(rename = "aes256gcm-kek")]
    Aes256GcmKek,
}

impl Scheme {
    /// Every scheme, in id order.
    pub const ALL: [Scheme; 10] = [
        Scheme::RsaOaepSha1,
        Scheme::RsaOaepSha256,
        Scheme::RsaOaepSha256Mgf1Sha1,
        Scheme::HpkeP256,
        Scheme::HpkeP256Export,
        Scheme::HpkeP521,
        Scheme::HpkeP521Export,
        Scheme::HpkeMlKem768X25519,
        Scheme::HpkeMlKem768X25519Export,
        Scheme::Aes256GcmKek,
    ];

    /// The scheme's id byte.
    #[must_use]
    pub fn id(self) -> u8 {
        match self {
            Scheme::RsaOaepSha1 => 0x01,
            Scheme::RsaOaepSha256 => 0x02,
            Scheme::RsaOaepSha256Mgf1Sha1 => 0x03,
            Scheme::HpkeP256 => 0x10,
            Scheme::HpkeP256Export => 0x11,
            Scheme::HpkeP521 => 0x12,
            Scheme::HpkeP521Export => 0x13,
            Scheme::HpkeMlKem768X25519 => 0x14,
            Scheme::HpkeMlKem768X25519Export => 0x15,
            Scheme::Aes256GcmKek => 0x20,
        }
    }

    /// The scheme for an id byte.
    #[must_use]
    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The scheme's name, as used in the database, JSON and the docs.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Scheme::RsaOaepSha1 => "rsa-oaep-sha1",
            Scheme::RsaOaepSha256 => "rsa-oaep-sha256",
            Scheme::RsaOaepSha256Mgf1Sha1 => "rsa-oaep-sha256-mgf1sha1",
            Scheme::HpkeP256 => "hpke-p256-sha256-aes256gcm",
            Scheme::HpkeP256Export => "hpke-p256-sha256-aes256gcm-export",
            Scheme::HpkeP521 => "hpke-p521-sha512-aes256gcm",
            Scheme::HpkeP521Export => "hpke-p521-sha512-aes256gcm-export",
            Scheme::HpkeMlKem768X25519 => "hpke-mlkem768-x25519-sha256-aes256gcm",
            Scheme::HpkeMlKem768X25519Export => "hpke-mlkem768-x25519-sha256-aes256gcm-export",
            Scheme::Aes256GcmKek => "aes256gcm-kek",
        }
    }

    /// The scheme for a name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Legacy RSA schemes: rekey reads them and writes them only to legacy
    /// members still pending migration (and in fixtures).
    #[must_use]
    pub fn is_legacy(self) -> bool {
        matches!(
            self,
            Scheme::RsaOaepSha1 | Scheme::RsaOaepSha256 | Scheme::RsaOaepSha256Mgf1Sha1
        )
    }

    /// HPKE schemes (single or batch, elliptic-curve or post-quantum
    /// hybrid): the new grants.
    #[must_use]
    pub fn is_hpke(self) -> bool {
        self.enc_len().is_some()
    }

    /// Length of the HPKE `enc` field, for HPKE schemes.
    #[must_use]
    pub fn enc_len(self) -> Option<usize> {
        match self {
            Scheme::HpkeP256 | Scheme::HpkeP256Export => Some(65),
            Scheme::HpkeP521 | Scheme::HpkeP521Export => Some(133),
            Scheme::HpkeMlKem768X25519 | Scheme::HpkeMlKem768X25519Export => Some(1120),
            _ => None,
        }
    }

    /// Whether this is a batch (exporter) scheme.
    #[must_use]
    pub fn is_export(self) -> bool {
        matches!(
            self,
            Scheme::HpkeP256Export | Scheme::HpkeP521Export | Scheme::HpkeMlKem768X25519Export
        )
    }

    /// Bytes before the AEAD ciphertext: `enc` and/or a nonce.
    fn prefix_len(self) -> usize {
        match self {
            Scheme::HpkeP256 | Scheme::HpkeP521 | Scheme::HpkeMlKem768X25519 => {
                self.enc_len().unwrap_or(0)
            }
            Scheme::HpkeP256Export | Scheme::HpkeP521Export | Scheme::HpkeMlKem768X25519Export => {
                self.enc_len().unwrap_or(0) + NONCE_LEN
            }
            Scheme::Aes256GcmKek => NONCE_LEN,
            _ => 0,
        }
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Scheme {
    type Err = EnvelopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or(EnvelopeError::UnknownScheme(0))
    }
}

/// One wrapped secret. Holds its exact encoded bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Envelope {
    scheme: Scheme,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("scheme", &self.scheme)
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl Envelope {
    /// The header bytes for a scheme.
    #[must_use]
    pub fn header(scheme: Scheme) -> [u8; HEADER_LEN] {
        [MAGIC[0], MAGIC[1], VERSION, scheme.id()]
    }

    /// Parses an envelope. Total: every input gives a value or an error.
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() < HEADER_LEN {
            return Err(EnvelopeError::TooShortForHeader { len: bytes.len() });
        }
        if bytes[0..2] != MAGIC {
            return Err(EnvelopeError::BadMagic);
        }
        if bytes[2] != VERSION {
            return Err(EnvelopeError::UnsupportedVersion(bytes[2]));
        }
        let scheme = Scheme::from_id(bytes[3]).ok_or(EnvelopeError::UnknownScheme(bytes[3]))?;
        check_body(scheme, bytes.len() - HEADER_LEN)?;
        Ok(Self {
            scheme,
            bytes: bytes.to_vec(),
        })
    }

    /// Builds an envelope from its parts (`prefix` is `enc` and/or the
    /// nonce, `ciphertext` the rest), checking lengths as the parser does.
    pub fn from_parts(
        scheme: Scheme,
        prefix: &[u8],
        ciphertext: &[u8],
    ) -> Result<Self, EnvelopeError> {
        if prefix.len() != scheme.prefix_len() {
            return Err(EnvelopeError::BadBodyLength {
                scheme,
                len: prefix.len() + ciphertext.len(),
                expected: body_rule(scheme),
            });
        }
        check_body(scheme, prefix.len() + ciphertext.len())?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + prefix.len() + ciphertext.len());
        bytes.extend_from_slice(&Self::header(scheme));
        bytes.extend_from_slice(prefix);
        bytes.extend_from_slice(ciphertext);
        Ok(Self { scheme, bytes })
    }

    /// The scheme named in the header.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The complete encoding, exactly as parsed or built.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The complete encoding, by value.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The 4 header bytes (used as AEAD associated data).
    #[must_use]
    pub fn header_bytes(&self) -> &[u8] {
        &self.bytes[..HEADER_LEN]
    }

    /// HPKE `enc` for HPKE schemes, empty otherwise.
    #[must_use]
    pub fn enc(&self) -> &[u8] {
        let n = self.scheme.enc_len().unwrap_or(0);
        &self.bytes[HEADER_LEN..HEADER_LEN + n]
    }

    /// The AEAD nonce for export and KEK schemes, empty otherwise.
    #[must_use]
    pub fn nonce(&self) -> &[u8] {
        let start = HEADER_LEN + self.scheme.enc_len().unwrap_or(0);
        &self.bytes[start..HEADER_LEN + self.scheme.prefix_len()]
    }

    /// The ciphertext: RSA ciphertext, or AEAD ciphertext with its tag.
    #[must_use]
    pub fn ciphertext(&self) -> &[u8] {
        &self.bytes[HEADER_LEN + self.scheme.prefix_len()..]
    }
}

fn body_rule(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::RsaOaepSha1 | Scheme::RsaOaepSha256 | Scheme::RsaOaepSha256Mgf1Sha1 => {
            "an RSA ciphertext of 128 to 1024 bytes"
        }
        Scheme::HpkeP256 => "65-byte enc, then a ciphertext of 16 to 8208 bytes",
        Scheme::HpkeP521 => "133-byte enc, then a ciphertext of 16 to 8208 bytes",
        Scheme::HpkeP256Export => "65-byte enc, 12-byte nonce, then 16 to 8208 bytes",
        Scheme::HpkeP521Export => "133-byte enc, 12-byte nonce, then 16 to 8208 bytes",
        Scheme::HpkeMlKem768X25519 => "1120-byte enc, then a ciphertext of 16 to 8208 bytes",
        Scheme::HpkeMlKem768X25519Export => "1120-byte enc, 12-byte nonce, then 16 to 8208 bytes",
        Scheme::Aes256GcmKek => "12-byte nonce, then a ciphertext of 16 to 8208 bytes",
    }
}

fn check_body(scheme: Scheme, len: usize) -> Result<(), EnvelopeError> {
    let ok = if scheme.is_legacy() {
        RSA_CT_RANGE.contains(&len)
    } else {
        let prefix = scheme.prefix_len();
        len >= prefix + TAG_LEN && len <= prefix + TAG_LEN + MAX_SECRET_LEN
    };
    if ok {
        Ok(())
    } else {
        Err(EnvelopeError::BadBodyLength {
            scheme,
            len,
            expected: body_rule(scheme),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_scheme() -> impl Strategy<Value = Scheme> {
        proptest::sample::select(Scheme::ALL.to_vec())
    }

    #[test]
    fn scheme_ids_and_names_are_unique_and_round_trip() {
        for s in Scheme::ALL {
            assert_eq!(Scheme::from_id(s.id()), Some(s));
            assert_eq!(Scheme::from_name(s.name()), Some(s));
            assert_eq!(
                serde_json_name(s),
                format!("\"{}\"", s.name()),
                "serde name must match name()"
            );
        }
    }

    fn serde_json_name(s: Scheme) -> String {
        serde_json::to_string(&s).unwrap()
    }

    #[test]
    fn typed_errors_for_each_defect() {
        assert_eq!(
            Envelope::parse(b"rk"),
            Err(EnvelopeError::TooShortForHeader { len: 2 })
        );
        assert_eq!(Envelope::parse(b"xx\x01\x10"), Err(EnvelopeError::BadMagic));
        assert_eq!(
            Envelope::parse(b"rk\x02\x10"),
            Err(EnvelopeError::UnsupportedVersion(2))
        );
        assert_eq!(
            Envelope::parse(b"rk\x01\x7f"),
            Err(EnvelopeError::UnknownScheme(0x7f))
        );
        assert!(matches!(
            Envelope::parse(b"rk\x01\x10short"),
            Err(EnvelopeError::BadBodyLength {
                scheme: Scheme::HpkeP256,
                len: 5,
                ..
            })
        ));
    }

    #[test]
    fn xwing_envelope_lengths_are_exact() {
        for (scheme, prefix) in [
            (Scheme::HpkeMlKem768X25519, 1120),
            (Scheme::HpkeMlKem768X25519Export, 1120 + NONCE_LEN),
        ] {
            assert_eq!(scheme.prefix_len(), prefix);
            assert!(scheme.is_hpke());
            for body in [prefix + TAG_LEN, prefix + TAG_LEN + MAX_SECRET_LEN] {
                let mut bytes = Envelope::header(scheme).to_vec();
                bytes.resize(HEADER_LEN + body, 0xab);
                let env = Envelope::parse(&bytes).unwrap();
                assert_eq!(env.enc().len(), 1120);
                assert_eq!(env.nonce().len(), prefix - 1120);
                assert_eq!(env.ciphertext().len(), body - prefix);
            }
            for body in [
                0,
                prefix,
                prefix + TAG_LEN - 1,
                prefix + TAG_LEN + MAX_SECRET_LEN + 1,
            ] {
                let mut bytes = Envelope::header(scheme).to_vec();
                bytes.resize(HEADER_LEN + body, 0xab);
                assert_eq!(
                    Envelope::parse(&bytes),
                    Err(EnvelopeError::BadBodyLength {
                        scheme,
                        len: body,
                        expected: body_rule(scheme),
                    })
                );
            }
        }
        assert!(Scheme::HpkeMlKem768X25519Export.is_export());
        assert!(!Scheme::HpkeMlKem768X25519.is_export());
        assert_eq!(Scheme::from_id(0x14), Some(Scheme::HpkeMlKem768X25519));
        assert_eq!(
            Scheme::from_name("hpke-mlkem768-x25519-sha256-aes256gcm-export"),
            Some(Scheme::HpkeMlKem768X25519Export)
        );
    }

    #[test]
    fn ids_ascend_in_all() {
        for pair in Scheme::ALL.windows(2) {
            assert!(pair[0].id() < pair[1].id(), "{pair:?}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Envelope::parse(&bytes);
        }

        #[test]
        fn parse_of_header_plus_noise_never_panics(
            scheme in any_scheme(),
            body in proptest::collection::vec(any::<u8>(), 0..1400),
        ) {
            let mut bytes = Envelope::header(scheme).to_vec();
            bytes.extend_from_slice(&body);
            if let Ok(env) = Envelope::parse(&bytes) {
                prop_assert_eq!(env.as_bytes(), &bytes[..]);
                prop_assert_eq!(env.scheme(), scheme);
            }
        }

        #[test]
        fn build_encode_parse_round_trip(
            scheme in any_scheme(),
            ct_len in 16usize..700,
            seed in any::<u8>(),
        ) {
            let prefix: Vec<u8> = (0..scheme.prefix_len()).map(|i| (i as u8) ^ seed).collect();
            let ct_len = if scheme.is_legacy() { ct_len.max(128) } else { ct_len };
            let ct: Vec<u8> = (0..ct_len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
            let env = Envelope::from_parts(scheme, &prefix, &ct).unwrap();
            let parsed = Envelope::parse(env.as_bytes()).unwrap();
            prop_assert_eq!(&parsed, &env);
            prop_assert_eq!(parsed.scheme(), scheme);
            prop_assert_eq!(parsed.ciphertext(), &ct[..]);
            let mut rebuilt = parsed.enc().to_vec();
            rebuilt.extend_from_slice(parsed.nonce());
            prop_assert_eq!(rebuilt, prefix);
        }
    }
}
