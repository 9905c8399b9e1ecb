//! What the command line tells a person when something fails: the error,
//! a hint, and a distinct exit code (documented in README.md).

use rekey_engine::EngineError;

/// Exit codes.
pub(crate) mod code {
    /// Something unexpected.
    pub(crate) const OTHER: u8 = 1;
    /// A guard refused: wrong code word, users pending, wrong phase.
    pub(crate) const REFUSED: u8 = 3;
    /// The vault changed meanwhile: run again.
    pub(crate) const CONFLICT: u8 = 4;
    /// The database cannot be used (unreachable, not a rekey vault, …).
    pub(crate) const DATABASE: u8 = 5;
    /// Unknown user or wrong password.
    pub(crate) const CREDENTIALS: u8 = 6;
    /// Verification found a user who cannot read what it should.
    pub(crate) const VERIFY_FAILED: u8 = 7;
    /// Files: key directory, key cache, credentials.
    pub(crate) const FILES: u8 = 8;
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Refused(String),
    #[error("verification failed: {0}")]
    VerifyFailed(String),
    #[error("{0}")]
    Io(String),
    /// One user's login failed during `login-all`: the user's name in
    /// front of the error, whose exit code and hint it keeps.
    #[error("{user}: {source}")]
    ForUser { user: String, source: Box<CliError> },
}

impl CliError {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Engine(e) => match e {
                EngineError::Storage(s) => match s {
                    rekey_storage::Error::ReadOnly => code::REFUSED,
                    rekey_storage::Error::Conflict { .. }
                    | rekey_storage::Error::PhaseConflict { .. } => code::CONFLICT,
                    _ => code::DATABASE,
                },
                EngineError::Transition(_) | EngineError::WrongPhase { .. } => code::REFUSED,
                e if e.is_conflict() => code::CONFLICT,
                EngineError::UnknownUser(_) | EngineError::NotE2ee(_) => code::CREDENTIALS,
                EngineError::Build(rekey_core::bundle::BuildError::WrongMasterSecret) => {
                    code::CREDENTIALS
                }
                EngineError::KeyDir { .. }
                | EngineError::BadKeyFile { .. }
                | EngineError::KeyCache { .. }
                | EngineError::Credentials { .. }
                | EngineError::CredentialsMismatch => code::FILES,
                _ => code::OTHER,
            },
            CliError::Refused(_) => code::REFUSED,
            CliError::VerifyFailed(_) => code::VERIFY_FAILED,
            CliError::Io(_) => code::FILES,
            CliError::ForUser { source, .. } => source.exit_code(),
        }
    }

    pub(crate) fn hint(&self) -> Option<&'static str> {
        match self {
            CliError::ForUser { source, .. } => return source.hint(),
            CliError::Engine(EngineError::Storage(rekey_storage::Error::SchemaOutdated {
                ..
            })) => {
                return Some(
                    "`rekey init` upgrades the vault in place and keeps its data (a migration in progress carries on)",
                );
            }
            _ => {}
        }
        match self.exit_code() {
            code::DATABASE => {
                Some("check --db (or REKEY_DATABASE_URL); `rekey init` creates a new vault")
            }
            code::CONFLICT => Some("the vault changed meanwhile; run the command again"),
            code::CREDENTIALS => {
                Some("check the user name and password (`rekey status` lists pending users)")
            }
            code::REFUSED => Some("`rekey status` shows the phase and what is pending"),
            code::FILES => Some("check the paths and their permissions"),
            code::VERIFY_FAILED => Some("run `rekey status` and look at the non-migratable grants"),
            _ => None,
        }
    }
}
