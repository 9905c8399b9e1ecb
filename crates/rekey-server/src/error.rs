//! The server's one error type: every refusal has an HTTP status, a stable
//! machine-readable code (`docs/PROTOCOL.md` lists them), a message that
//! says what was wrong and a hint that says what to do. The body of every
//! error response is `{"error": "...", "code": "...", "hint": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rekey_core::bundle::CheckError;
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
        /// The stable code.
        code: &'static str,
        /// What to do.
        hint: &'static str,
    },
    /// The admin token is missing or wrong (401).
    #[error("missing or wrong admin token")]
    Unauthorized,
    /// A client request without a session (401).
    #[error("this request needs the account's session: log in first (POST /v1/session)")]
    SessionRequired,
    /// A client request with a session token that is not (or no longer)
    /// valid (401).
    #[error(transparent)]
    SessionRefused(rekey_core::auth::TokenError),
    /// A login whose authenticator does not match, or of an account
    /// without a login: the same answer either way (401).
    #[error("wrong credentials")]
    BadCredentials,
    /// A session of one account used for another's package or bundle (403).
    #[error("the session belongs to another account")]
    WrongAccount,
    /// Too many failed logins for this account or from this address (429).
    #[error("too many failed logins; try again in {retry_after_s} s")]
    TooManyAttempts {
        /// Seconds until a login may be tried again.
        retry_after_s: u64,
    },
    /// The server takes no more bundles at the moment (503).
    #[error("the server is busy checking other bundles; try again shortly")]
    Busy,
    /// The client did not send its body in time (408).
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// A bundle's signatures do not prove who submitted it (403).
    #[error("{message}")]
    SignatureRefused {
        /// What failed.
        message: String,
        /// The stable code.
        code: &'static str,
    },
    /// No such thing (404).
    #[error("{0}")]
    NotFound(String),
    /// A server of several vaults serves none of this name (404, code
    /// `not_found`).
    #[error("this server serves no vault named {0:?}")]
    UnknownVault(String),
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
        /// The stable code.
        code: &'static str,
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
        /// The stable code.
        code: &'static str,
        /// What to do.
        hint: &'static str,
    },
    /// The database does not answer (503).
    #[error("the vault's database does not answer")]
    Unavailable,
    /// On a server of several vaults: these vaults' databases do not
    /// answer (503, code `unavailable`).
    #[error("{}", unavailable_vaults(.0))]
    VaultsUnavailable(Vec<String>),
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
    /// Start-up of a server of several vaults: this vault or its key
    /// directory could not be opened.
    #[error("could not open vault {vault}: {source}")]
    OpenVault {
        /// The vault's name.
        vault: String,
        /// The failure.
        #[source]
        source: EngineError,
    },
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

