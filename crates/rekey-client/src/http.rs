//! [`HttpClient`]: what a client (the CLI's `login --server`, the demo's
//! simulated clients, the load bench, the tests) uses to talk to a
//! rekey-server: fetch a migration package (checked as untrusted input),
//! submit a bundle, read the status, and call the admin endpoints. Plain
//! HTTP/1 on hyper; put the server behind a TLS terminator anywhere but
//! loopback. One client may speak to several servers of one vault
//! ([`HttpClient::with_servers`]): requests go round-robin and move on to
//! the next server when one does not answer ([`crate::servers`]).

use crate::migrate::{ApiError, MigrationApi};
use crate::servers::Servers;
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
use std::time::Instant;

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
/// How long opening a connection may take (a host that is down drops the
/// connection attempt rather than refusing it); then it counts as a
/// connection that could not be opened.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server URL is unusable.
    #[error("invalid server URL {0:?}: use http://host:port")]
    BadUrl(String),
    /// The vault name (of a server of several vaults) is unusable.
    #[error("invalid vault name {0:?}: a name is 1 to 64 characters of a-z, 0-9, _ and -")]
    BadVaultName(String),
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

/// Where a server of several vaults serves each one's API (in place of
/// `/v1`).
const VAULTS: &str = "/v1/vaults/";

