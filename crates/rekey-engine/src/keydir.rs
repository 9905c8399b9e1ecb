//! The server's key directory: server-held private keys as files, never in
//! the database. `<fingerprint>.pk8` holds a legacy RSA key (PKCS#8 DER);
//! `<fingerprint>.ec` holds a new EC key (curve byte ‖ scalar). A
//! fingerprint is the lowercase hex SHA-256 of the public key's encoding
//! (SPKI DER for RSA, SEC1 for EC). Files are written atomically (temporary
//! file, fsync, rename) with mode 0600.

use crate::error::EngineError;
use rekey_core::{Curve, EcPrivateKey, LegacyRsaPrivateKey};
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// A key directory.
#[derive(Debug, Clone)]
pub struct KeyDir {
    path: PathBuf,
}

impl KeyDir {
    /// Opens (creating if needed, mode 0700) a key directory.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, EngineError> {
        let path = path.into();
        std::fs::create_dir_all(&path).map_err(|e| EngineError::KeyDir {
            path: path.clone(),
            source: e,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700));
        }
        Ok(Self { path })
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, e: std::io::Error) -> EngineError {
        EngineError::KeyDir {
            path: self.path.clone(),
            source: e,
        }
    }

    fn read(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, EngineError> {
        match std::fs::read(self.path.join(name)) {
            Ok(bytes) => Ok(Some(Zeroizing::new(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Writes `name` atomically with mode 0600.
    pub(crate) fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), EngineError> {
        let tmp = self
            .path
            .join(format!(".{name}.tmp-{}", std::process::id()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let result = (|| {
            let mut f = opts.open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.path.join(name))?;
            if let Ok(dir) = std::fs::File::open(&self.path) {
                let _ = dir.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(|e| self.io(e))
    }

    /// The legacy RSA key with this fingerprint, if present.
    pub fn legacy_key(
        &self,
        fingerprint: &str,
    ) -> Result<Option<LegacyRsaPrivateKey>, EngineError> {
        let Some(der) = self.read(&format!("{fingerprint}.pk8"))? else {
            return Ok(None);
        };
        let key =
            LegacyRsaPrivateKey::from_pkcs8_der(&der).map_err(|_| EngineError::BadKeyFile {
                path: self.path.join(format!("{fingerprint}.pk8")),
            })?;
        if key.public_key().fingerprint() != fingerprint {
            return Err(EngineError::BadKeyFile {
                path: self.path.join(format!("{fingerprint}.pk8")),
            });
        }
        Ok(Some(key))
    }

    /// Whether the legacy key with this fingerprint is present.
    #[must_use]
    pub fn has_legacy_key(&self, fingerprint: &str) -> bool {
        self.path.join(format!("{fingerprint}.pk8")).is_file()
    }

    /// Stores a legacy key; returns its fingerprint.
    pub fn store_legacy_key(&self, key: &LegacyRsaPrivateKey) -> Result<String, EngineError> {
        let fp = key.public_key().fingerprint();
        self.write_atomic(&format!("{fp}.pk8"), key.dangerous_pkcs8_der())?;
        Ok(fp)
    }

    /// The new EC key with this fingerprint, if present.
    pub fn new_key(&self, fingerprint: &str) -> Result<Option<EcPrivateKey>, EngineError> {
        let name = format!("{fingerprint}.ec");
        let Some(bytes) = self.read(&name)? else {
            return Ok(None);
        };
        let bad = || EngineError::BadKeyFile {
            path: self.path.join(&name),
        };
        let curve = match bytes.first() {
            Some(1) => Curve::P256,
            Some(2) => Curve::P521,
            _ => return Err(bad()),
        };
        let key = EcPrivateKey::from_scalar_bytes(curve, &bytes[1..]).map_err(|_| bad())?;
        if key.public_key_ref().fingerprint() != fingerprint {
            return Err(bad());
        }
        Ok(Some(key))
    }

    /// Stores a new EC key; returns its fingerprint.
    pub fn store_new_key(&self, key: &EcPrivateKey) -> Result<String, EngineError> {
        let fp = key.public_key_ref().fingerprint();
        let scalar = key.dangerous_to_scalar_bytes();
        let mut bytes = Zeroizing::new(Vec::with_capacity(1 + scalar.len()));
        bytes.push(match key.curve() {
            Curve::P256 => 1,
            Curve::P521 => 2,
        });
        bytes.extend_from_slice(scalar.dangerous_as_bytes());
        self.write_atomic(&format!("{fp}.ec"), &bytes)?;
        Ok(fp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn keys_round_trip_and_files_are_private() {
        let dir = std::env::temp_dir().join(format!("rekey-keydir-{}", uuid::Uuid::new_v4()));
        let kd = KeyDir::open(&dir).unwrap();
        let rsa = LegacyRsaPrivateKey::from_pkcs8_der(include_bytes!(
            "../../rekey-core/tests/fixtures/rsa-2048-c.pk8"
        ))
        .unwrap();
        let fp = kd.store_legacy_key(&rsa).unwrap();
        assert!(kd.has_legacy_key(&fp));
        assert_eq!(
            kd.legacy_key(&fp).unwrap().unwrap().public_key(),
            rsa.public_key()
        );
        assert!(kd.legacy_key("00").unwrap().is_none());
        let ec = EcPrivateKey::generate(Curve::P256, &mut OsRng);
        let fp = kd.store_new_key(&ec).unwrap();
        assert_eq!(
            kd.new_key(&fp).unwrap().unwrap().public_key(),
            ec.public_key()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(format!("{fp}.ec")))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A file whose content does not match its name is refused.
        std::fs::copy(dir.join(format!("{fp}.ec")), dir.join("ffff.ec")).unwrap();
        assert!(matches!(
            kd.new_key("ffff"),
            Err(EngineError::BadKeyFile { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
