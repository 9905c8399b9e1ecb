//! [`HttpClient`]: what a client (the CLI's `login --server`, the demo's
//! simulated clients, the load bench, the tests) uses to talk to a
//! rekey-server: fetch a migration package (checked as untrusted input),
//! submit a bundle, read the status, and call the admin endpoints. Plain
//! HTTP/1 on hyper; put the server behind a TLS terminator anywhere but
//! loopback.

use crate::migrate::{ApiError, MigrationApi};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rekey_core::auth::LoginAuthenticator;
use rekey_core::bundle::package::{PackageError, parse_package};
use rekey_core::bundle::{BuildError, MigrationPackage};
use rekey_core::confirm::{Receipt, ReceiptJson, RoleCheck, parse_role_checks};
use rekey_core::report::{AbortReport, ApplyReport, FinalizeReport, StartReport, StatusReport};
use rekey_core::{PrincipalId, VaultId};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Largest response the client reads (a package of a very large account).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 512 << 20;
/// Default limit on one request, answer included (a large bundle takes a
/// while to check and apply).
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// How many times one request is sent when the connection fails (refused,
/// reset, closed before the answer: a server restarting), by default.
pub const DEFAULT_TRANSPORT_ATTEMPTS: usize = 9;
/// The first pause before resending after a connection failure; it doubles
/// up to [`MAX_BACKOFF`] (the default attempts wait about 9 s in all).
pub const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
/// The longest pause between two attempts.
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server URL is unusable.
    #[error("invalid server URL {0:?}: use http://host:port")]
    BadUrl(String),
    /// The connection failed.
    #[error("could not reach the server: {0}")]
    Transport(String),
    /// The server refused, with its reason and hint.
    #[error("the server answered {status}: {error}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The stable machine-readable error code (`docs/PROTOCOL.md`),
        /// when the server sent one.
        code: Option<String>,
        /// The server's message.
        error: String,
        /// What to do.
        hint: String,
    },
    /// The server's answer is not what the API promises.
    #[error("unexpected answer from the server: {0}")]
    BadResponse(String),
    /// The package failed its checks.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// The bundle could not be built (e.g. a wrong password).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The bundle builder stopped without an answer.
    #[error("the bundle builder failed")]
    BuilderFailed,
}

impl ApiError for ClientError {
    fn is_conflict(&self) -> bool {
        ClientError::is_conflict(self)
    }

    fn is_already_migrated(&self) -> bool {
        self.code() == Some("already_migrated")
    }

    fn is_receipt_refused(&self) -> bool {
        self.code() == Some("receipt_refused")
    }

    fn builder_failed() -> Self {
        ClientError::BuilderFailed
    }
}

impl ClientError {
    /// The HTTP status, if the server answered with an error.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error code, if it answered with one.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Refused { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The vault changed under the client: fetch a new package, rebuild.
    /// (An account that has migrated already, or that cannot migrate, is
    /// a 409 too, but rebuilding cannot help it.)
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
            && !matches!(self.code(), Some("already_migrated" | "not_pending"))
    }
}

/// What `POST /v1/session` answers.
#[derive(serde::Deserialize)]
struct SessionAnswer {
    token: String,
    principal: PrincipalId,
}

/// How one attempt failed: before any answer (worth sending again) or for
/// good.
enum Failure {
    /// No whole answer; `sent`: the request may have reached the server.
    Connection {
        error: String,
        sent: bool,
    },
    Final(ClientError),
}

