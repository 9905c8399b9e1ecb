//! Everything the checks look at, loaded once from the vault (and the key
//! directory, and the disk) by the runner. Checks are pure functions of a
//! [`Facts`], so each one is tested with facts built in memory.

use rekey_core::LegacyRsaPublicKey;
use rekey_core::envelope::Envelope;
use rekey_core::ids::PrincipalId;
use rekey_core::model::{
    Certificate, Component, Device, DirectoryProfile, GrantRecord, KeyPairRecord, KeyState,
    Principal, Server, Settings, Timestamp,
};
use rekey_keys::KeyFileState;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The RSA modulus sizes a legacy vault is expected to hold; other sizes
/// that rekey can still read (2048 to 4096 bits) are warned about.
pub const USUAL_RSA_BITS: [usize; 3] = [2048, 3072, 4096];

/// Everything the preparation checks look at.
#[derive(Clone, Debug)]
pub struct Facts {
    /// When the facts were loaded.
    pub now: Timestamp,
    /// When preparation began: directory tokens must be issued after it.
    pub preparation_started_at: Timestamp,
    /// Offline access and mobile sync allowed?
    pub settings: Settings,
    /// Deployed components and their versions.
    pub components: Vec<Component>,
    /// Offline add-ons and mobile apps.
    pub devices: Vec<Device>,
    /// Principal names by id, for evidence.
    pub names: BTreeMap<PrincipalId, String>,
    /// Server-held certificates, with what the key directory holds for
    /// each.
    pub certificates: Vec<CertificateFacts>,
    /// The key directory looked at, if one was given.
    pub key_dir: Option<PathBuf>,
    /// A backup file given to check against the recorded digests.
    pub backup_file: Option<BackupFileFacts>,
    /// Users deactivated or deleted but not purged.
    pub unpurged_users: Vec<Principal>,
    /// Roles no active user belongs to (names): no member will ever log
    /// in to migrate them, and the directory key reaches only roles with a
    /// managed member.
    pub roles_without_active_member: Vec<String>,
    /// Last login of every active e2ee user, if the vault records it
    /// (`None`: it does not, and inactive users are not looked for).
    pub e2ee_logins: Option<Vec<LastLogin>>,
    /// Registered servers and their heartbeats.
    pub servers: Vec<Server>,
    /// Directory-sync profiles.
    pub directory_profiles: Vec<DirectoryProfile>,
    /// What the scan of the legacy grants and keys found.
    pub legacy: LegacyScan,
    /// Where the vault is stored, and the free space there.
    pub storage: StorageFacts,
    /// The target the migration will move keys to (what the disk-space
    /// estimate assumes).
    pub target: rekey_core::Target,
}

impl Facts {
    /// Empty facts at `now` (preparation began at `now`): every check
    /// passes on them. Tests and callers fill in what they have.
    #[must_use]
    pub fn new(now: Timestamp) -> Self {
        Self {
            now,
            preparation_started_at: now,
            settings: Settings::default(),
            components: Vec::new(),
            devices: Vec::new(),
            names: BTreeMap::new(),
            certificates: Vec::new(),
            key_dir: None,
            backup_file: None,
            unpurged_users: Vec::new(),
            roles_without_active_member: Vec::new(),
            e2ee_logins: None,
            servers: Vec::new(),
            directory_profiles: Vec::new(),
            legacy: LegacyScan::default(),
            storage: StorageFacts::Remote {
                backend: "test".to_owned(),
            },
            target: rekey_core::Target::default(),
        }
    }

    /// A principal's name, or its id if unknown.
    #[must_use]
    pub fn name_of(&self, id: PrincipalId) -> String {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }
}

/// One server-held certificate and what the key directory holds for it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CertificateFacts {
    /// The certificate row (fingerprint, recorded backup digest and time).
    pub certificate: Certificate,
    /// The name of the service principal it belongs to.
    pub owner: String,
    /// When the certificate was created, if the vault records it (`None`:
    /// it does not, and "backup newer than the certificate" is taken from
    /// the backup being recorded on this certificate's own row).
    pub created_at: Option<Timestamp>,
    /// What the key directory holds for it.
    pub key_file: KeyFileState,
}

/// A backup file given to preflight, and its SHA-256.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BackupFileFacts {
    /// The file.
    pub path: PathBuf,
    /// Its lower-case hex SHA-256, or why it could not be read.
    pub digest: Result<String, String>,
}

/// When an e2ee user last logged in.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LastLogin {
    /// The user's name.
    pub name: String,
    /// Last login, `None` if never.
    pub at: Option<Timestamp>,
}

/// Where the vault is stored.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StorageFacts {
    /// A SQLite file on this machine.
    SqliteFile {
        /// The database file.
        path: PathBuf,
        /// Bytes free for an unprivileged writer on its file system, or why
        /// that could not be read.
        free_bytes: Result<u64, String>,
    },
    /// An in-memory SQLite database (tests).
    InMemory,
    /// A database server (PostgreSQL, MySQL/MariaDB): its disk is not
    /// visible from here.
    Remote {
        /// Which kind of server.
        backend: String,
    },
}

