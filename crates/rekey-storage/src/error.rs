//! The crate's one error type. Database errors are carried as an opaque
//! source with the operation that failed; sea-orm's types never appear here.

use rekey_core::ids::PrincipalId;
use rekey_core::model::Phase;

/// The text every read-only trigger raises. Matched to [`Error::ReadOnly`].
pub const READ_ONLY_MESSAGE: &str = "rekey: vault is being migrated (read-only)";
/// The text the guard of the `migration` row raises (it is written by
/// rekey's own transactions only, in every phase). Matched to
/// [`Error::ReadOnly`] too.
pub const GUARD_MESSAGE: &str = "rekey: the migration row is written by rekey alone";

/// Anything the vault can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL's scheme is not one rekey can open.
    #[error(
        "cannot open {url}: unsupported database URL; use sqlite://path, postgres://… or mysql://…"
    )]
    UnsupportedUrl {
        /// The URL, password removed.
        url: String,
    },
    /// The database did not answer.
    #[error(
        "could not connect to the vault at {url}: {source}. Check that the database server is running and that host, port, user and database name in the URL are right (for SQLite, that the file exists: `rekey init` or `rekey demo` creates it)"
    )]
    Unreachable {
        /// The URL, password removed.
        url: String,
        /// What the driver said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database holds no rekey schema yet.
    #[error("the database at {url} is empty: run `rekey init` to create the vault schema")]
    NotInitialised {
        /// The URL, password removed.
        url: String,
    },
    /// The database holds something else.
    #[error(
        "the database at {url} is not a rekey vault ({reason}); point rekey at the vault's own database"
    )]
    NotAVault {
        /// The URL, password removed.
        url: String,
        /// What gave it away.
        reason: String,
    },
    /// A newer rekey has upgraded this vault.
    #[error(
        "the vault at {url} has a newer schema than this build of rekey knows ({unknown}); upgrade rekey"
    )]
    SchemaTooNew {
        /// The URL, password removed.
        url: String,
        /// Applied schema migrations this build does not know.
        unknown: String,
    },
    /// The vault's schema is older than this build.
    #[error(
        "the vault at {url} has an older schema ({pending} upgrade steps pending): run `rekey init` to upgrade it"
    )]
    SchemaOutdated {
        /// The URL, password removed.
        url: String,
        /// How many schema migrations are not applied.
        pending: usize,
    },
    /// A write was refused because the vault is in migration mode.
    #[error(
        "the vault is being migrated (read-only): records, grants, keys and memberships cannot be changed until the migration is finalized or aborted"
    )]
    ReadOnly,
    /// Another transition won the compare-and-swap, or the phase is not the
    /// one the caller expected.
    #[error(
        "the migration phase changed meanwhile: expected {expected} (version {expected_version}), found {found} (version {found_version}); reload and retry"
    )]
    PhaseConflict {
        /// The phase the caller expected.
        expected: Phase,
        /// The version the caller expected.
        expected_version: i64,
        /// The phase found.
        found: Phase,
        /// The version found.
        found_version: i64,
    },
    /// An operation that the current phase does not allow.
    #[error("cannot {operation} while the migration phase is {phase}")]
    WrongPhase {
        /// The current phase.
        phase: Phase,
        /// What was attempted.
        operation: &'static str,
    },
    /// A migration write set no longer matches the vault: the principal is
    /// already migrated, or its pending grants changed. The client rebuilds.
    #[error(
        "conflict migrating principal {principal}: {reason}; fetch the pending grants again and rebuild"
    )]
    Conflict {
        /// The principal concerned.
        principal: PrincipalId,
        /// What did not match.
        reason: String,
    },
    /// Something that should exist does not.
    #[error("{what} {id} not found")]
    NotFound {
        /// Kind of thing.
        what: &'static str,
        /// Its identifier.
        id: String,
    },
    /// A value in the database is not one rekey wrote (an unknown enum
    /// name, an envelope that does not parse, a malformed id).
    #[error("the vault holds an invalid {what}: {detail}")]
    Corrupt {
        /// Which field.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A write broke a database constraint (duplicate id, unknown
    /// principal); nothing was written.
    #[error(
        "could not {context}: a database constraint refused it ({source}); nothing was written"
    )]
    Constraint {
        /// The operation.
        context: &'static str,
        /// What the database said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Any other database failure.
    #[error("could not {context}: {source}")]
    Database {
        /// The operation.
        context: &'static str,
        /// What the database said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn db(context: &'static str, err: sea_orm::DbErr) -> Self {
        let text = err.to_string();
        if text.contains(READ_ONLY_MESSAGE) || text.contains(GUARD_MESSAGE) {
            return Error::ReadOnly;
        }
        match err.sql_err() {
            Some(
                sea_orm::SqlErr::UniqueConstraintViolation(_)
                | sea_orm::SqlErr::ForeignKeyConstraintViolation(_),
            ) => Error::Constraint {
                context,
                source: Box::new(err),
            },
            _ => Error::Database {
                context,
                source: Box::new(err),
            },
        }
    }

    pub(crate) fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> Self {
        Error::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }
}

/// `map_err` helper: `.map_err(db("load the key pairs"))`.
pub(crate) fn db(context: &'static str) -> impl FnOnce(sea_orm::DbErr) -> Error {
    move |e| Error::db(context, e)
}

/// A URL with its password replaced by `***`, for messages.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..rest_start],
        &userinfo[..colon],
        &rest[at..]
    )
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_removed() {
        assert_eq!(
            redact_url("postgres://u:s3cr@t@db:5432/v"),
            "postgres://u:***@db:5432/v"
        );
        assert_eq!(redact_url("mysql://root@h/test"), "mysql://root@h/test");
        assert_eq!(
            redact_url("sqlite://a.db?mode=rwc"),
            "sqlite://a.db?mode=rwc"
        );
        assert_eq!(redact_url("nonsense"), "nonsense");
    }
}