/// "the database of vault b does not answer", "the databases of vaults b,
/// c do not answer".
fn unavailable_vaults(names: &[String]) -> String {
    match names {
        [one] => format!("the database of vault {one} does not answer"),
        more => format!("the databases of vaults {} do not answer", more.join(", ")),
    }
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

const REBUILD: &str =
    "fetch a new package (GET /v1/principals/{id}/package), rebuild the bundle and submit it again";
const STATUS_HINT: &str = "GET /v1/migration/status shows the phase";

impl ServerError {
    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            ServerError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ServerError::Unauthorized
            | ServerError::SessionRequired
            | ServerError::SessionRefused(_)
            | ServerError::BadCredentials => StatusCode::UNAUTHORIZED,
            ServerError::WrongAccount => StatusCode::FORBIDDEN,
            ServerError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            ServerError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ServerError::SignatureRefused { .. } => StatusCode::FORBIDDEN,
            ServerError::NotFound(_) | ServerError::UnknownVault(_) => StatusCode::NOT_FOUND,
            ServerError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServerError::Conflict { .. } => StatusCode::CONFLICT,
            ServerError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::Locked { .. } => StatusCode::LOCKED,
            ServerError::Unavailable | ServerError::VaultsUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ServerError::Internal(_)
            | ServerError::Config(_)
            | ServerError::Open(_)
            | ServerError::OpenVault { .. }
            | ServerError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            ServerError::BadRequest { code, .. }
            | ServerError::SignatureRefused { code, .. }
            | ServerError::Conflict { code, .. }
            | ServerError::Locked { code, .. } => code,
            ServerError::Unauthorized => "unauthorized",
            ServerError::SessionRequired => "session_required",
            ServerError::SessionRefused(e) => Self::code_of_token(*e),
            ServerError::BadCredentials => "bad_credentials",
            ServerError::WrongAccount => "wrong_account",
            ServerError::TooManyAttempts { .. } => "too_many_attempts",
            ServerError::Busy => "busy",
            ServerError::BodyTimeout => "body_timeout",
            ServerError::NotFound(_) | ServerError::UnknownVault(_) => "not_found",
            ServerError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ServerError::TooLarge { .. } => "too_large",
            ServerError::Unavailable | ServerError::VaultsUnavailable(_) => "unavailable",
            ServerError::Internal(_) => "internal",
            ServerError::Config(_) => "config",
            ServerError::Open(_) | ServerError::OpenVault { .. } => "open",
            ServerError::Io { .. } => "io",
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
                "send Authorization: Bearer <admin token> (the token the server was started with)"
            }
            ServerError::SessionRequired | ServerError::SessionRefused(_) => {
                "log in with POST /v1/session and send the token as Authorization: Bearer TOKEN"
            }
            ServerError::BadCredentials => {
                "derive the login authenticator from the account's master secret (docs/PROTOCOL.md)"
            }
            ServerError::WrongAccount => "post each account's requests with its own session",
            ServerError::TooManyAttempts { .. } => "wait, then log in with the right password",
            ServerError::Busy | ServerError::BodyTimeout => "send the request again",
            ServerError::SignatureRefused { code, .. } if *code == "receipt_refused" => {
                "confirm only roles listed by GET /v1/principals/{id}/role-checks, signing with the role's new key"
            }
            ServerError::SignatureRefused { .. } => {
                "sign the bundle with the account's own legacy key and post it at its own URL"
            }
            ServerError::NotFound(_) => "check the id (GET /openapi.json lists the routes)",
            ServerError::UnknownVault(_) => {
                "GET / lists the vaults this server serves; each one's API is under /v1/vaults/{name}"
            }
            ServerError::UnsupportedMediaType { .. } => {
                "send the body with the content type the route names in /openapi.json"
            }
            ServerError::TooLarge { .. } => {
                "the limit is set when the server starts (--max-bundle-bytes, --max-body-bytes)"
            }
            ServerError::Unavailable | ServerError::VaultsUnavailable(_) => {
                "the database is down or unreachable; retry once it is back (GET /ready)"
            }
            ServerError::Internal(_) => "retry; if it persists, the server log has the details",
            ServerError::Config(_) => "see `rekey serve --help`",
            ServerError::Open(_) => "check --db and --key-dir",
            ServerError::OpenVault { .. } => "check this vault's database URL and key directory",
            ServerError::Io { .. } => "check the bind address and that the port is free",
        }
    }

    /// Whether the error happened before serving (configuration, opening
    /// the vault, binding the socket) rather than in a request.
    #[must_use]
    pub fn is_startup(&self) -> bool {
        matches!(
            self,
            ServerError::Config(_)
                | ServerError::Open(_)
                | ServerError::OpenVault { .. }
                | ServerError::Io { .. }
        )
    }

    pub(crate) fn refusal_reason(&self) -> &'static str {
        match self {
            ServerError::BadRequest { .. } | ServerError::UnsupportedMediaType { .. } => {
                "malformed"
            }
            ServerError::Unauthorized
            | ServerError::SessionRequired
            | ServerError::SessionRefused(_)
            | ServerError::WrongAccount => "unauthorized",
            ServerError::SignatureRefused { .. } => "signature",
            ServerError::Conflict { .. } => "conflict",
            ServerError::TooLarge { .. } => "too_large",
            ServerError::Locked { .. } => "wrong_phase",
            _ => "other",
        }
    }

    pub(crate) fn bad_request(
        message: impl Into<String>,
        code: &'static str,
        hint: &'static str,
    ) -> Self {
        ServerError::BadRequest {
            message: message.into(),
            code,
            hint,
        }
    }

    fn conflict(message: impl Into<String>, code: &'static str, hint: &'static str) -> Self {
        ServerError::Conflict {
            message: message.into(),
            code,
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
        match e {
            EngineError::MalformedBundle(w) => ServerError::bad_request(
                format!("malformed bundle: {w}"),
                "bundle_malformed",
                "send the bundle's bytes as docs/PROTOCOL.md lays them out, as application/octet-stream",
            ),
            EngineError::Bundle(c) => Self::check(&c),
            e @ EngineError::ApplyConflict(_) => {
                Self::conflict(e.to_string(), "vault_changed", REBUILD)
            }
            e @ EngineError::TargetChanged { .. } => Self::conflict(
                e.to_string(),
                "target_changed",
                "start again without target_scheme to resume the run; to change the target, abort first",
            ),
            e @ EngineError::WrongPhase { .. } if admin => {
                Self::conflict(e.to_string(), "wrong_phase", STATUS_HINT)
            }
            e @ EngineError::WrongPhase { .. } => ServerError::Locked {
                message: e.to_string(),
                code: "wrong_phase",
                hint: "the vault takes migration packages and bundles only while users migrate; GET /v1/migration/status shows the phase",
            },
            EngineError::Transition(t) => {
                let hint = match &t {
                    rekey_core::lifecycle::TransitionError::WrongCodeWord => {
                        return ServerError::bad_request(
                            t.to_string(),
                            t.code(),
                            "send {\"code_word\": \"Start\"}; nothing was changed",
                        );
                    }
                    rekey_core::lifecycle::TransitionError::ChecksBlock { .. } => {
                        "POST /v1/admin/preflight shows the evidence and the remedy of each blocking check"
                    }
                    _ => "GET /v1/migration/status shows what is pending",
                };
                Self::conflict(t.to_string(), t.code(), hint)
            }
            e @ EngineError::UnknownPrincipal(_) => ServerError::NotFound(e.to_string()),
            e @ EngineError::BadResolution(_) => ServerError::bad_request(
                e.to_string(),
                "bad_resolution",
                "send {\"resolution\": \"reshared\"} or {\"resolution\": \"written_off\"}",
            ),
            EngineError::BadCredentials => ServerError::BadCredentials,
            e @ EngineError::ReceiptRefused(_) => ServerError::SignatureRefused {
                message: e.to_string(),
                code: "receipt_refused",
            },
            EngineError::Session(e) => ServerError::SessionRefused(e),
            EngineError::Storage(s) => Self::from_storage(s),
            EngineError::Preflight(rekey_preflight::Error::Storage { source }) => {
                Self::from_storage(source)
            }
            e @ EngineError::Preflight(rekey_preflight::Error::MigrationStarted { .. }) => {
                ServerError::Locked {
                    message: e.to_string(),
                    code: "wrong_phase",
                    hint: "users are purged or restored before the start (or after completion); `rekey abort` ends a running migration",
                }
            }
            e @ EngineError::Preflight(rekey_preflight::Error::WrongUserStatus { .. }) => {
                Self::conflict(
                    e.to_string(),
                    "wrong_user_status",
                    "only a deactivated or deleted user is purged or restored; GET /v1/admin/status and POST /v1/admin/preflight list them",
                )
            }
            e @ EngineError::Preflight(rekey_preflight::Error::WouldOrphanRecords { .. }) => {
                Self::conflict(
                    e.to_string(),
                    "would_orphan_records",
                    "share those records with another user or role in the vault, then purge again; send {\"force\": true} to purge anyway (the records are listed in the audit log)",
                )
            }
            e @ EngineError::Preflight(_) => ServerError::NotFound(e.to_string()),
            other => ServerError::Internal(other.to_string()),
        }
    }

    /// A bundle the core checks refused.
    fn check(c: &CheckError) -> Self {
        let message = format!("bundle refused: {c}");
        if c.is_signature() {
            return ServerError::SignatureRefused {
                message,
                code: c.code(),
            };
        }
        if c.is_conflict() {
            return Self::conflict(message, c.code(), REBUILD);
        }
        match c {
            CheckError::SubmitterMigrated(_) => Self::conflict(
                message,
                c.code(),
                "this account has migrated already: log in with its new key",
            ),
            CheckError::NotPending { .. } => Self::conflict(
                message,
                c.code(),
                "this account cannot migrate; ask the administrator",
            ),
            _ => ServerError::bad_request(
                message,
                c.code(),
                "the bundle does not match its package; rebuild it from a fresh package",
            ),
        }
    }

    /// A storage error.
    pub(crate) fn from_storage(e: rekey_storage::Error) -> Self {
        use rekey_storage::Error as S;
        match e {
            e @ S::ReadOnly => ServerError::Locked {
                message: e.to_string(),
                code: "read_only",
                hint: "writes are accepted again once the migration is finalized or aborted",
            },
            S::Unreachable { .. } => ServerError::Unavailable,
            e @ S::NotFound { .. } => ServerError::NotFound(e.to_string()),
            e @ (S::PhaseConflict { .. } | S::Conflict { .. }) => Self::conflict(
                e.to_string(),
                "vault_changed",
                "the vault changed meanwhile; reload and retry",
            ),
            e @ S::WrongPhase { .. } => Self::conflict(e.to_string(), "wrong_phase", STATUS_HINT),
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
        let body = crate::answers::ErrorBody {
            error: self.to_string(),
            code: self.code().to_owned(),
            hint: self.hint().to_owned(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        let retry_after = match &self {
            ServerError::TooManyAttempts { retry_after_s } => Some(*retry_after_s),
            ServerError::Busy => Some(1),
            _ => None,
        };
        if let Some(s) = retry_after {
            if let Ok(v) = axum::http::HeaderValue::from_str(&s.to_string()) {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        response
    }
}

fn detail(e: &ServerError) -> Option<&str> {
    match e {
        ServerError::Internal(d) => Some(d),
        _ => None,
    }
}

/// The codes `docs/PROTOCOL.md` §9 lists, with their statuses, read from
/// the page itself: the tests hold every refusal the server makes to it.
#[doc(hidden)]
#[must_use]
pub fn documented_codes(protocol_md: &str) -> Vec<(String, u16)> {
    let section = protocol_md
        .split("\n## 9.")
        .nth(1)
        .and_then(|s| s.split("\n## 10.").next())
        .unwrap_or_default();
    let mut out = Vec::new();
    for line in section.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | # | `code` | status | … , | B1 | `code` | condition | … (400),
        // or | `code` | status | … (group F).
        let (code, status) = match (cells.get(1), cells.get(2), cells.get(3)) {
            (Some(c), Some(s), _) if c.starts_with('`') => (*c, s.parse().ok()),
            (Some(n), Some(c), Some(s)) if c.starts_with('`') => (
                *c,
                s.parse().ok().or_else(|| n.starts_with('B').then_some(400)),
            ),
            _ => continue,
        };
        if let Some(status) = status {
            out.push((code.trim_matches('`').to_owned(), status));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_core::PrincipalId;
    use rekey_core::model::MigrationState;

    const PROTOCOL: &str = include_str!("../../../docs/PROTOCOL.md");

    fn documented(e: &ServerError) -> bool {
        documented_codes(PROTOCOL)
            .iter()
            .any(|(c, s)| c == e.code() && *s == e.status().as_u16())
    }

    #[test]
    fn the_page_lists_codes_with_statuses() {
        let codes = documented_codes(PROTOCOL);
        assert!(codes.len() > 40, "{codes:?}");
        assert!(codes.contains(&("bundle_malformed".to_owned(), 400)));
        assert!(codes.contains(&("already_migrated".to_owned(), 409)));
        assert!(codes.contains(&("unavailable".to_owned(), 503)));
    }

    /// Every code the page lists is one the sources can send.
    #[test]
    fn the_page_lists_no_code_the_server_cannot_send() {
        fn sources(dir: &std::path::Path, out: &mut String) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    // The code, not its tests.
                    let file = std::fs::read_to_string(&path).unwrap();
                    out.push_str(file.split("#[cfg(test)]").next().unwrap_or_default());
                }
            }
        }
        let mut text = String::new();
        for krate in ["rekey-core", "rekey-server", "rekey-engine"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(krate)
                .join("src");
            sources(&dir, &mut text);
        }
        for (code, _) in documented_codes(PROTOCOL) {
            assert!(
                text.contains(&format!("\"{code}\"")),
                "PROTOCOL.md lists {code}, which no source sends"
            );
        }
    }

    #[test]
    fn every_bundle_refusal_is_documented_with_its_status() {
        let p = PrincipalId::from_bytes([1; 16]);
        let name = || "alice".to_owned();
        let refusals = [
            CheckError::WrongVault,
            CheckError::StaleRun,
            CheckError::NotSubmitter,
            CheckError::UnknownPrincipal(p),
            CheckError::DuplicatePart(p),
            CheckError::KeyPairIdTaken(rekey_core::KeyPairId::from_bytes([2; 16])),
            CheckError::NotAHolder(name()),
            CheckError::SubmitterMigrated(name()),
            CheckError::AlreadyMigrated(name()),
            CheckError::NotPending {
                name: name(),
                state: MigrationState::Blocked,
            },
            CheckError::LegacyKeyChanged(name()),
            CheckError::CoverageChanged {
                name: name(),
                missing: 1,
                unknown: 0,
            },
            CheckError::DuplicateGrant(rekey_core::GrantId::from_bytes([3; 16])),
            CheckError::SubjectChanged(rekey_core::GrantId::from_bytes([3; 16])),
            CheckError::WrongGrantScheme {
                name: name(),
                grant: rekey_core::GrantId::from_bytes([3; 16]),
                expected: "11",
            },
            CheckError::WrappedKeyMisplaced(name()),
            CheckError::HoldersChanged(name()),
            CheckError::HolderGrantInvalid {
                part: name(),
                holder: p,
            },
            CheckError::MissingSignature {
                name: name(),
                kind: "legacy",
            },
            CheckError::BadSignature {
                name: name(),
                kind: "legacy",
            },
            CheckError::UnexpectedSignature,
        ];
        for c in &refusals {
            let e = ServerError::check(c);
            assert!(
                documented(&e),
                "{} ({}) is not in PROTOCOL.md §9",
                e.code(),
                e.status()
            );
        }
    }

    #[test]
    fn every_request_refusal_is_documented_with_its_status() {
        let errors = [
            ServerError::SessionRequired,
            ServerError::SessionRefused(rekey_core::auth::TokenError::Invalid),
            ServerError::SessionRefused(rekey_core::auth::TokenError::Expired),
            ServerError::BadCredentials,
            ServerError::WrongAccount,
            ServerError::TooManyAttempts { retry_after_s: 1 },
            ServerError::Busy,
            ServerError::BodyTimeout,
            ServerError::NotFound("x".into()),
            ServerError::UnknownVault("x".into()),
            ServerError::VaultsUnavailable(vec!["x".into()]),
            ServerError::UnsupportedMediaType { expected: "x" },
            ServerError::TooLarge { limit: 1 },
            ServerError::Unavailable,
            ServerError::Internal("x".into()),
            ServerError::from_engine(EngineError::WrongPhase {
                expected: "x",
                actual: rekey_core::model::Phase::Legacy,
            }),
            ServerError::from_engine(EngineError::ApplyConflict("x".into())),
            ServerError::from_engine(EngineError::MalformedBundle(
                rekey_core::bundle::wire::WireError::Truncated("x"),
            )),
        ];
        for e in &errors {
            assert!(
                documented(e),
                "{} ({}) is not in PROTOCOL.md §9",
                e.code(),
                e.status()
            );
        }
    }
}
