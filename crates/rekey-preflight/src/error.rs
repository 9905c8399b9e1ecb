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
    /// No registered device has this id.
    #[error("no device has the id {id:?}; `rekey preflight` lists the devices")]
    UnknownDevice {
        /// The id asked for.
        id: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
