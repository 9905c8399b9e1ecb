//! The demo's errors.

use rekey_core::bundle::BuildError;
use rekey_core::{CryptoError, EnvelopeError};
use rekey_engine::EngineError;
use std::path::PathBuf;

/// What went wrong in the demo.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The server refused or could not be reached (logins through
    /// `rekey serve`).
    #[error(transparent)]
    Client(#[from] rekey_client::ClientError),
    /// A bundle could not be built (a wrong password, for one).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A crypto operation failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A generated envelope is malformed.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The key directory failed.
    #[error(transparent)]
    Keys(#[from] rekey_keys::Error),
    /// The demo parameters make no sense.
    #[error("invalid demo vault: {0}")]
    BadSpec(String),
    /// No such user among the demo's credentials or in the vault.
    #[error("no user named `{0}` in this vault")]
    UnknownUser(String),
    /// The user's key is not held end-to-end (managed users do not log in
    /// with a password; the server migrates them).
    #[error("`{0}` is a managed user: the server migrates it, it does not log in")]
    NotE2ee(String),
    /// The credentials file belongs to another vault.
    #[error("the credentials file belongs to another vault")]
    CredentialsMismatch,
    /// A demo file (credentials, key cache, the demo directory) is unusable.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// One user's login failed during a run of logins.
    #[error("{user}: {source}")]
    ForUser {
        /// The user.
        user: String,
        /// What failed.
        source: Box<DemoError>,
    },
    /// An internal invariant failed.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl DemoError {
    pub(crate) fn file(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        DemoError::File {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    /// The vault changed under the client: fetch a new package, rebuild.
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        match self {
            DemoError::Engine(e) => e.is_conflict(),
            DemoError::Client(e) => e.is_conflict(),
            DemoError::ForUser { source, .. } => source.is_conflict(),
            _ => false,
        }
    }
}

impl rekey_client::ApiError for DemoError {
    fn is_conflict(&self) -> bool {
        DemoError::is_conflict(self)
    }

    fn is_already_migrated(&self) -> bool {
        DemoError::is_already_migrated(self)
    }

    fn is_receipt_refused(&self) -> bool {
        match self {
            DemoError::Engine(EngineError::ReceiptRefused(_)) => true,
            DemoError::Client(e) => e.code() == Some("receipt_refused"),
            _ => false,
        }
    }

    fn builder_failed() -> Self {
        DemoError::Internal("the bundle builder failed")
    }
}