/// An HTTP client of one rekey-server.
#[derive(Clone)]
pub struct HttpClient {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    admin_token: Option<Arc<str>>,
    session: Option<Arc<str>>,
    vault: Option<VaultId>,
    max_response_bytes: usize,
    timeout: std::time::Duration,
    attempts: usize,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("base", &self.base)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "[redacted]"),
            )
            .field("session", &self.session.as_ref().map(|_| "[redacted]"))
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client of the server at `base_url` (`http://host:port`).
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|_| ClientError::BadUrl(base_url.to_owned()))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ClientError::BadUrl(base_url.to_owned()));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Ok(Self {
            base,
            client: Client::builder(TokioExecutor::new()).build(connector),
            admin_token: None,
            session: None,
            vault: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_TRANSPORT_ATTEMPTS,
        })
    }

    /// Sends `token` with admin requests.
    #[must_use]
    pub fn with_admin_token(mut self, token: &str) -> Self {
        self.admin_token = Some(Arc::from(token));
        self
    }

    /// Sends `token` (from [`HttpClient::open_session`], or the vault's own
    /// session login) with the package and bundle requests.
    #[must_use]
    pub fn with_session(mut self, token: &str) -> Self {
        self.session = Some(Arc::from(token));
        self
    }

    /// The session token this client sends, if it has one (a secret: keep
    /// it out of logs).
    #[must_use]
    pub fn session_token(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// Refuses packages of any vault but `vault`.
    #[must_use]
    pub fn expect_vault(mut self, vault: VaultId) -> Self {
        self.vault = Some(vault);
        self
    }

    /// Gives up on a request (answer included) after `timeout`.
    #[must_use]
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends a request at most `attempts` times (at least once) while the
    /// connection fails, pausing [`FIRST_BACKOFF`], then twice as long
    /// each time up to [`MAX_BACKOFF`]. A connection that could not be
    /// opened is retried for every request; one that broke before the
    /// whole answer arrived only for reads, logins, bundles and role
    /// receipts, which are safe to resend (a login opens one more session;
    /// a receipt is kept once; a bundle applied before the connection
    /// dropped answers `409 already migrated` the second time); an admin
    /// action is not sent twice. An answer (whatever its status) and a timeout
    /// are never retried.
    #[must_use]
    pub fn with_transport_attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The server's base URL.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// One request; answers the status and body whatever the status.
    /// `admin` sends the admin token (if the client has one). A connection
    /// that fails before any answer is retried (see
    /// [`HttpClient::with_transport_attempts`]).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        admin: bool,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let body = body.map(|(ct, bytes)| (ct.to_owned(), Bytes::from(bytes)));
        let resend_safe = method == Method::GET
            || path.ends_with("/bundle")
            || path.ends_with("/role-receipts")
            || path == "/v1/session";
        let mut pause = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.exchange(&method, path, body.clone(), admin).await {
                Err(Failure::Connection { error, sent }) if sent && !resend_safe => {
                    return Err(ClientError::Transport(error));
                }
                Err(Failure::Connection { error: e, .. }) if attempt < self.attempts => {
                    tracing::debug!(attempt, error = %e, "no answer; sending again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
                Err(Failure::Connection { error: e, .. }) => {
                    return Err(ClientError::Transport(if attempt > 1 {
                        format!("{e} (after {attempt} attempts)")
                    } else {
                        e
                    }));
                }
                Err(Failure::Final(e)) => return Err(e),
                Ok(answer) => return Ok(answer),
            }
        }
    }

    /// One attempt of [`HttpClient::raw`].
    async fn exchange(
        &self,
        method: &Method,
        path: &str,
        body: Option<(String, Bytes)>,
        admin: bool,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base));
        let bearer = if admin {
            self.admin_token.as_ref()
        } else {
            self.session.as_ref()
        };
        if let Some(t) = bearer {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some((ct, bytes)) => req.header(CONTENT_TYPE, ct).body(Full::new(bytes)),
            None => req.body(Full::new(Bytes::new())),
        }
        .map_err(|e| Failure::Final(ClientError::BadUrl(e.to_string())))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| Failure::Connection {
                    sent: !e.is_connect(),
                    error: e.to_string(),
                })?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), self.max_response_bytes)
                .collect()
                .await
                .map_err(|e| {
                    let error = format!("reading the answer: {e}");
                    if e.is::<http_body_util::LengthLimitError>() {
                        Failure::Final(ClientError::Transport(error))
                    } else {
                        Failure::Connection { error, sent: true }
                    }
                })?
                .to_bytes();
            Ok::<_, Failure>((status, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                Failure::Final(ClientError::Transport(format!(
                    "no answer within {:?}",
                    self.timeout
                )))
            })?
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        admin: bool,
    ) -> Result<Bytes, ClientError> {
        let (status, bytes) = self.raw(method, path, body, admin).await?;
        if status.is_success() {
            return Ok(bytes);
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let text = |k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_owned);
        Err(ClientError::Refused {
            status: status.as_u16(),
            code: text("code"),
            error: text("error")
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(500).collect()),
            hint: text("hint").unwrap_or_default(),
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        admin: bool,
    ) -> Result<T, ClientError> {
        let body = body.map(|v| ("application/json", v.to_string().into_bytes()));
        let bytes = self.call(method, path, body, admin).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse(e.to_string()))
    }

    /// The parameters of the vault's client password KDF (`GET
    /// /v1/client-kdf`), as the JSON document the vault keeps.
    pub async fn client_kdf(&self) -> Result<String, ClientError> {
        let bytes = self
            .call(Method::GET, "/v1/client-kdf", None, false)
            .await?;
        String::from_utf8(bytes.to_vec()).map_err(|e| ClientError::BadResponse(e.to_string()))
    }

    /// Logs `principal` in with its login authenticator (`POST
    /// /v1/session`) and answers a client that sends the session token.
    pub async fn open_session(
        &self,
        principal: PrincipalId,
        authenticator: &LoginAuthenticator,
    ) -> Result<Self, ClientError> {
        let body = serde_json::json!({
            "principal": principal,
            "authenticator": hex::encode(authenticator.dangerous_as_bytes()),
        });
        let session: SessionAnswer = self
            .json(Method::POST, "/v1/session", Some(body), false)
            .await?;
        if session.principal != principal {
            return Err(ClientError::BadResponse(
                "the session names another account".to_owned(),
            ));
        }
        Ok(self.clone().with_session(&session.token))
    }

    /// The migration status.
    pub async fn status(&self) -> Result<StatusReport, ClientError> {
        self.json(Method::GET, "/v1/migration/status", None, false)
            .await
    }

    /// The status with the pending and blocked principals' names (admin);
    /// `all`: every one, not just the first.
    pub async fn admin_status(&self, all: bool) -> Result<StatusReport, ClientError> {
        let path = if all {
            "/v1/admin/status?all=true"
        } else {
            "/v1/admin/status"
        };
        self.json(Method::GET, path, None, true).await
    }

    /// Runs the preparation checks (admin); answers the report's JSON.
    pub async fn preflight(&self) -> Result<serde_json::Value, ClientError> {
        self.json(Method::POST, "/v1/admin/preflight", None, true)
            .await
    }

    /// Starts the migration with `code_word` (admin), to the default
    /// target.
    pub async fn start(&self, code_word: &str) -> Result<StartReport, ClientError> {
        self.start_to(code_word, None).await
    }

    /// Starts the migration with `code_word` (admin), moving keys to
    /// `target` (`None`: the default, or the run's own when resuming).
    pub async fn start_to(
        &self,
        code_word: &str,
        target: Option<rekey_core::Target>,
    ) -> Result<StartReport, ClientError> {
        let mut body = serde_json::json!({ "code_word": code_word });
        if let Some(target) = target {
            body["target_scheme"] = serde_json::json!(target);
        }
        self.json(Method::POST, "/v1/admin/start", Some(body), true)
            .await
    }

    /// Finalizes (admin).
    pub async fn finalize(&self) -> Result<FinalizeReport, ClientError> {
        self.json(Method::POST, "/v1/admin/finalize", None, true)
            .await
    }

    /// Aborts (admin).
    pub async fn abort(&self) -> Result<AbortReport, ClientError> {
        self.json(Method::POST, "/v1/admin/abort", None, true).await
    }
}

