//! The crate's one error type. Messages speak the administrator's terms
//! and never hold a passphrase or key material.

use rekey_core::ids::VaultId;
use std::path::PathBuf;

/// Anything preparation, token renewal or a certificate backup can fail
/// with. Nothing is written when one of these is returned (see each
/// operation for the exact guarantee).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The vault failed (unreachable, corrupt, a constraint…).
    #[error("{source}")]
    Storage {
        /// What the storage layer said.
        #[from]
        source: rekey_storage::Error,
    },
    /// The vault has no server-held certificates.
    #[error("the vault has no server-held certificates: there is nothing to back up")]
    NoCertificates,
    /// A certificate's private key is not in the key directory.
    #[error("the private key of certificate {fingerprint} ({owner}) is not in the key directory {}: put it there as {fingerprint}.pk8 (or `rekey cert import` it from an older backup); nothing was written", key_dir.display())]
    MissingKey {
        /// The certificate's fingerprint.
        fingerprint: String,
        /// The service principal it belongs to.
        owner: String,
        /// The key directory looked at.
        key_dir: PathBuf,
    },
    /// A key file is there but cannot be used.
    #[error(
        "the private key of certificate {fingerprint} cannot be used: {reason}; nothing was written"
    )]
    UnusableKey {
        /// The certificate's fingerprint.
        fingerprint: String,
        /// Why (no key material).
        reason: String,
    },
    /// The passphrase is empty.
    #[error("the backup passphrase is empty; choose a long passphrase")]
    EmptyPassphrase,
    /// The backup does not decrypt with this passphrase.
    #[error(
        "the backup does not decrypt with this passphrase: the passphrase is wrong (or the file's passphrase block was altered); nothing was written"
    )]
    WrongPassphrase,
    /// The backup file is truncated or altered.
    #[error(
        "the backup file is damaged ({reason}): it was truncated or altered; use another copy; nothing was written"
    )]
    DamagedBackup {
        /// What gave it away.
        reason: String,
    },
    /// The file decrypts but is not a `rekey cert backup` file, or is not
    /// an age passphrase file at all.
    #[error("this is not a backup made by `rekey cert backup` ({reason}); nothing was written")]
    NotABackup {
        /// What gave it away.
        reason: String,
    },
    /// The backup belongs to another vault.
    #[error(
        "this backup belongs to another vault ({found}, this vault is {expected}); use the backup made for this vault; nothing was written"
    )]
    OtherVault {
        /// This vault.
        expected: VaultId,
        /// The vault the backup names.
        found: VaultId,
    },
    /// Importing would replace a different key already in the key
    /// directory.
    #[error("{} already holds a different key for certificate {fingerprint}; move it away first if it is wrong; nothing was written", path.display())]
    KeyFileConflict {
        /// The certificate's fingerprint.
        fingerprint: String,
        /// The existing file.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("could not {action} {}: {source}", path.display())]
    File {
        /// What was being done (`read the backup`, `write the key file`…).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The key directory cannot be opened or created.
    #[error("key directory {}: {source}", path.display())]
    KeyDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file is damaged or holds another key than its name says.
    #[error("key file {} is damaged or does not match its name", path.display())]
    BadKeyFile {
        /// The file.
        path: PathBuf,
    },
    /// Encrypting the backup failed.
    #[error("could not encrypt the backup: {reason}")]
    Encrypt {
        /// What age said.
        reason: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
