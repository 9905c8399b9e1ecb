//! The server's key directory: server-held private keys as files, never in
//! the database.
//!
//! - `<fingerprint>.pk8`: a certificate's legacy RSA private key, PKCS#8
//!   DER;
//! - `<fingerprint>.ec`: a new private key, one kind byte (the bundle's
//!   key byte: `01` P-256, `02` P-521, `03` post-quantum hybrid) then the
//!   key's bytes (the big-endian scalar; for a hybrid key the 32-byte
//!   X-Wing seed and the 32-byte P-256 scalar).
//!
//! A fingerprint is the lower-case hex SHA-256 of the public key's
//! encoding (SubjectPublicKeyInfo DER for RSA, uncompressed SEC1 for EC,
//! X-Wing key ‖ SEC1 point for hybrid keys):
//! 64 hex digits, so a file name built from it never leaves the directory.
//! Every file is written through [`crate::files`] (atomic, mode 0600); the
//! directory is created mode 0700.

use crate::error::{Error, Result};
use crate::files;
use rekey_core::{LegacyRsaPrivateKey, NewPrivateKey, PrivateKey, Target};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The extension of a legacy key file.
pub const LEGACY_EXTENSION: &str = "pk8";
/// The extension of a new EC key file.
pub const NEW_EXTENSION: &str = "ec";

/// Whether `s` is a fingerprint (64 lower-case hex digits), so it is safe
/// to use as a file name.
#[must_use]
pub fn is_fingerprint(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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

/// A legacy private key read from a key directory or a backup: its PKCS#8
/// DER, wiped on drop.
pub(crate) struct LoadedKey {
    pub(crate) fingerprint: String,
    /// [`RSA_KIND`] for a legacy RSA key (`der` is PKCS#8 DER, the whole
    /// `.pk8` file); otherwise a new key's target key byte (`der` is what
    /// follows that byte in its `.ec` file).
    pub(crate) kind: u8,
    pub(crate) der: Zeroizing<Vec<u8>>,
}

/// The kind byte of a legacy RSA key in a backup.
pub(crate) const RSA_KIND: u8 = 0;

impl LoadedKey {
    /// Where its file lives in `dir`.
    pub(crate) fn path_in(&self, dir: &KeyDir) -> PathBuf {
        if self.kind == RSA_KIND {
            dir.legacy_key_path(&self.fingerprint)
        } else {
            dir.new_key_path(&self.fingerprint)
        }
    }

    /// Its file's exact content.
    pub(crate) fn file_bytes(&self) -> Zeroizing<Vec<u8>> {
        if self.kind == RSA_KIND {
            self.der.clone()
        } else {
            let mut out = Zeroizing::new(Vec::with_capacity(1 + self.der.len()));
            out.push(self.kind);
            out.extend_from_slice(&self.der);
            out
        }
    }

    /// Parses a key of `kind` from `der` and checks that its public key
    /// has `fingerprint`; `Err(reason)` otherwise.
    pub(crate) fn parse(
        fingerprint: &str,
        kind: u8,
        der: &[u8],
    ) -> std::result::Result<Self, String> {
        let actual = if kind == RSA_KIND {
            LegacyRsaPrivateKey::from_pkcs8_der(der)
                .map_err(|_| "it is not an RSA PKCS#8 private key".to_owned())?
                .public_key()
                .fingerprint()
        } else {
            let target = Target::from_key_byte(kind)
                .ok_or_else(|| format!("its key kind {kind} is unknown"))?;
            NewPrivateKey::from_bytes(target, der)
                .map_err(|_| format!("it is not a {} private key", target.name()))?
                .public_key()
                .fingerprint()
        };
        if actual != fingerprint || !is_fingerprint(&actual) {
            return Err(format!(
                "it is filed under the wrong fingerprint (its own is {actual})"
            ));
        }
        Ok(Self {
            fingerprint: actual,
            kind,
            der: Zeroizing::new(der.to_vec()),
        })
    }
}

impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoadedKey({}, [redacted])", self.fingerprint)
    }
}

