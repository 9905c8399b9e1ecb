//! The demo users' passwords, saved beside the demo vault so that logins
//! can be simulated, and what each user must be able to read. Demo only: a
//! real vault never has such a file.

use crate::error::DemoError;
use crate::password::KdfParams;
use rekey_core::{PrincipalId, RecordId, VaultId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The demo's `credentials.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The vault.
    pub vault: VaultId,
    /// The seed the vault was generated from.
    pub seed: u64,
    /// The password KDF's parameters (the vault keeps them too).
    pub kdf: KdfParams,
    /// The e2ee users by name: id, password, what they read.
    pub users: BTreeMap<String, DemoUser>,
}

/// One demo user's login, and what it must be able to read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DemoUser {
    /// The user's id.
    pub id: PrincipalId,
    /// The password.
    pub password: String,
    /// How many records the seed lets it read (directly or via roles).
    pub expected_records: usize,
    /// [`access_digest`] of those records.
    pub expected_digest: String,
}

/// Lower-case hex SHA-256 over the 16-byte ids of the records a user can
/// read, in ascending order.
#[must_use]
pub fn access_digest(records: &BTreeSet<RecordId>) -> String {
    let mut h = Sha256::new();
    for r in records {
        h.update(r.to_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Credentials {
    /// Writes the file (atomically, mode 0600: it holds passwords).
    pub fn save(&self, path: &Path) -> Result<(), DemoError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| DemoError::file(path, e))?;
        rekey_keys::files::write_private(path, &json).map_err(|e| DemoError::file(path, e))
    }

    /// Reads the file.
    pub fn load(path: &Path) -> Result<Self, DemoError> {
        let bytes = std::fs::read(path).map_err(|e| DemoError::file(path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| DemoError::file(path, format!("not a rekey credentials file ({e})")))
    }

    /// The user with this name.
    pub fn user(&self, name: &str) -> Result<&DemoUser, DemoError> {
        self.users
            .get(name)
            .ok_or_else(|| DemoError::UnknownUser(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_through_a_private_file() {
        let dir = std::env::temp_dir().join(format!("rekey-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("credentials.json");
        let mut users = BTreeMap::new();
        users.insert(
            "alice".to_owned(),
            DemoUser {
                id: PrincipalId::from_bytes([1; 16]),
                password: "pw".into(),
                expected_records: 1,
                expected_digest: access_digest(&BTreeSet::from([RecordId::from_bytes([2; 16])])),
            },
        );
        let c = Credentials {
            vault: VaultId::from_bytes([3; 16]),
            seed: 7,
            kdf: KdfParams::LIGHT,
            users,
        };
        c.save(&path).unwrap();
        assert_eq!(Credentials::load(&path).unwrap(), c);
        assert!(matches!(c.user("bob"), Err(DemoError::UnknownUser(_))));
        std::fs::write(&path, b"{}").unwrap();
        assert!(matches!(
            Credentials::load(&path),
            Err(DemoError::File { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_access_digest_depends_on_every_record() {
        let a = BTreeSet::from([RecordId::from_bytes([1; 16])]);
        let b = BTreeSet::from([RecordId::from_bytes([1; 16]), RecordId::from_bytes([2; 16])]);
        assert_ne!(access_digest(&a), access_digest(&b));
        assert_eq!(access_digest(&a).len(), 64);
    }
}
