//! Configuration and the state every request shares.

use crate::auth::{BuiltinSessions, ClientAuth, LoginLimits};
use crate::error::ServerError;
use crate::metrics::Metrics;
use rekey_engine::Engine;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Default body limit for bundles (64 MiB).
pub const DEFAULT_MAX_BUNDLE_BYTES: usize = 64 << 20;
/// Default body limit for every other route (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Default time between heartbeats.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// Shortest admin token accepted.
pub const MIN_TOKEN_LEN: usize = 16;
/// Bundles checked and applied at once, by default (each takes a core for
/// its signature checks and the database for its write).
pub const DEFAULT_MAX_CONCURRENT_BUNDLES: usize = 16;
/// Connections open at once, by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// How long a client has to send a request's headers (also the idle time
/// of a kept-alive connection).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request's body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// The admin token, kept only as its SHA-256 and compared in constant
/// time. `Debug` prints nothing of it.
#[derive(Clone)]
pub struct AdminToken([u8; 32]);

impl AdminToken {
    /// Hashes `token`; refuses one shorter than [`MIN_TOKEN_LEN`].
    pub fn new(token: &str) -> Result<Self, ServerError> {
        if token.len() < MIN_TOKEN_LEN {
            return Err(ServerError::Config(format!(
                "the admin token must be at least {MIN_TOKEN_LEN} characters"
            )));
        }
        Ok(Self(Sha256::digest(token.as_bytes()).into()))
    }

    /// Whether `presented` is the token (constant time in its content).
    #[must_use]
    pub fn matches(&self, presented: &str) -> bool {
        let h: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        h.ct_eq(&self.0).into()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// How to run the server.
#[derive(Clone)]
pub struct ServerConfig {
    /// The vault's database URL.
    pub db_url: String,
    /// The key directory (server-held private keys).
    pub key_dir: PathBuf,
    /// Where to listen.
    pub bind: SocketAddr,
    /// The admin token.
    pub admin_token: AdminToken,
    /// This server's name in the vault's server list.
    pub server_name: String,
    /// Body limit of `POST /v1/principals/{id}/bundle`.
    pub max_bundle_bytes: usize,
    /// Body limit of every other route.
    pub max_body_bytes: usize,
    /// Time between heartbeats.
    pub heartbeat_every: Duration,
    /// Bundles read, checked and applied at once (this bounds the memory
    /// bundle bodies take); more wait up to half the body timeout, then get
    /// `503` with `Retry-After`.
    pub max_concurrent_bundles: usize,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long a client has to send a request's headers, and how long a
    /// kept-alive connection may stay idle.
    pub header_timeout: Duration,
    /// How long a client has to send a request's body.
    pub body_timeout: Duration,
}

impl ServerConfig {
    /// A configuration with the default limits, on 127.0.0.1:8080, named
    /// after the host.
    pub fn new(
        db_url: impl Into<String>,
        key_dir: impl Into<PathBuf>,
        admin_token: &str,
    ) -> Result<Self, ServerError> {
        Ok(Self {
            db_url: db_url.into(),
            key_dir: key_dir.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: AdminToken::new(admin_token)?,
            server_name: default_server_name(),
            max_bundle_bytes: DEFAULT_MAX_BUNDLE_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            heartbeat_every: DEFAULT_HEARTBEAT,
            max_concurrent_bundles: DEFAULT_MAX_CONCURRENT_BUNDLES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        })
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("db_url", &rekey_storage::redact_url(&self.db_url))
            .field("key_dir", &self.key_dir)
            .field("bind", &self.bind)
            .field("admin_token", &self.admin_token)
            .field("server_name", &self.server_name)
            .field("max_bundle_bytes", &self.max_bundle_bytes)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("heartbeat_every", &self.heartbeat_every)
            .field("max_concurrent_bundles", &self.max_concurrent_bundles)
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .finish()
    }
}

/// The host name, or `rekey-server`.
#[must_use]
pub fn default_server_name() -> String {
    rekey_engine::host_name()
}

/// What every request shares. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
    /// The vault's name when one process serves several
    /// ([`crate::VaultSet`]).
    vault: Option<Arc<str>>,
}

#[derive(Debug)]
struct Inner {
    engine: Engine,
    token: AdminToken,
    name: String,
    max_bundle_bytes: usize,
    max_body_bytes: usize,
    body_timeout: Duration,
    metrics: Arc<Metrics>,
    auth: Arc<dyn ClientAuth>,
    limits: Arc<LoginLimits>,
    bundles: Arc<tokio::sync::Semaphore>,
}

/// What the vaults of one process share: the bundle slots
/// (`max_concurrent_bundles` bounds the memory bundle bodies take, for the
/// whole process) and the failed-login counters.
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    limits: Arc<LoginLimits>,
    bundles: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    pub(crate) fn new(config: &ServerConfig) -> Self {
        Self {
            limits: Arc::new(LoginLimits::default()),
            bundles: Arc::new(tokio::sync::Semaphore::new(
                config.max_concurrent_bundles.max(1),
            )),
        }
    }
}