/// What the scan of legacy grants and key pairs found. Lists hold names
/// and ids, never key material.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct LegacyScan {
    /// Whether this is the material of a completed migration, which a
    /// migrated vault migrating again re-wraps: its current key pairs and
    /// HPKE grants stand where a first migration's RSA ones do.
    pub again: bool,
    /// Principals scanned.
    pub principals: u64,
    /// Legacy grants read.
    pub legacy_grants: u64,
    /// Their total envelope size in bytes.
    pub legacy_grant_bytes: u64,
    /// Principals holding at least one legacy grant.
    pub grantees: u64,
    /// Grants (or a principal's page of grants) the vault could not parse:
    /// `who: what`.
    pub unreadable_grants: Vec<String>,
    /// Legacy grants whose envelope is not a legacy scheme: grant ids.
    pub non_legacy_grants: Vec<String>,
    /// Grantees with no legacy key pair: names.
    pub grantees_without_key: Vec<String>,
    /// Legacy public keys that do not parse: `name: why`.
    pub unreadable_public_keys: Vec<String>,
    /// Legacy RSA keys of an unusual size: `name: N bits`.
    pub unusual_modulus: Vec<String>,
    /// Records that no grant opens (ids), or `None` if the vault cannot
    /// list them.
    pub records_without_grant: Option<Vec<String>>,
}

impl LegacyScan {
    /// Adds what a scan of other principals found (its lists after this
    /// one's, so scanning two halves and absorbing the second into the
    /// first lists everything in the order one scan would).
    pub fn absorb(&mut self, other: LegacyScan) {
        self.principals += other.principals;
        self.legacy_grants += other.legacy_grants;
        self.legacy_grant_bytes += other.legacy_grant_bytes;
        self.grantees += other.grantees;
        self.unreadable_grants.extend(other.unreadable_grants);
        self.non_legacy_grants.extend(other.non_legacy_grants);
        self.grantees_without_key.extend(other.grantees_without_key);
        self.unreadable_public_keys
            .extend(other.unreadable_public_keys);
        self.unusual_modulus.extend(other.unusual_modulus);
        if let Some(more) = other.records_without_grant {
            self.records_without_grant
                .get_or_insert_with(Vec::new)
                .extend(more);
        }
    }

    /// Adds one principal: its key pairs (or why they could not be read),
    /// its legacy grants, and why the rest of its grants could not be read
    /// if so.
    pub fn observe(
        &mut self,
        principal: &Principal,
        key_pairs: Result<&[KeyPairRecord], String>,
        legacy_grants: &[GrantRecord],
        grants_error: Option<String>,
    ) {
        self.principals += 1;
        let name = &principal.name;
        if let Some(why) = grants_error {
            self.unreadable_grants.push(format!("{name}: {why}"));
        }
        for g in legacy_grants {
            self.legacy_grants += 1;
            self.legacy_grant_bytes += g.envelope.as_bytes().len() as u64;
            match Envelope::parse(g.envelope.as_bytes()) {
                Ok(env) if env.scheme().is_legacy() != self.again => {}
                Ok(_) => self.non_legacy_grants.push(g.id.to_string()),
                Err(e) => self.unreadable_grants.push(format!("grant {}: {e}", g.id)),
            }
        }
        let is_grantee = !legacy_grants.is_empty();
        if is_grantee {
            self.grantees += 1;
        }
        let key_pairs = match key_pairs {
            Ok(k) => k,
            Err(why) => {
                self.unreadable_public_keys.push(format!("{name}: {why}"));
                return;
            }
        };
        let mut has_legacy_key = false;
        if self.again {
            // A completed migration's keys: they become the legacy keys.
            for kp in key_pairs.iter().filter(|k| k.state == KeyState::Current) {
                match rekey_core::PublicKey::from_stored(kp.scheme, &kp.public_key) {
                    Ok(_) => has_legacy_key = true,
                    Err(e) => self
                        .unreadable_public_keys
                        .push(format!("{name} (key pair {}): {e}", kp.id)),
                }
            }
        }
        for kp in key_pairs
            .iter()
            .filter(|k| !self.again && k.state == KeyState::Legacy && k.scheme.is_legacy())
        {
            match LegacyRsaPublicKey::from_spki_der(&kp.public_key) {
                Ok(key) => {
                    has_legacy_key = true;
                    if !USUAL_RSA_BITS.contains(&key.bits()) {
                        self.unusual_modulus
                            .push(format!("{name}: {} bits", key.bits()));
                    }
                }
                Err(e) => self
                    .unreadable_public_keys
                    .push(format!("{name} (key pair {}): {e}", kp.id)),
            }
        }
        if is_grantee && !has_legacy_key {
            self.grantees_without_key.push(name.clone());
        }
    }
}
