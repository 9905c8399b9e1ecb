//! What the command line tells a person when something fails: the error,
//! a hint that fits it, and a distinct exit code (documented in
//! README.md). Errors are classified by their type, never by their text.

use rekey_client::ClientError;
use rekey_core::bundle::BuildError;
use rekey_core::lifecycle::TransitionError;
use rekey_demo::DemoError;
use rekey_engine::EngineError;
use rekey_keys::Error as KeysError;
use rekey_server::ServerError;

/// Exit codes.
pub(crate) mod code {
    /// Something unexpected.
    pub(crate) const OTHER: u8 = 1;
    /// Bad arguments (and preflight blocking, by its own report).
    pub(crate) const USAGE: u8 = 2;
    /// A guard refused: wrong code word, users pending, wrong phase,
    /// read-only.
    pub(crate) const REFUSED: u8 = 3;
    /// The vault changed meanwhile: run again.
    pub(crate) const CONFLICT: u8 = 4;
    /// The database cannot be used (unreachable, not a rekey vault, …).
    pub(crate) const DATABASE: u8 = 5;
    /// Unknown user or wrong password.
    pub(crate) const CREDENTIALS: u8 = 6;
    /// Verification found a user who cannot read what it should.
    pub(crate) const VERIFY_FAILED: u8 = 7;
    /// Files: key directory, key cache, credentials, backups.
    pub(crate) const FILES: u8 = 8;
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Demo(#[from] DemoError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// The person's answer or arguments do not allow going on.
    #[error("{0}")]
    Usage(String),
    /// Nothing was done because the person said no.
    #[error("{0}")]
    Declined(String),
    #[error("verification failed: {0}")]
    VerifyFailed(String),
    #[error("{0}")]
    Io(String),
}

/// What went wrong, in the terms the exit codes and hints use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Other,
    Usage,
    Refused,
    PreflightBlocks,
    RolesUnconfirmed,
    Orphans,
    TargetChanged,
    Conflict,
    Database,
    SchemaOutdated,
    Credentials,
    VerifyFailed,
    Files,
    Server,
    Unreachable,
    Fleet,
}

impl CliError {
    fn kind(&self) -> Kind {
        match self {
            CliError::Engine(e) => engine_kind(e),
            CliError::Demo(e) => demo_kind(e),
            CliError::Server(e) if e.is_startup() => match e {
                ServerError::Config(_) => Kind::Usage,
                ServerError::Open(e) | ServerError::OpenVault { source: e, .. } => engine_kind(e),
                _ => Kind::Server,
            },
            CliError::Server(_) => Kind::Other,
            CliError::Client(e) => client_kind(e),
            CliError::Keys(e) => keys_kind(e),
            CliError::Usage(_) => Kind::Usage,
            CliError::Declined(_) => Kind::Refused,
            CliError::VerifyFailed(_) => Kind::VerifyFailed,
            CliError::Io(_) => Kind::Files,
        }
    }

    pub(crate) fn exit_code(&self) -> u8 {
        match self.kind() {
            Kind::Other | Kind::Server => code::OTHER,
            Kind::Usage | Kind::Fleet => code::USAGE,
            Kind::Refused
            | Kind::PreflightBlocks
            | Kind::RolesUnconfirmed
            | Kind::Orphans
            | Kind::TargetChanged => code::REFUSED,
            Kind::Conflict => code::CONFLICT,
            Kind::Database | Kind::SchemaOutdated | Kind::Unreachable => code::DATABASE,
            Kind::Credentials => code::CREDENTIALS,
            Kind::VerifyFailed => code::VERIFY_FAILED,
            Kind::Files => code::FILES,
        }
    }

    pub(crate) fn hint(&self) -> Option<&'static str> {
        let in_vault = matches!(self, CliError::Engine(EngineError::InVault { .. }));
        if in_vault && self.kind() == Kind::Database {
            return Some(
                "check that vault's `db` in the fleet file; `rekey init --vault NAME` creates a new vault",
            );
        }
        Some(match self.kind() {
            Kind::Other => return None,
            Kind::Usage => "see `rekey --help` (and `rekey COMMAND --help`)",
            Kind::Fleet => {
                "fix the entry named in the fleet file (--fleet, default rekey.toml); README's \"Several vaults\" shows its form"
            }
            Kind::Refused => "`rekey status` shows the phase and what is pending",
            Kind::PreflightBlocks => {
                "`rekey preflight` shows the evidence and the remedy of each blocking check"
            }
            Kind::RolesUnconfirmed => {
                "each member named logs in once more (its client checks the role); `rekey waive-role` accepts one who will not; if a client reported that a role does not open, run `rekey abort`"
            }
            Kind::Orphans => {
                "share those records with another user or role in the vault, then purge again; `--force` purges anyway and lists them in the audit log"
            }
            Kind::TargetChanged => {
                "run `rekey start` without --target-scheme to resume the run; to change the target, `rekey abort` (nothing is lost) and start again"
            }
            Kind::Conflict => "the vault changed meanwhile; run the command again",
            Kind::Database => {
                "check --db (or REKEY_DATABASE_URL); `rekey init` creates a new vault"
            }
            Kind::SchemaOutdated => {
                "`rekey init` upgrades the vault in place and keeps its data (a migration in progress carries on)"
            }
            Kind::Credentials => {
                "check the user name and password (`rekey status` lists pending users)"
            }
            Kind::VerifyFailed => "run `rekey status` and look at the non-migratable grants",
            Kind::Files => "check the paths and their permissions",
            Kind::Server => "check the bind address and that the port is free",
            Kind::Unreachable => {
                "check that `rekey serve` runs at --server and answers GET /health"
            }
        })
    }
}