/// `url` without a trailing `/v1/vaults/{name}`, and the name: the URL of
/// one vault of a server of several (`http://host:port/v1/vaults/berlin`).
fn split_vault(url: &str) -> (&str, Option<&str>) {
    let trimmed = url.trim_end_matches('/');
    match trimmed.rsplit_once(VAULTS) {
        Some((server, name)) if !name.contains('/') && server.contains("://") => {
            (server, Some(name))
        }
        _ => (url, None),
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

/// Answers after which a request that is safe to send again goes to
/// another server, when the client has more than one: the server (or a
/// proxy in front of it) is there but cannot serve now.
fn is_unavailable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

/// An HTTP client of a rekey-server, or of several servers of one vault.
/// Clones share the connections and the servers' turn.
#[derive(Clone)]
pub struct HttpClient {
    servers: Arc<Servers>,
    client: Client<HttpConnector, Full<Bytes>>,
    admin_token: Option<Arc<str>>,
    session: Option<Arc<str>>,
    vault: Option<VaultId>,
    /// `/v1/vaults/{name}`, sent in place of `/v1`, for one vault of a
    /// server of several.
    api: Option<Arc<str>>,
    max_response_bytes: usize,
    timeout: std::time::Duration,
    attempts: usize,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("servers", &self.servers.bases())
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "[redacted]"),
            )
            .field("session", &self.session.as_ref().map(|_| "[redacted]"))
            .field("vault", &self.vault)
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client of the server at `base_url` (`http://host:port`). A URL
    /// ending in `/v1/vaults/{name}` is one vault of a server of several:
    /// the client is [`HttpClient::for_vault`] of the server.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        Self::with_servers(&[base_url])
    }

    /// A client of vault `name` of the server of several vaults at
    /// `base_url` (`http://host:port`): its requests go to
    /// `/v1/vaults/{name}/…` instead of `/v1/…`.
    pub fn for_vault(base_url: &str, name: &str) -> Result<Self, ClientError> {
        Self::new(base_url)?.with_vault(name)
    }

    /// This client, talking to vault `name` of a server (or servers) of
    /// several vaults: `/v1/…` paths go to `/v1/vaults/{name}/…`. Refuses a
    /// name that is not 1 to 64 of `a-z`, `0-9`, `_`, `-`, and a client
    /// that names another vault already.
    pub fn with_vault(mut self, name: &str) -> Result<Self, ClientError> {
        if !rekey_core::ids::valid_vault_name(name) {
            return Err(ClientError::BadVaultName(name.chars().take(80).collect()));
        }
        if self.vault_name().is_some_and(|v| v != name) {
            return Err(ClientError::BadUrl(format!(
                "{}{VAULTS}{name} (the client talks to vault {:?} already)",
                self.base_url(),
                self.vault_name().unwrap_or_default()
            )));
        }
        self.api = Some(Arc::from(format!("{VAULTS}{name}")));
        Ok(self)
    }

    /// The vault this client talks to on a server of several vaults.
    #[must_use]
    pub fn vault_name(&self) -> Option<&str> {
        self.api.as_deref().and_then(|a| a.strip_prefix(VAULTS))
    }

    /// Where a request to `path` goes on server `server`: a `/v1/…` path
    /// under `/v1/vaults/{name}` for a client of one vault of a server of
    /// several; any other path (`/metrics`, `/ready`), and every path of
    /// a single-vault client, as it is.
    fn url_on(&self, server: usize, path: &str) -> String {
        let base = self.servers.base(server);
        match (&self.api, path.strip_prefix("/v1/")) {
            (Some(api), Some(rest)) => format!("{base}{api}/{rest}"),
            _ => format!("{base}{path}"),
        }
    }

    /// Where a request to `path` goes (on the first server, with several):
    /// see [`HttpClient::with_vault`].
    #[must_use]
    pub fn url_of(&self, path: &str) -> String {
        self.url_on(0, path)
    }

    /// A client of several servers of one vault (`http://host:port` each):
    /// requests take them in turn, and one that does not answer is left
    /// out for a while ([`crate::servers`]). Refuses an empty list.
    pub fn with_servers<S: AsRef<str>>(base_urls: &[S]) -> Result<Self, ClientError> {
        if base_urls.is_empty() {
            return Err(ClientError::BadUrl(String::new()));
        }
        let mut bases = Vec::with_capacity(base_urls.len());
        // A URL may name one vault of a server of several; all must name
        // the same one.
        let mut vault_names = Vec::with_capacity(base_urls.len());
        for url in base_urls {
            let url = url.as_ref();
            let (server, vault_name) = split_vault(url);
            vault_names.push(vault_name);
            if vault_names.first() != Some(&vault_name) {
                return Err(ClientError::BadUrl(url.to_owned()));
            }
            let base = server.trim_end_matches('/').to_owned();
            let uri: Uri = base
                .parse()
                .map_err(|_| ClientError::BadUrl(url.to_owned()))?;
            if uri.scheme_str() != Some("http") || uri.host().is_none() {
                return Err(ClientError::BadUrl(url.to_owned()));
            }
            bases.push(base);
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        Ok(Self {
            servers: Arc::new(Servers::new(bases)),
            client: Client::builder(TokioExecutor::new()).build(connector),
            admin_token: None,
            session: None,
            vault: None,
            api: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_TRANSPORT_ATTEMPTS,
        })
        .and_then(|c| match vault_names.first().copied().flatten() {
            Some(name) => c.with_vault(name),
            None => Ok(c),
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
    /// each time up to [`MAX_BACKOFF`]. With several servers a failed
    /// attempt goes on to the next server at once, and the pause comes
    /// after a round in which every server failed: at most `attempts`
    /// rounds. A connection that could not be
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

    /// The server's base URL (the first one's, with several), without a
    /// vault's `/v1/vaults/{name}` ([`HttpClient::vault_name`]).
    #[must_use]
    pub fn base_url(&self) -> &str {
        self.servers.base(0)
    }

    /// Every server's base URL, in turn order.
    #[must_use]
    pub fn base_urls(&self) -> &[String] {
        self.servers.bases()
    }

    /// One request; answers the status and body whatever the status.
    /// `admin` sends the admin token (if the client has one). A connection
    /// that fails before any answer is retried (see
    /// [`HttpClient::with_transport_attempts`]); with several servers, on
    /// the next one, and a request that is safe to resend and is answered
    /// 502, 503 or 504 is sent to the next server too, unless every server
    /// answered so ([`crate::servers`]).
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
        let n = self.servers.len();
        let mut pause = FIRST_BACKOFF;
        // Connection failures of this request; after each `n` in a row (a
        // round in which no server answered) the client pauses.
        let mut failures = 0;
        // Servers that answered "unavailable" to this request.
        let mut unavailable = 0;
        let mut server = self.servers.pick(None, Instant::now());
        loop {
            let outcome = self
                .exchange(server, &method, path, body.clone(), admin)
                .await;
            match outcome {
                Ok((status, bytes)) => {
                    self.servers.answered(server);
                    if n > 1 && resend_safe && is_unavailable(status) && unavailable + 1 < n {
                        unavailable += 1;
                        tracing::debug!(server = self.servers.base(server), %status, "server unavailable; trying the next");
                        server = self.servers.pick(Some(server), Instant::now());
                        continue;
                    }
                    return Ok((status, bytes));
                }
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Connection { error, sent }) if sent && !resend_safe => {
                    self.servers.failed(server, Instant::now());
                    return Err(ClientError::Transport(error));
                }
                Err(Failure::Connection { error: e, .. }) => {
                    self.servers.failed(server, Instant::now());
                    failures += 1;
                    if failures >= self.attempts.saturating_mul(n) {
                        return Err(ClientError::Transport(if failures > 1 {
                            format!("{e} (after {failures} attempts)")
                        } else {
                            e
                        }));
                    }
                    tracing::debug!(attempt = failures, server = self.servers.base(server), error = %e, "no answer; sending again");
                    if failures % n == 0 {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(MAX_BACKOFF);
                    }
                    server = self.servers.pick(Some(server), Instant::now());
                }
            }
        }
    }

    /// One attempt of [`HttpClient::raw`].
    async fn exchange(
        &self,
        server: usize,
        method: &Method,
        path: &str,
        body: Option<(String, Bytes)>,
        admin: bool,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(self.url_on(server, path));
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

    /// Runs the preparation checks for a start to `target` (admin): the
    /// disk-space estimate is sized for its grants.
    pub async fn preflight_for(
        &self,
        target: rekey_core::Target,
    ) -> Result<serde_json::Value, ClientError> {
        let path = format!("/v1/admin/preflight?target_scheme={}", target.name());
        self.json(Method::POST, &path, None, true).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A server on loopback that answers every request with `status`.
    fn answering(status: u16) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in l.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => head.extend_from_slice(&chunk[..k]),
                    }
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            }
        });
        format!("http://{addr}")
    }

    /// A loopback address nothing listens on (connections are refused).
    fn dead() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    async fn get(c: &HttpClient) -> Result<u16, ClientError> {
        let (status, _) = c.raw(Method::GET, "/health", None, false).await?;
        Ok(status.as_u16())
    }

    #[test]
    fn a_request_moves_on_from_a_dead_server_without_waiting_for_it() {
        block_on(async {
            // One attempt per server: the dead one (first in turn) fails,
            // the request goes on to the live one at once.
            let both = HttpClient::with_servers(&[dead(), answering(200)])
                .unwrap()
                .with_transport_attempts(1);
            assert_eq!(both.base_urls().len(), 2);
            for _ in 0..4 {
                assert_eq!(get(&both).await.unwrap(), 200);
            }
            // Alone, the dead server is the end of it.
            let alone = HttpClient::new(&dead()).unwrap().with_transport_attempts(1);
            assert!(matches!(get(&alone).await, Err(ClientError::Transport(_))));
            // Every server dead: the client gives up after its rounds.
            let none = HttpClient::with_servers(&[dead(), dead()])
                .unwrap()
                .with_transport_attempts(2);
            match get(&none).await {
                Err(ClientError::Transport(e)) => assert!(e.contains("after 4 attempts"), "{e}"),
                other => panic!("{other:?}"),
            }
        });
    }

    #[test]
    fn an_unavailable_server_passes_a_safe_request_to_the_next() {
        block_on(async {
            let busy_first = HttpClient::with_servers(&[answering(503), answering(200)]).unwrap();
            // Reads go on to the server that can answer...
            for _ in 0..4 {
                assert_eq!(get(&busy_first).await.unwrap(), 200);
            }
            // ... an admin action is never sent twice: its answer is the
            // one of the server it went to (in turn: the busy one, then
            // the other).
            let admin = |c: &HttpClient| {
                let c = c.clone();
                async move {
                    let (s, _) = c
                        .raw(Method::POST, "/v1/admin/start", None, true)
                        .await
                        .unwrap();
                    s.as_u16()
                }
            };
            let c = HttpClient::with_servers(&[answering(503), answering(200)]).unwrap();
            assert_eq!(admin(&c).await, 503);
            assert_eq!(admin(&c).await, 200);
            // Every server unavailable: the client has that answer.
            let all_busy = HttpClient::with_servers(&[answering(503), answering(502)]).unwrap();
            assert!(matches!(get(&all_busy).await.unwrap(), 502 | 503));
            // One server: its answer, as always.
            let one = HttpClient::new(&answering(503)).unwrap();
            assert_eq!(get(&one).await.unwrap(), 503);
        });
    }

    #[test]
    fn a_client_needs_a_server_and_usable_urls() {
        let none: [&str; 0] = [];
        assert!(matches!(
            HttpClient::with_servers(&none),
            Err(ClientError::BadUrl(_))
        ));
        assert!(matches!(
            HttpClient::with_servers(&["http://127.0.0.1:1", "ftp://x"]),
            Err(ClientError::BadUrl(u)) if u == "ftp://x"
        ));
        let c = HttpClient::with_servers(&["http://a:1/", "http://b:2"]).unwrap();
        assert_eq!(c.base_url(), "http://a:1");
        assert_eq!(c.base_urls(), ["http://a:1", "http://b:2"]);
    }
}

