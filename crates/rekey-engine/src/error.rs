//! The engine's errors, in the operator's terms.

use rekey_core::bundle::wire::WireError;
use rekey_core::bundle::{BuildError, CheckError};
use rekey_core::lifecycle::TransitionError;
use rekey_core::model::Phase;
use rekey_core::{CryptoError, EnvelopeError};
use std::path::PathBuf;

impl EngineError {
    /// The vault changed under the client: fetch a new package, rebuild.
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        match self {
            EngineError::Bundle(e) => e.is_conflict(),
            EngineError::ApplyConflict(_) => true,
            _ => false,
        }
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The database refused or failed.
    #[error(transparent)]
    Storage(#[from] rekey_storage::Error),
    /// A lifecycle guard refused the transition.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// A bundle was refused.
    #[error("bundle refused: {0}")]
    Bundle(#[from] CheckError),
    /// A bundle's bytes are malformed.
    #[error("malformed bundle: {0}")]
    MalformedBundle(#[from] WireError),
    /// A bundle could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A crypto operation failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A stored envelope is malformed.
    #[error("a stored key is malformed: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The vault is not in a phase where this can happen.
    #[error("the vault is in phase `{actual}`; this needs {expected}")]
    WrongPhase {
        /// What is needed.
        expected: &'static str,
        /// Where the vault is.
        actual: Phase,
    },
    /// The storage refused to apply because the vault changed meanwhile.
    #[error(
        "the vault changed while the bundle was checked ({0}); fetch a new package and rebuild"
    )]
    ApplyConflict(String),
    /// No such user.
    #[error("no user named `{0}` in this vault")]
    UnknownUser(String),
    /// The user's key is not held end-to-end (managed users do not log in
    /// with a password; the server migrates them).
    #[error("`{0}` is a managed user: the server migrates it, it does not log in")]
    NotE2ee(String),
    /// The credentials file belongs to another vault.
    #[error("the credentials file belongs to another vault")]
    CredentialsMismatch,
    /// The credentials file cannot be read or written.
    #[error("credentials file {}: {reason}", path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No such principal.
    #[error("no principal with id {0}")]
    UnknownPrincipal(String),
    /// The key directory failed.
    #[error("key directory {}: {source}", path.display())]
    KeyDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file is not what its name says.
    #[error("key file {} is damaged or does not match its name", path.display())]
    BadKeyFile {
        /// The file.
        path: PathBuf,
    },
    /// The RSA key cache is unusable.
    #[error("key cache {}: {reason}", path.display())]
    KeyCache {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The demo parameters make no sense.
    #[error("invalid demo vault: {0}")]
    BadDemoSpec(&'static str),
    /// The vault holds inconsistent data.
    #[error("the vault is inconsistent: {0}")]
    Inconsistent(String),
    /// An internal invariant failed.
    #[error("internal error: {0}")]
    Internal(&'static str),
}