fn engine_kind(e: &EngineError) -> Kind {
    match e {
        EngineError::InVault { source, .. } => engine_kind(source),
        EngineError::FleetFile { .. } => Kind::Fleet,
        EngineError::Storage(s) => storage_kind(s),
        EngineError::Transition(TransitionError::ChecksBlock { .. }) => Kind::PreflightBlocks,
        EngineError::Transition(TransitionError::RoleMembersUnconfirmed { .. }) => {
            Kind::RolesUnconfirmed
        }
        EngineError::ReceiptRefused(_) => Kind::Usage,
        EngineError::Transition(_) | EngineError::WrongPhase { .. } => Kind::Refused,
        e if e.is_conflict() => Kind::Conflict,
        EngineError::Bundle(_) => Kind::Refused,
        EngineError::Build(BuildError::WrongMasterSecret) => Kind::Credentials,
        EngineError::Keys(k) => keys_kind(k),
        EngineError::NoKeyDir(_) => Kind::Files,
        EngineError::BadResolution(_) => Kind::Usage,
        EngineError::TargetChanged { .. } => Kind::TargetChanged,
        EngineError::Preflight(rekey_preflight::Error::Storage { source }) => storage_kind(source),
        EngineError::Preflight(rekey_preflight::Error::WouldOrphanRecords { .. }) => Kind::Orphans,
        EngineError::Preflight(
            rekey_preflight::Error::MigrationStarted { .. }
            | rekey_preflight::Error::WrongUserStatus { .. },
        ) => Kind::Refused,
        EngineError::Preflight(_) | EngineError::UnknownPrincipal(_) => Kind::Usage,
        _ => Kind::Other,
    }
}

fn storage_kind(s: &rekey_storage::Error) -> Kind {
    use rekey_storage::Error as S;
    match s {
        S::ReadOnly | S::WrongPhase { .. } => Kind::Refused,
        S::Conflict { .. } | S::PhaseConflict { .. } => Kind::Conflict,
        S::SchemaOutdated { .. } => Kind::SchemaOutdated,
        S::NotFound { .. } => Kind::Usage,
        _ => Kind::Database,
    }
}

fn keys_kind(e: &KeysError) -> Kind {
    match e {
        KeysError::Storage { source } => storage_kind(source),
        KeysError::EmptyPassphrase => Kind::Usage,
        KeysError::WrongPassphrase => Kind::Credentials,
        _ => Kind::Files,
    }
}

fn demo_kind(e: &DemoError) -> Kind {
    match e {
        DemoError::Engine(e) => engine_kind(e),
        DemoError::Client(e) => client_kind(e),
        DemoError::Keys(e) => keys_kind(e),
        DemoError::Build(BuildError::WrongMasterSecret)
        | DemoError::UnknownUser(_)
        | DemoError::NotE2ee(_) => Kind::Credentials,
        DemoError::BadSpec(_) => Kind::Usage,
        DemoError::File { .. } | DemoError::CredentialsMismatch => Kind::Files,
        DemoError::ForUser { source, .. } => demo_kind(source),
        _ => Kind::Other,
    }
}

fn client_kind(e: &ClientError) -> Kind {
    match e {
        ClientError::BadUrl(_) | ClientError::BadVaultName(_) => Kind::Usage,
        ClientError::Transport(_) => Kind::Unreachable,
        ClientError::Build(BuildError::WrongMasterSecret) => Kind::Credentials,
        e if e.is_conflict() => Kind::Conflict,
        ClientError::Refused { status: 404, .. } => Kind::Credentials,
        ClientError::Refused { status: 401, .. } => Kind::Usage,
        ClientError::Refused {
            status: 409 | 423 | 403,
            ..
        } => Kind::Refused,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_documented_exit_code() {
        let wrong_word = CliError::Engine(EngineError::Transition(TransitionError::WrongCodeWord));
        assert_eq!(wrong_word.exit_code(), code::REFUSED);
        let blocked = CliError::Engine(EngineError::Transition(TransitionError::ChecksBlock {
            checks: vec!["certificates".into()],
        }));
        assert_eq!(blocked.exit_code(), code::REFUSED);
        assert!(
            blocked
                .hint()
                .is_some_and(|h| h.contains("rekey preflight"))
        );
        let password = CliError::Demo(DemoError::Build(BuildError::WrongMasterSecret));
        assert_eq!(password.exit_code(), code::CREDENTIALS);
        let over_http = CliError::Demo(DemoError::Client(ClientError::Build(
            BuildError::WrongMasterSecret,
        )));
        assert_eq!(over_http.exit_code(), code::CREDENTIALS);
        let backup = CliError::Engine(EngineError::Keys(KeysError::NotABackup {
            reason: "x".into(),
        }));
        assert_eq!(backup.exit_code(), code::FILES);
        let config = CliError::Server(ServerError::Config("no token".into()));
        assert_eq!(config.exit_code(), code::USAGE);
        assert_eq!(
            CliError::VerifyFailed(String::new()).exit_code(),
            code::VERIFY_FAILED
        );
    }
}
