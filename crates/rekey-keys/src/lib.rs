//! rekey-keys: the keys a vault server holds itself. The key directory
//! ([`KeyDir`]: legacy certificate keys and their P-256 successors as
//! files, never in the database), the one writer of owner-only files
//! ([`files`]), and certificate backups: one age file encrypted to a
//! passphrase holding every certificate key of a vault ([`backup`],
//! [`verify`], [`import`]).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod backup;
mod error;
pub mod files;
mod keydir;

pub use backup::{
    BackupOptions, BackupSummary, CERTIFICATE_BACKUP, CERTIFICATE_IMPORT, DEFAULT_WORK_FACTOR,
    ImportSummary, MAX_WORK_FACTOR, Passphrase, backup, backup_with, import, verify,
};
// The backup parsers without a vault or files: for the fuzz targets and
// property tests only.
#[doc(hidden)]
pub use backup::{
    BackupContents, encode_manifest, open_backup_bytes, parse_manifest, seal_backup_bytes,
};
pub use error::{Error, Result};
pub use keydir::{KeyDir, KeyFileState, LEGACY_EXTENSION, NEW_EXTENSION, is_fingerprint};
