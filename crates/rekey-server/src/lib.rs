//! rekey-server: the HTTP API clients use while a vault migrates from
//! legacy RSA keys to P-256, an admin API, a status page and metrics.
//!
//! ```text
//! GET  /                                       status page (HTML, refreshes every 2 s; no names)
//! GET  /health  /ready  /metrics  /openapi.json
//! GET  /v1/migration/status                    progress, rate, estimate (no names)
//! GET  /v1/admin/status[?all=true]             what `rekey status --format json` prints (admin)
//! POST /v1/admin/preflight[?target_scheme=T]                Bearer admin token
//! POST /v1/admin/{start,finalize,abort}                      Bearer admin token
//! POST /v1/admin/devices/{id}/write-off                      Bearer admin token
//! POST /v1/admin/non-migratable/{grant}/resolve              Bearer admin token
//! GET  /v1/client-kdf                          the clients' password-KDF parameters
//! POST /v1/session                             log in with the login authenticator
//! GET  /v1/principals/{id}/package             rekey-package/2 JSON (session of {id})
//! POST /v1/principals/{id}/bundle              the binary bundle (session of {id})
//! GET  /v1/principals/{id}/role-checks         roles {id} must confirm (session of {id})
//! POST /v1/principals/{id}/role-receipts       a role receipt (session of {id})
//! GET|PUT /v1/records/{id}                     admin; PUT answers 423 during the migration
//! ```
//!
//! [`routes::ROUTES`] is the one route table: the router and the OpenAPI
//! document are both generated from it.
//!
//! # Several vaults in one process
//!
//! [`serve_vaults`] (or [`VaultSet`] and [`run_vaults`]) serves several named
//! vaults: every `/v1/…` route above is served for each vault under
//! `/v1/vaults/{name}/…`, its status page at `/vaults/{name}`; `/` lists
//! the vaults, `/metrics` labels each vault's series with `vault="name"`,
//! `/ready` answers once every vault's database does. See [`fleet`].
//!
//! # Authentication
//!
//! - **Admin** endpoints (and records) take `Authorization: Bearer
//!   <token>`. The token is given at start-up, kept only as its SHA-256 and
//!   compared in constant time ([`AdminToken`]); it is never logged.
//! - **Clients** send a session token of their own account ([`auth`]): a
//!   package holds the account's password-wrapped legacy key, which anyone
//!   who had it could attack offline, so it is served only to a client
//!   that proved the account's master secret. The server never sees a
//!   password or a master secret: the client sends a login authenticator
//!   derived from its master secret, and the vault keeps only an Argon2id
//!   verifier of it. Failed logins are limited per account and per
//!   address. A bundle is also signed by the account's legacy key and by
//!   each new key; the engine accepts it only if these verify and its
//!   first part is the account in the URL.
//!
//! # Status codes of `POST /v1/principals/{id}/bundle`
//!
//! 200 applied · 400 malformed (with the reason) · 401 no valid session ·
//! 403 the session or the signatures belong to another account · 408 the
//! body was too slow · 409 conflict (already migrated, grants or holders
//! changed: fetch a new package and rebuild) · 413 too large (from its
//! Content-Length, before reading) · 415 not `application/octet-stream` ·
//! 423 the vault is not in the user phase · 503 too many bundles being
//! checked at once (Retry-After). Every error body is `{"error": "...",
//! "code": "...", "hint": "..."}`.
//!
//! # Work off the async workers
//!
//! Bundle checking (parsing, RSA-PSS and ECDSA verification) and the start
//! (the server phase re-wraps every server-held grant) run on tokio's
//! blocking pool: the engine call runs there under `Handle::block_on`, so
//! its database calls stay on this runtime while the CPU-heavy check never
//! occupies an async worker.
//!
//! # Several servers, one vault
//!
//! Any number of `rekey serve` may serve one vault (PostgreSQL or
//! MariaDB; SQLite only on one machine) behind a load balancer or a
//! client-side round-robin (`rekey_client::servers`; `rekey demo
//! login-all --server A --server B …`). No sticky sessions are needed:
//! every request may go to any server. What a server keeps:
//!
//! | state | where |
//! |---|---|
//! | phase, run, target, progress, pending, blockers | the vault, read per request |
//! | rate and estimate, the page's history chart | computed per request from the vault (start time, counts, audit log) |
//! | preflight results | computed per request from the vault; `start` runs preflight itself |
//! | sessions | stateless tokens signed with the vault's session key (`setting.session_key`, first writer wins); each process reads it once: a session opened on one server is taken by all |
//! | login verifiers, client KDF parameters, role receipts | the vault |
//! | server list and heartbeats | the vault, one row per `--name` |
//! | failed-login counters ([`auth::LoginLimits`]) | **per process** |
//! | `/metrics` counters and latency histograms ([`metrics`]) | **per process** (the `rekey_principals`, `rekey_grants` and phase gauges are read from the vault: the same on every server, do not sum them) |
//! | bundle slots (`--max-concurrent-bundles`), connection cap (`--max-connections`), request ids | **per process** |
//! | the database pool (8 connections) | **per process**: N servers hold up to 8·N |
//!
//! Running several:
//!
//! - **Limits are per process.** N servers check up to N times
//!   `--max-concurrent-bundles` bundles at once and allow N times the
//!   failed logins per account. A server counts failures per *peer*
//!   address and does not read `X-Forwarded-For`: behind a proxy every
//!   client has the proxy's address, so put the per-client limit at the
//!   proxy.
//! - **Heartbeats.** Each server registers itself in the vault's server
//!   list under `--name` (default: the host name; servers on one host need
//!   distinct names, else they share one entry) and beats every
//!   `--heartbeat-secs`. Preflight wants exactly one server with a
//!   heartbeat in the last 5 minutes (the manual's one active vault
//!   server): run preflight and `start` with one server up, then start the
//!   others. Finalize refuses while a server in the list, a stopped one
//!   too, has not reported the new certificate keys: give every server
//!   the key directory as `start` left it (or `rekey cert import
//!   --server-name NAME` from a backup made after the start).
//! - **Admin actions** go to any one server, once (the client never
//!   resends one); their effect is in the vault, so every server sees it
//!   at once.
//! - **Health.** Balance on `GET /ready` (503 while the vault's database
//!   does not answer); a server answering 503 `busy` is full, another may
//!   take the request (the round-robin client does that for requests safe
//!   to resend).
//! - Tested: `rekey-cli/tests/servers.rs` runs three servers on one
//!   PostgreSQL, MariaDB or SQLite vault, kills one mid-run, and the
//!   logins finish through the other two with nothing lost or duplicated.
//!
//! # Load bench
//!
//! `cargo bench -p rekey-server --bench load` (`REKEY_BENCH_USERS`,
//! default 1000; `REKEY_BENCH_CLIENTS`, default 32) migrates a demo vault
//! through the API with concurrent clients on loopback and prints
//! bundles/s and the p50/p99 latency of submissions and whole logins.
//! `cargo bench -p rekey-server --bench submit` measures the server alone:
//! bundles built before the clock (about 100 and 1,000 grants each) are
//! submitted by 1, 8 and 64 concurrent submitters to fresh copies of one
//! started vault on SQLite and PostgreSQL (PostgreSQL copies need `psql`);
//! it prints bundles/s, grants/s and the p50/p99 latency per cell.