/// A key directory.
#[derive(Debug, Clone)]
pub struct KeyDir {
    path: PathBuf,
}

impl KeyDir {
    /// Opens a key directory, creating it (mode 0700) if it is missing:
    /// for the commands that write keys (start, serve, the demo, import).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        files::create_private_dir(&path).map_err(|source| Error::KeyDir {
            path: path.clone(),
            source,
        })?;
        Ok(Self { path })
    }

    /// Opens a key directory that must exist already: for the commands
    /// that only read (preflight, status, backup), so a mistyped path is
    /// refused instead of created.
    pub fn existing(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => Ok(Self { path }),
            Ok(_) => Err(Error::KeyDir {
                source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
                path,
            }),
            Err(source) => Err(Error::KeyDir { path, source }),
        }
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the legacy key with this fingerprint lives.
    #[must_use]
    pub fn legacy_key_path(&self, fingerprint: &str) -> PathBuf {
        self.path.join(format!("{fingerprint}.{LEGACY_EXTENSION}"))
    }

    pub(crate) fn new_key_path(&self, fingerprint: &str) -> PathBuf {
        self.path.join(format!("{fingerprint}.{NEW_EXTENSION}"))
    }

    /// Reads a file; `None` when it is not there.
    fn read(&self, path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(Zeroizing::new(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::File {
                action: "read the key file",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Reads and checks the legacy key filed under `fingerprint`: it must
    /// parse and its public key must have that fingerprint.
    pub(crate) fn read_legacy(&self, fingerprint: &str) -> Result<LoadedKey, KeyFileState> {
        if !is_fingerprint(fingerprint) {
            return Err(KeyFileState::Unusable(
                "the vault's fingerprint is not 64 hex digits".to_owned(),
            ));
        }
        let path = self.legacy_key_path(fingerprint);
        let der = match self.read(&path) {
            Ok(Some(der)) => der,
            Ok(None) => return Err(KeyFileState::Missing),
            Err(e) => return Err(KeyFileState::Unusable(e.to_string())),
        };
        let key = LegacyRsaPrivateKey::from_pkcs8_der(&der).map_err(|_| {
            KeyFileState::Unusable(format!(
                "{} is not an RSA PKCS#8 private key",
                path.display()
            ))
        })?;
        let found = key.public_key().fingerprint();
        if found != fingerprint {
            return Err(KeyFileState::Unusable(format!(
                "{} holds the key of another certificate ({found})",
                path.display()
            )));
        }
        Ok(LoadedKey {
            fingerprint: found,
            kind: RSA_KIND,
            der,
        })
    }

    /// Reads and checks the key filed under `fingerprint`, legacy
    /// (`.pk8`) or new (`.ec`): what a backup holds.
    pub(crate) fn read_any(&self, fingerprint: &str) -> Result<LoadedKey, KeyFileState> {
        match self.read_legacy(fingerprint) {
            Err(KeyFileState::Missing) => {}
            other => return other,
        }
        let path = self.new_key_path(fingerprint);
        let bytes = match self.read(&path) {
            Ok(Some(b)) => b,
            Ok(None) => return Err(KeyFileState::Missing),
            Err(e) => return Err(KeyFileState::Unusable(e.to_string())),
        };
        let Some((&kind, der)) = bytes.split_first() else {
            return Err(KeyFileState::Unusable(format!(
                "{} is empty",
                path.display()
            )));
        };
        if kind == RSA_KIND {
            return Err(KeyFileState::Unusable(format!(
                "{} does not start with a key kind",
                path.display()
            )));
        }
        LoadedKey::parse(fingerprint, kind, der)
            .map_err(|why| KeyFileState::Unusable(format!("{}: {why}", path.display())))
    }

    /// What the directory holds for the certificate with this fingerprint.
    #[must_use]
    pub fn check_legacy(&self, fingerprint: &str) -> KeyFileState {
        match self.read_legacy(fingerprint) {
            Ok(_) => KeyFileState::Present,
            Err(state) => state,
        }
    }

    /// The legacy RSA key with this fingerprint; `None` if no file is
    /// there, an error if the file is damaged or holds another key.
    pub fn legacy_key(&self, fingerprint: &str) -> Result<Option<LegacyRsaPrivateKey>> {
        match self.read_legacy(fingerprint) {
            Ok(loaded) => LegacyRsaPrivateKey::from_pkcs8_der(&loaded.der)
                .map(Some)
                .map_err(|_| self.bad_file(self.legacy_key_path(fingerprint))),
            Err(KeyFileState::Missing) => Ok(None),
            Err(_) => Err(self.bad_file(self.legacy_key_path(fingerprint))),
        }
    }

    /// What the directory holds for the certificate with this fingerprint,
    /// of either kind: an RSA key before a vault's first migration, or the
    /// key a migration stored (the legacy key when the vault migrates
    /// again).
    #[must_use]
    pub fn check_any(&self, fingerprint: &str) -> KeyFileState {
        match self.read_any(fingerprint) {
            Ok(_) => KeyFileState::Present,
            Err(state) => state,
        }
    }

    /// The private key with this fingerprint, of either kind (see
    /// [`Self::check_any`]); `None` if no file is there, an error if the
    /// file is damaged or holds another key.
    pub fn private_key(&self, fingerprint: &str) -> Result<Option<PrivateKey>> {
        if let Some(k) = self.legacy_key(fingerprint)? {
            return Ok(Some(PrivateKey::Rsa(k)));
        }
        Ok(self.new_key(fingerprint)?.map(PrivateKey::from))
    }

    /// Whether a usable legacy key with this fingerprint is there.
    #[must_use]
    pub fn has_legacy_key(&self, fingerprint: &str) -> bool {
        self.check_legacy(fingerprint) == KeyFileState::Present
    }

    /// Stores a legacy key; returns its fingerprint.
    pub fn store_legacy_key(&self, key: &LegacyRsaPrivateKey) -> Result<String> {
        let fp = key.public_key().fingerprint();
        let path = self.legacy_key_path(&fp);
        files::write_private(&path, key.dangerous_pkcs8_der()).map_err(|source| Error::File {
            action: "write the key file",
            path,
            source,
        })?;
        Ok(fp)
    }

    /// The new key with this fingerprint, if present.
    pub fn new_key(&self, fingerprint: &str) -> Result<Option<NewPrivateKey>> {
        if !is_fingerprint(fingerprint) {
            return Ok(None);
        }
        let path = self.new_key_path(fingerprint);
        let Some(bytes) = self.read(&path)? else {
            return Ok(None);
        };
        let Some(target) = bytes.first().copied().and_then(Target::from_key_byte) else {
            return Err(self.bad_file(path));
        };
        let key = NewPrivateKey::from_bytes(target, &bytes[1..])
            .map_err(|_| self.bad_file(path.clone()))?;
        if key.public_key().fingerprint() != fingerprint {
            return Err(self.bad_file(path));
        }
        Ok(Some(key))
    }

    /// Stores a new key; returns its fingerprint.
    pub fn store_new_key(&self, key: &NewPrivateKey) -> Result<String> {
        let fp = key.public_key().fingerprint();
        let secret = key.dangerous_to_bytes();
        let mut bytes = Zeroizing::new(Vec::with_capacity(1 + secret.len()));
        bytes.push(key.target().key_byte());
        bytes.extend_from_slice(secret.dangerous_as_bytes());
        let path = self.new_key_path(&fp);
        files::write_private(&path, &bytes).map_err(|source| Error::File {
            action: "write the key file",
            path,
            source,
        })?;
        Ok(fp)
    }

    /// The fingerprints of every key file in the directory (legacy and
    /// new), sorted: what a server reports it holds. Files that are not
    /// key files are ignored.
    #[must_use]
    pub fn fingerprints(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return Vec::new();
        };
        let mut out: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_owned();
                let (stem, ext) = name.rsplit_once('.')?;
                ((ext == LEGACY_EXTENSION || ext == NEW_EXTENSION) && is_fingerprint(stem))
                    .then(|| stem.to_owned())
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn bad_file(&self, path: PathBuf) -> Error {
        Error::BadKeyFile { path }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    const RSA: &[u8] = include_bytes!("../../rekey-core/tests/fixtures/rsa-2048-c.pk8");

    #[test]
    fn keys_round_trip_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let kd = KeyDir::open(dir.path().join("keys")).unwrap();
        let rsa = LegacyRsaPrivateKey::from_pkcs8_der(RSA).unwrap();
        let fp = kd.store_legacy_key(&rsa).unwrap();
        assert!(kd.has_legacy_key(&fp));
        assert_eq!(
            kd.legacy_key(&fp).unwrap().unwrap().public_key(),
            rsa.public_key()
        );
        assert!(kd.legacy_key(&"0".repeat(64)).unwrap().is_none());
        for target in Target::ALL {
            let key = NewPrivateKey::generate(target, &mut OsRng).unwrap();
            let fp = kd.store_new_key(&key).unwrap();
            assert_eq!(
                kd.new_key(&fp).unwrap().unwrap().public_key(),
                key.public_key()
            );
        }
        let ec = NewPrivateKey::generate(Target::HpkeP256, &mut OsRng).unwrap();
        let fp = kd.store_new_key(&ec).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(kd.new_key_path(&fp))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A file whose content does not match its name is refused.
        let other = "f".repeat(64);
        std::fs::copy(kd.new_key_path(&fp), kd.new_key_path(&other)).unwrap();
        assert!(matches!(kd.new_key(&other), Err(Error::BadKeyFile { .. })));
        // Both files are listed, once each, and stray files are not.
        std::fs::write(dir.path().join("keys/notes.txt"), b"x").unwrap();
        let listed = kd.fingerprints();
        assert!(listed.contains(&fp) && listed.contains(&other));
        // The legacy key, one new key per target, `ec` and its copy.
        assert_eq!(listed.len(), 1 + Target::ALL.len() + 2);
        // Names that are not fingerprints never reach the file system.
        assert!(kd.new_key("../../etc/passwd").unwrap().is_none());
        assert!(matches!(kd.check_legacy("../x"), KeyFileState::Unusable(_)));
    }

    #[test]
    fn a_legacy_file_holding_another_key_is_unusable() {
        let dir = tempfile::tempdir().unwrap();
        let kd = KeyDir::open(dir.path()).unwrap();
        let rsa = LegacyRsaPrivateKey::from_pkcs8_der(RSA).unwrap();
        let fp = kd.store_legacy_key(&rsa).unwrap();
        let other = "a".repeat(64);
        std::fs::copy(kd.legacy_key_path(&fp), kd.legacy_key_path(&other)).unwrap();
        assert!(matches!(
            kd.check_legacy(&other),
            KeyFileState::Unusable(why) if why.contains("another certificate")
        ));
        assert!(matches!(
            kd.legacy_key(&other),
            Err(Error::BadKeyFile { .. })
        ));
        std::fs::write(kd.legacy_key_path(&other), b"junk").unwrap();
        assert!(matches!(kd.check_legacy(&other), KeyFileState::Unusable(_)));
        assert_eq!(kd.check_legacy(&"b".repeat(64)), KeyFileState::Missing);
    }

    #[test]
    fn reading_commands_do_not_create_a_mistyped_directory() {
        let dir = tempfile::tempdir().unwrap();
        let typo = dir.path().join("kyes");
        assert!(matches!(KeyDir::existing(&typo), Err(Error::KeyDir { .. })));
        assert!(!typo.exists());
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(KeyDir::existing(&file).is_err());
        assert!(KeyDir::existing(dir.path()).is_ok());
    }

    #[test]
    fn fingerprints_are_64_lower_hex_digits() {
        let fp = LegacyRsaPrivateKey::from_pkcs8_der(RSA)
            .unwrap()
            .public_key()
            .fingerprint();
        assert!(is_fingerprint(&fp));
        assert!(!is_fingerprint(&fp.to_uppercase()));
        assert!(!is_fingerprint("../etc/passwd"));
    }
}