#[cfg(test)]
mod vault_tests {
    use super::*;

    #[test]
    fn a_client_of_one_vault_sends_the_api_under_the_vault() {
        let single = HttpClient::new("http://127.0.0.1:8080/").unwrap();
        assert_eq!(single.vault_name(), None);
        assert_eq!(
            single.url_of("/v1/session"),
            "http://127.0.0.1:8080/v1/session"
        );

        let berlin = HttpClient::for_vault("http://127.0.0.1:8080", "berlin").unwrap();
        assert_eq!(berlin.vault_name(), Some("berlin"));
        assert_eq!(berlin.base_url(), "http://127.0.0.1:8080");
        assert_eq!(
            berlin.url_of("/v1/principals/x/bundle"),
            "http://127.0.0.1:8080/v1/vaults/berlin/principals/x/bundle"
        );
        assert_eq!(berlin.url_of("/metrics"), "http://127.0.0.1:8080/metrics");

        // The vault's URL names it too (also behind a path prefix, and for
        // several servers of the vault).
        for (url, server) in [
            ("http://h:1/v1/vaults/berlin", "http://h:1"),
            ("http://h:1/v1/vaults/berlin/", "http://h:1"),
            ("http://h:1/rekey/v1/vaults/berlin", "http://h:1/rekey"),
        ] {
            let c = HttpClient::new(url).unwrap();
            assert_eq!(
                (c.vault_name(), c.base_url()),
                (Some("berlin"), server),
                "{url}"
            );
            assert_eq!(
                c.url_of("/v1/session"),
                format!("{server}/v1/vaults/berlin/session")
            );
        }
        let two = HttpClient::with_servers(&[
            "http://a:1/v1/vaults/berlin",
            "http://b:1/v1/vaults/berlin",
        ])
        .unwrap();
        assert_eq!(two.vault_name(), Some("berlin"));
        assert_eq!(two.base_urls(), ["http://a:1", "http://b:1"]);
        assert!(matches!(
            HttpClient::with_servers(&["http://a:1/v1/vaults/berlin", "http://b:1/v1/vaults/paris"]),
            Err(ClientError::BadUrl(u)) if u == "http://b:1/v1/vaults/paris"
        ));
        assert!(matches!(
            HttpClient::with_servers(&["http://a:1/v1/vaults/berlin", "http://b:1"]),
            Err(ClientError::BadUrl(_))
        ));

        for bad in ["Berlin", "", "a b", "../x", "x".repeat(65).as_str()] {
            let e = HttpClient::for_vault("http://h:1", bad).unwrap_err();
            assert!(matches!(e, ClientError::BadVaultName(_)), "{bad}: {e}");
        }
        assert!(matches!(
            HttpClient::new("http://h:1/v1/vaults/Bad").unwrap_err(),
            ClientError::BadVaultName(_)
        ));
        // A client of one vault is not turned into a client of another.
        assert!(matches!(
            HttpClient::for_vault("http://h:1/v1/vaults/a", "b").unwrap_err(),
            ClientError::BadUrl(_)
        ));
        assert!(HttpClient::for_vault("http://h:1/v1/vaults/a", "a").is_ok());
        assert!(matches!(
            HttpClient::for_vault("ftp://h:1", "b").unwrap_err(),
            ClientError::BadUrl(_)
        ));
    }
}