pub mod answers;
pub mod args;
pub mod auth;
pub mod error;
pub mod fleet;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod state;
pub mod status;

pub use args::{DEFAULT_DATABASE_URL, DEFAULT_KEY_DIR, ServeArgs};
pub use auth::{BuiltinSessions, ClientAuth};
pub use error::ServerError;
pub use fleet::{VaultSet, VaultSite, check_vault_name, check_vault_names};
pub use routes::{ROUTES, router};
pub use state::{AdminToken, AppState, ServerConfig};

use rekey_engine::{Engine, KeyDir};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Logs to stderr through `tracing`: the level comes from `RUST_LOG` (for
/// example `RUST_LOG=debug` or `RUST_LOG=rekey_server=debug,warn`), by
/// default `info` for rekey's crates and `warn` for the rest. Log lines
/// never hold key material, tokens or request bodies. Call once, before
/// serving; a second call changes nothing.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("warn,rekey_server=info,rekey_engine=info,rekey_storage=info")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Opens the vault and its key directory, binds, and serves until Ctrl-C or
/// SIGTERM (finishing the requests in flight).
pub async fn serve(config: ServerConfig) -> Result<(), ServerError> {
    let keys = KeyDir::open(&config.key_dir).map_err(|e| ServerError::Open(e.into()))?;
    let engine = Engine::open(
        &config.db_url,
        Some(keys),
        format!("server:{}", config.server_name),
    )
    .await
    .map_err(ServerError::Open)?;
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|e| ServerError::Io {
            context: format!("cannot listen on {}", config.bind),
            source: e,
        })?;
    let state = AppState::new(engine, &config);
    run(
        listener,
        state,
        config.heartbeat_every,
        ConnectionLimits::from(&config),
        shutdown_signal(),
    )
    .await
}

