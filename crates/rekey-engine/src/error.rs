//! The engine's errors, in the operator's terms.

use rekey_core::bundle::wire::WireError;
use rekey_core::bundle::{BuildError, CheckError};
use rekey_core::lifecycle::TransitionError;
use rekey_core::model::Phase;
use rekey_core::{CryptoError, EnvelopeError};

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
    /// `start --target-scheme` on a run started with another target.
    #[error(
        "the migration in progress moves keys to {run}; {asked} can only be chosen when a migration starts"
    )]
    TargetChanged {
        /// The run's target.
        run: rekey_core::Target,
        /// The target asked for.
        asked: rekey_core::Target,
    },
    /// No such principal.
    #[error("no principal with id {0}")]
    UnknownPrincipal(String),
    /// Preflight could not run.
    #[error(transparent)]
    Preflight(#[from] rekey_preflight::Error),
    /// The key directory or a certificate backup failed.
    #[error(transparent)]
    Keys(#[from] rekey_keys::Error),
    /// The operation needs the server's key directory and the engine has
    /// none.
    #[error("{0} needs the key directory (--key-dir)")]
    NoKeyDir(&'static str),
    /// A non-migratable grant can only be resolved as reshared or
    /// written off.
    #[error("`{}` does not resolve a non-migratable grant; use reshared or written_off", .0.as_str())]
    BadResolution(rekey_core::model::Resolution),
    /// A role receipt was refused: what was wrong with it.
    #[error("role receipt refused: {0}")]
    ReceiptRefused(&'static str),
    /// The login authenticator does not match (or the account has no
    /// login): the same answer either way.
    #[error("wrong credentials")]
    BadCredentials,
    /// A session token was refused.
    #[error(transparent)]
    Session(rekey_core::auth::TokenError),
    /// The vault holds inconsistent data.
    #[error("the vault is inconsistent: {0}")]
    Inconsistent(String),
    /// An internal invariant failed.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The fleet file cannot be used.
    #[error("fleet file {}: {reason}", path.display())]
    FleetFile {
        /// Where it is.
        path: std::path::PathBuf,
        /// What is wrong, naming the entry.
        reason: String,
    },
    /// One vault of a fleet failed.
    #[error("vault {name}: {source}")]
    InVault {
        /// The vault's name in the fleet file.
        name: String,
        /// What went wrong there.
        source: Box<EngineError>,
    },
}
