//! The server's one error type: every refusal has an HTTP status, a
//! message that says what was wrong and a hint that says what to do. The
//! body of every error response is `{"error": "...", "hint": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rekey_core::bundle::CheckError;
use rekey_core::lifecycle::TransitionError;
use rekey_engine::EngineError;

/// Anything the server can fail with, at start-up or per request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The request is malformed (400).
    #[error("{message}")]
    BadRequest {
        /// What was wrong.
        message: String,
        /// What to do.
        hint: &'static str,
    },
    /// The admin token is missing or wrong (401).
    #[error("missing or wrong admin token")]
    Unauthorized,
    /// A bundle's signatures do not prove who submitted it (403).
    #[error("{0}")]
    SignatureRefused(String),
    /// No such thing (404).
    #[error("{0}")]
    NotFound(String),
    /// The body is not in the media type this route takes (415).
    #[error("this route takes a body of type {expected}")]
    UnsupportedMediaType {
        /// The type it takes.
        expected: &'static str,
    },
    /// The vault changed, or is not in a state that allows this (409).
    #[error("{message}")]
    Conflict {
        /// What changed.
        message: String,
        /// What to do.
        hint: &'static str,
    },
    /// The body is larger than the route accepts (413).
    #[error("the request body is larger than this route accepts ({limit} bytes)")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The vault is locked for this operation (423): read-only during the
    /// migration, or not in the phase that takes bundles.
    #[error("{message}")]
    Locked {
        /// Why.
        message: String,
        /// What to do.
        hint: &'static str,
    },
    /// The database does not answer (503).
    #[error("the vault's database does not answer")]
    Unavailable,
    /// Something failed that the client cannot fix (500). The detail goes
    /// to the server log, not to the client.
    #[error("internal error")]
    Internal(String),
    /// Start-up: the configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Start-up: the vault or key directory could not be opened.
    #[error("could not open the vault: {0}")]
    Open(#[source] EngineError),
    /// Start-up or serving: a socket failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

/// Which of the refusal reasons a failed bundle counts under in `/metrics`.
pub(crate) const REFUSAL_REASONS: [&str; 7] = [
    "malformed",
    "unauthorized",
    "signature",
    "conflict",
    "too_large",
    "wrong_phase",
    "other",
];

impl ServerError {
    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            ServerError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ServerError::Unauthorized => StatusCode::UNAUTHORIZED,
            ServerError::SignatureRefused(_) => StatusCode::FORBIDDEN,
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServerError::Conflict { .. } => StatusCode::CONFLICT,
            ServerError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::Locked { .. } => StatusCode::LOCKED,
            ServerError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::Internal(_)
            | ServerError::Config(_)
            | ServerError::Open(_)
            | ServerError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What to do about it.
    #[must_use]
    pub fn hint(&self) -> &'static str {
        match self {
            ServerError::BadRequest { hint, .. }
            | ServerError::Conflict { hint, .. }
            | ServerError::Locked { hint, .. } => hint,
            ServerError::Unauthorized => {
                "send the admin token given at server start-up as `Authorization: Bearer <token>`"
            }
            ServerError::SignatureRefused(_) => {
                "a bundle must be built and signed by the account it is submitted for, with that account's own key, and posted to that account's URL"
            }
            ServerError::NotFound(_) => "check the id (GET /openapi.json lists the routes)",
            ServerError::UnsupportedMediaType { .. } => {
                "set the Content-Type header to the type this route takes"
            }
            ServerError::TooLarge { .. } => {
                "send a smaller body, or start the server with a larger --max-bundle-bytes / --max-body-bytes"
            }
            ServerError::Unavailable => {
                "check that the database is running and reachable from the server; GET /ready reports when it answers again"
            }
            ServerError::Internal(_) => "retry; if it persists, the server log has the details",
            ServerError::Config(_) => "see rekey-server --help",
            ServerError::Open(_) => "check --db and --key-dir",
            ServerError::Io { .. } => "check the bind address and that the port is free",
        }
    }

    /// The metrics label of a refused bundle.
    pub(crate) fn refusal_reason(&self) -> &'static str {
        match self {
            ServerError::BadRequest { .. } | ServerError::UnsupportedMediaType { .. } => {
                "malformed"
            }
            ServerError::Unauthorized => "unauthorized",
            ServerError::SignatureRefused(_) => "signature",
            ServerError::Conflict { .. } => "conflict",
            ServerError::TooLarge { .. } => "too_large",
            ServerError::Locked { .. } => "wrong_phase",
            _ => "other",
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>, hint: &'static str) -> Self {
        ServerError::BadRequest {
            message: message.into(),
            hint,
        }
    }

    /// An engine error in a client request (package, bundle, records): a
    /// vault that is not in the user phase is `423 Locked`.
    pub(crate) fn from_engine(e: EngineError) -> Self {
        Self::engine(e, false)
    }

    /// An engine error in an admin request: the wrong phase is a `409`.
    pub(crate) fn from_admin_engine(e: EngineError) -> Self {
        Self::engine(e, true)
    }

    fn engine(e: EngineError, admin: bool) -> Self {
        const REBUILD: &str = "fetch a new package (GET /v1/principals/{id}/package), rebuild the bundle and submit it again";
        match e {
            EngineError::MalformedBundle(w) => ServerError::bad_request(
                format!("malformed bundle: {w}"),
                "send the bytes of SignedBundle::encode() as application/octet-stream",
            ),
            EngineError::Bundle(c) if c.is_signature() => {
                ServerError::SignatureRefused(format!("bundle refused: {c}"))
            }
            EngineError::Bundle(c) if c.is_conflict() => ServerError::Conflict {
                message: format!("bundle refused: {c}"),
                hint: REBUILD,
            },
            EngineError::Bundle(c @ CheckError::NotPending { .. }) => ServerError::Conflict {
                message: format!("bundle refused: {c}"),
                hint: "this account cannot migrate; ask the administrator",
            },
            EngineError::Bundle(c) => ServerError::bad_request(
                format!("bundle refused: {c}"),
                "the bundle does not match its package; rebuild it from a fresh package",
            ),
            e @ EngineError::ApplyConflict(_) => ServerError::Conflict {
                message: e.to_string(),
                hint: REBUILD,
            },
            e @ EngineError::WrongPhase { .. } if admin => ServerError::Conflict {
                message: e.to_string(),
                hint: "GET /v1/migration/status shows the phase",
            },
            e @ EngineError::WrongPhase { .. } => ServerError::Locked {
                message: e.to_string(),
                hint: "the vault takes migration packages and bundles only while users migrate; GET /v1/migration/status shows the phase",
            },
            EngineError::Transition(t) => Self::transition(t),
            e @ (EngineError::UnknownPrincipal(_) | EngineError::UnknownUser(_)) => {
                ServerError::NotFound(e.to_string())
            }
            e @ EngineError::NotE2ee(_) => {
                ServerError::bad_request(e.to_string(), "managed users are migrated by the server")
            }
            EngineError::Storage(s) => Self::from_storage(s),
            other => ServerError::Internal(other.to_string()),
        }
    }

    fn transition(t: TransitionError) -> Self {
        match t {
            t @ TransitionError::WrongCodeWord => ServerError::bad_request(
                t.to_string(),
                "send {\"code_word\": \"Start\"}; nothing was changed",
            ),
            t @ TransitionError::ChecksBlock { .. } => ServerError::Conflict {
                message: t.to_string(),
                hint: "POST /v1/admin/preflight shows the evidence and the remedy of each blocking check",
            },
            t => ServerError::Conflict {
                message: t.to_string(),
                hint: "GET /v1/migration/status shows what is pending",
            },
        }
    }

    /// A storage error.
    pub(crate) fn from_storage(e: rekey_storage::Error) -> Self {
        use rekey_storage::Error as S;
        match e {
            e @ S::ReadOnly => ServerError::Locked {
                message: e.to_string(),
                hint: "writes are accepted again once the migration is finalized or aborted",
            },
            S::Unreachable { .. } => ServerError::Unavailable,
            e @ S::NotFound { .. } => ServerError::NotFound(e.to_string()),
            e @ (S::PhaseConflict { .. } | S::Conflict { .. } | S::WrongPhase { .. }) => {
                ServerError::Conflict {
                    message: e.to_string(),
                    hint: "the vault changed meanwhile; reload and retry",
                }
            }
            other => ServerError::Internal(other.to_string()),
        }
    }

    /// A preflight error.
    pub(crate) fn from_preflight(e: rekey_preflight::Error) -> Self {
        use rekey_preflight::Error as P;
        match e {
            e @ (P::UnknownDevice { .. } | P::UnknownDirectoryProfile { .. }) => {
                ServerError::NotFound(e.to_string())
            }
            P::Storage { source, .. } => Self::from_storage(source),
            other => ServerError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            // The detail stays in the log; it never holds key material or
            // tokens (engine and storage messages name ids, not bytes).
            tracing::error!(error = %self, detail = ?detail(&self), "request failed");
        }
        let body = serde_json::json!({ "error": self.to_string(), "hint": self.hint() });
        (status, axum::Json(body)).into_response()
    }
}

fn detail(e: &ServerError) -> Option<&str> {
    match e {
        ServerError::Internal(d) => Some(d),
        _ => None,
    }
}
