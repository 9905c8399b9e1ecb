//! The crate's one error type. Messages speak the administrator's terms
//! and never hold a passphrase, a token or key material.

/// Anything preparation or token renewal can fail with. Nothing is written
/// when one of these is returned (see each operation for the exact
/// guarantee).
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
    /// No directory-sync profile has this name.
    #[error("no directory-sync profile is named {name:?}; `rekey preflight` lists the profiles")]
    UnknownDirectoryProfile {
        /// The name asked for.
        name: String,
    },
    /// No user has this name.
    #[error(
        "no user is named {name:?}; `rekey preflight` lists the users that block the migration"
    )]
    UnknownUser {
        /// The name asked for.
        name: String,
    },
    /// A purge or restore while the migration runs (the vault is read-only
    /// then; the guards refuse the write anyway).
    #[error("{name} cannot be purged or restored now: the migration has started (phase {phase})")]
    MigrationStarted {
        /// The user.
        name: String,
        /// The phase.
        phase: String,
    },
    /// The user's status does not allow the remedy (purging an active
    /// user, restoring one that is not deactivated or deleted).
    #[error("{name} is {status}: {why}")]
    WrongUserStatus {
        /// The user.
        name: String,
        /// Its status.
        status: String,
        /// What the remedy needs.
        why: &'static str,
    },
    /// Purging would leave records nobody can read.
    #[error(
        "purging {name} would leave {count} record(s) that nobody else can read (first: {first}); reshare them first, or purge with --force to lose them (they are listed in the audit log)"
    )]
    WouldOrphanRecords {
        /// The user.
        name: String,
        /// How many records.
        count: usize,
        /// The first few, by id.
        first: String,
    },
    /// No registered device has this id.
    #[error("no device has the id {id:?}; `rekey preflight` lists the devices")]
    UnknownDevice {
        /// The id asked for.
        id: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