impl MigrationApi for HttpClient {
    type Error = ClientError;

    /// `GET /v1/principals/{id}/package`, checked as untrusted input (see
    /// [`rekey_core::bundle::package`]).
    async fn package(&self, principal: PrincipalId) -> Result<MigrationPackage, ClientError> {
        let bytes = self
            .call(
                Method::GET,
                &format!("/v1/principals/{principal}/package"),
                None,
                false,
            )
            .await?;
        Ok(parse_package(&bytes, principal, self.vault)?)
    }

    /// `POST /v1/principals/{id}/bundle`.
    async fn submit(
        &self,
        principal: PrincipalId,
        bundle: Vec<u8>,
    ) -> Result<ApplyReport, ClientError> {
        let bytes = self
            .call(
                Method::POST,
                &format!("/v1/principals/{principal}/bundle"),
                Some(("application/octet-stream", bundle)),
                false,
            )
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse(e.to_string()))
    }

    /// `GET /v1/principals/{id}/role-checks`, checked as untrusted input.
    async fn role_checks(&self, principal: PrincipalId) -> Result<Vec<RoleCheck>, ClientError> {
        let bytes = self
            .call(
                Method::GET,
                &format!("/v1/principals/{principal}/role-checks"),
                None,
                false,
            )
            .await?;
        parse_role_checks(&bytes, principal, self.vault)
            .map_err(|e| ClientError::BadResponse(e.to_string()))
    }

    /// `POST /v1/principals/{id}/role-receipts`.
    async fn confirm(&self, principal: PrincipalId, receipt: Receipt) -> Result<(), ClientError> {
        let body = serde_json::to_vec(&ReceiptJson::from(&receipt))
            .map_err(|e| ClientError::BadResponse(e.to_string()))?;
        self.call(
            Method::POST,
            &format!("/v1/principals/{principal}/role-receipts"),
            Some(("application/json", body)),
            false,
        )
        .await?;
        Ok(())
    }
}