impl AppState {
    /// The state for an engine (which must have the key directory) and a
    /// configuration (its token, name and limits; the database URL, key
    /// directory and bind address are the caller's business).
    #[must_use]
    pub fn new(engine: Engine, config: &ServerConfig) -> Self {
        let auth = Arc::new(BuiltinSessions::new(engine.clone()));
        Self::with_client_auth(engine, config, auth)
    }

    /// [`AppState::new`] with the vault's own client authentication in
    /// place of rekey's built-in session login (see [`crate::auth`]).
    #[must_use]
    pub fn with_client_auth(
        engine: Engine,
        config: &ServerConfig,
        auth: Arc<dyn ClientAuth>,
    ) -> Self {
        Self::build(engine, config, auth, Shared::new(config))
    }

    pub(crate) fn build(
        engine: Engine,
        config: &ServerConfig,
        auth: Arc<dyn ClientAuth>,
        shared: Shared,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                token: config.admin_token.clone(),
                name: config.server_name.clone(),
                max_bundle_bytes: config.max_bundle_bytes,
                max_body_bytes: config.max_body_bytes,
                body_timeout: config.body_timeout,
                metrics: Arc::new(Metrics::default()),
                auth,
                limits: shared.limits,
                bundles: shared.bundles,
            }),
            vault: None,
        }
    }

    /// This state as the vault `name` of a [`crate::VaultSet`].
    pub(crate) fn in_vault(mut self, name: &str) -> Self {
        self.vault = Some(Arc::from(name));
        self
    }

    /// The vault's name when the process serves several ([`crate::VaultSet`]).
    #[must_use]
    pub fn vault(&self) -> Option<&str> {
        self.vault.as_deref()
    }

    pub(crate) fn vault_arc(&self) -> Option<Arc<str>> {
        self.vault.clone()
    }

    pub(crate) fn metrics_arc(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    /// How clients are authenticated.
    #[must_use]
    pub fn client_auth(&self) -> &dyn ClientAuth {
        &*self.inner.auth
    }

    pub(crate) fn limits(&self) -> &LoginLimits {
        &self.inner.limits
    }

    pub(crate) fn bundle_permits(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.inner.bundles
    }

    pub(crate) fn body_timeout(&self) -> Duration {
        self.inner.body_timeout
    }

    /// The engine.
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The counters.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// This server's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub(crate) fn token(&self) -> &AdminToken {
        &self.inner.token
    }

    pub(crate) fn body_limit(&self, large: bool) -> usize {
        if large {
            self.inner.max_bundle_bytes
        } else {
            self.inner.max_body_bytes
        }
    }

    /// Registers this server in the vault or records its heartbeat, with
    /// the fingerprints of the keys in its key directory.
    pub async fn heartbeat(&self) -> Result<(), ServerError> {
        self.engine()
            .heartbeat(&self.inner.name)
            .await
            .map_err(ServerError::from_admin_engine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_hashed_and_compared() {
        let t = AdminToken::new("a-long-enough-admin-token").unwrap();
        assert!(t.matches("a-long-enough-admin-token"));
        assert!(!t.matches("a-long-enough-admin-tokeN"));
        assert!(!t.matches(""));
        assert_eq!(format!("{t:?}"), "AdminToken(..)");
        assert!(AdminToken::new("short").is_err());
    }
}