/// Opens every vault of `vaults` (each with its own engine and key
/// directory), binds `config.bind`, and serves them all until Ctrl-C or
/// SIGTERM (finishing the requests in flight): each vault's API under
/// `/v1/vaults/{name}/…` (see [`fleet`]). `config` gives the admin token,
/// server name, limits and bind address of all; its `db_url` and `key_dir`
/// are not used. Bad or repeated names are refused before anything is
/// opened.
pub async fn serve_vaults(vaults: Vec<VaultSite>, config: ServerConfig) -> Result<(), ServerError> {
    let set = VaultSet::open(vaults, &config).await?;
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|e| ServerError::Io {
            context: format!("cannot listen on {}", config.bind),
            source: e,
        })?;
    run_vaults(
        listener,
        set,
        config.heartbeat_every,
        ConnectionLimits::from(&config),
        shutdown_signal(),
    )
    .await
}

/// How the accept loop treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Time to send a request's headers; also how long a kept-alive
    /// connection may stay idle.
    pub header_timeout: std::time::Duration,
}

impl From<&ServerConfig> for ConnectionLimits {
    fn from(c: &ServerConfig) -> Self {
        Self {
            max_connections: c.max_connections,
            header_timeout: c.header_timeout,
        }
    }
}

/// Serves `state` on an already bound `listener` until `shutdown`
/// completes, then finishes the requests in flight; records a heartbeat
/// every `heartbeat_every`.
///
/// The accept loop is written here rather than with `axum::serve`, which
/// offers neither a cap on open connections nor hyper's header timeout:
/// without them, 150 idle connections starved `/health` under a 128-file
/// limit, and half-sent requests stayed open for minutes.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    heartbeat_every: std::time::Duration,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    state.heartbeat().await?;
    let addr = listener.local_addr().ok();
    tracing::info!(server = state.name(), addr = ?addr, "serving (status page at /, API under /v1, metrics at /metrics)");
    let app = router(state.clone());
    serve_with_heartbeats(
        listener,
        app,
        vec![state],
        heartbeat_every,
        limits,
        shutdown,
    )
    .await
}

/// [`run`] for several vaults: serves `vaults` ([`VaultSet::router`]) on an
/// already bound `listener` until `shutdown` completes, then finishes the
/// requests in flight; records each vault's heartbeat in its own server
/// list every `heartbeat_every` (the first one before serving: a vault
/// that cannot record it stops the start, named in the error).
pub async fn run_vaults(
    listener: TcpListener,
    vaults: VaultSet,
    heartbeat_every: std::time::Duration,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    vaults.heartbeat().await?;
    let addr = listener.local_addr().ok();
    tracing::info!(
        server = vaults.server_name(),
        addr = ?addr,
        vaults = %vaults.names().join(","),
        "serving several vaults (list at /, each vault's API under /v1/vaults/{{name}}, its page at /vaults/{{name}}, metrics at /metrics)"
    );
    let app = vaults.router();
    let states: Vec<AppState> = vaults.vaults().cloned().collect();
    serve_with_heartbeats(listener, app, states, heartbeat_every, limits, shutdown).await
}

/// Records every state's heartbeat every `heartbeat_every` while `app` is
/// served.
async fn serve_with_heartbeats(
    listener: TcpListener,
    app: axum::Router,
    states: Vec<AppState>,
    heartbeat_every: std::time::Duration,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let heartbeats = tokio::spawn(async move {
        let mut tick = tokio::time::interval(heartbeat_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            for state in &states {
                if let Err(e) = state.heartbeat().await {
                    tracing::warn!(vault = state.vault(), error = %e, "heartbeat failed");
                }
            }
        }
    });
    let result = accept_loop(listener, app, limits, shutdown).await;
    heartbeats.abort();
    tracing::info!("stopped");
    result
}

async fn accept_loop(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.map_err(|_| ServerError::Io {
                context: "the connection limit".to_owned(),
                source: std::io::Error::other("closed"),
            })?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, a reset before accept: log,
                    // pause, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let mut app = app.clone();
                async move {
                    tower_service::Service::call(&mut app, req.map(axum::body::Body::new)).await
                }
            });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
    drop(listener);
    if tokio::time::timeout(std::time::Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after 30 s; stopping anyway");
    }
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
