//! The server's key directory: one file per certificate, named
//! `<fingerprint>.pk8`, holding the PKCS#8 DER of the certificate's legacy
//! RSA private key. A fingerprint is the lower-case hex SHA-256 of the
//! public key's SubjectPublicKeyInfo DER ([`fingerprint`]).

use rekey_core::LegacyRsaPrivateKey;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The extension of key files in a key directory.
pub const KEY_FILE_EXTENSION: &str = "pk8";

/// A certificate's fingerprint: the lower-case hex SHA-256 of its public
/// key's SubjectPublicKeyInfo DER (64 characters).
#[must_use]
pub fn fingerprint(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

/// Whether `s` looks like a fingerprint (64 lower-case hex digits), so it
/// is safe to use as a file name.
#[must_use]
pub fn is_fingerprint(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Where a certificate's private key lives in a key directory.
#[must_use]
pub fn key_file_path(key_dir: &Path, fingerprint: &str) -> PathBuf {
    key_dir.join(format!("{fingerprint}.{KEY_FILE_EXTENSION}"))
}

/// What a key directory holds for one certificate.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum KeyFileState {
    /// No key directory was given, so nothing was looked at.
    NotChecked,
    /// The file is there, parses, and its public key has the certificate's
    /// fingerprint.
    Present,
    /// No file for this fingerprint.
    Missing,
    /// A file is there but cannot be used (unreadable, not an RSA PKCS#8
    /// key, or the key of another certificate); the reason, without key
    /// material.
    Unusable(String),
}

/// Reads and checks the key file for `fingerprint`: the key must parse and
/// its public key must have that fingerprint.
pub(crate) fn read_key(key_dir: &Path, fingerprint: &str) -> Result<LoadedKey, KeyFileState> {
    if !is_fingerprint(fingerprint) {
        return Err(KeyFileState::Unusable(
            "the vault's fingerprint is not 64 hex digits".to_owned(),
        ));
    }
    let path = key_file_path(key_dir, fingerprint);
    let der = match std::fs::read(&path) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(KeyFileState::Missing),
        Err(e) => {
            return Err(KeyFileState::Unusable(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let key = LegacyRsaPrivateKey::from_pkcs8_der(&der).map_err(|_| {
        KeyFileState::Unusable(format!(
            "{} is not an RSA PKCS#8 private key",
            path.display()
        ))
    })?;
    let found = self::fingerprint(key.public_key().to_spki_der());
    if found != fingerprint {
        return Err(KeyFileState::Unusable(format!(
            "{} holds the key of another certificate ({found})",
            path.display()
        )));
    }
    Ok(LoadedKey {
        fingerprint: found,
        der,
    })
}

/// A private key read from a key directory or a backup: its PKCS#8 DER,
/// wiped on drop.
pub(crate) struct LoadedKey {
    pub(crate) fingerprint: String,
    pub(crate) der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoadedKey({}, [redacted])", self.fingerprint)
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory (mode 0600 on Unix), flushed to disk, then renamed over
/// `path`. On error the temporary file is removed and `path` is untouched.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A temporary file name beside `path`.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut nonce = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    path.with_file_name(format!(".{name}.{}.tmp", hex::encode(nonce)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_lower_hex_sha256() {
        let fp = fingerprint(b"abc");
        assert_eq!(
            fp,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_fingerprint(&fp));
        assert!(!is_fingerprint(&fp.to_uppercase()));
        assert!(!is_fingerprint("../etc/passwd"));
        assert_eq!(
            key_file_path(Path::new("/k"), &fp),
            PathBuf::from(format!("/k/{fp}.pk8"))
        );
    }
}
