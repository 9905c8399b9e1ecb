//! rekey-server: the HTTP API clients use while a vault migrates from
//! legacy RSA keys to P-256, an admin API, a status page and metrics.
//!
//! ```text
//! GET  /                                       status page (HTML, refreshes every 2 s)
//! GET  /health  /ready  /metrics  /openapi.json
//! GET  /v1/migration/status                    what `rekey status --format json` prints
//! POST /v1/admin/{preflight,start,finalize,abort}            Bearer admin token
//! POST /v1/admin/devices/{id}/write-off                      Bearer admin token
//! POST /v1/admin/non-migratable/{grant}/resolve              Bearer admin token
//! GET  /v1/principals/{id}/package             rekey-package/1 JSON (docs/PROTOCOL.md)
//! POST /v1/principals/{id}/bundle              the binary bundle (docs/PROTOCOL.md)
//! GET  /v1/records/{id}   PUT /v1/records/{id} (admin; 423 during the migration)
//! ```
//!
//! [`routes::ROUTES`] is the one route table: the router and the OpenAPI
//! document are both generated from it.
//!
//! # Authentication
//!
//! - **Admin** endpoints (and record writes) take `Authorization: Bearer
//!   <token>`. The token is given at start-up, kept only as its SHA-256 and
//!   compared in constant time ([`AdminToken`]); it is never logged.
//! - **Clients** present no token: the server cannot know passwords (it must
//!   never see them). A bundle carries an RSA-PSS signature by the
//!   account's legacy private key, which only the holder of the account's
//!   master secret can unwrap, and an ECDSA signature by each new key; the
//!   engine accepts a bundle only if these verify and its first part is the
//!   account in the URL. The package endpoint is open in this demo server
//!   and answers only public keys and wrapped (encrypted) material, but
//!   the wrapped legacy private key is protected by the user's password
//!   alone (through the vault's password KDF): anyone who can fetch it can
//!   try passwords offline. A real deployment must put the vault's own
//!   session authentication in front of the package endpoint (and rate
//!   limits in front of both client endpoints).
//!
//! # Status codes of `POST /v1/principals/{id}/bundle`
//!
//! 200 applied · 400 malformed (with the reason) · 403 signature refused
//! (not signed by this account, or posted at another account's URL) · 409
//! conflict (already migrated, grants or holders changed: fetch a new
//! package and rebuild) · 413 too large · 415 not
//! `application/octet-stream` · 423 the vault is not in the user phase.
//! Every error body is `{"error": "...", "code": "...", "hint": "..."}`.
//!
//! # Work off the async workers
//!
//! Bundle checking (parsing, RSA-PSS and ECDSA verification) and the start
//! (the server phase re-wraps every server-held grant) run on tokio's
//! blocking pool: the engine call runs there under `Handle::block_on`, so
//! its database calls stay on this runtime while the CPU-heavy check never
//! occupies an async worker.
//!
//! # Load bench
//!
//! `cargo bench -p rekey-server --bench load` (`REKEY_BENCH_USERS`,
//! default 1000; `REKEY_BENCH_CLIENTS`, default 32) migrates a demo vault
//! through the API with concurrent clients on loopback and prints
//! bundles/s and the p50/p99 latency of submissions and whole logins.

pub mod args;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod state;
pub mod status;

pub use args::{DEFAULT_DATABASE_URL, DEFAULT_KEY_DIR, ServeArgs};
pub use error::ServerError;
pub use routes::{ROUTES, router};
pub use state::{AdminToken, AppState, ServerConfig};

use rekey_engine::{Engine, KeyDir};
use std::future::Future;
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
    run(listener, state, config.heartbeat_every, shutdown_signal()).await
}

/// Serves `state` on an already bound `listener` until `shutdown`
/// completes; records a heartbeat every `heartbeat_every`.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    heartbeat_every: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    state.heartbeat().await?;
    let addr = listener.local_addr().ok();
    tracing::info!(server = state.name(), addr = ?addr, "serving (status page at /, API under /v1, metrics at /metrics)");
    let beat = state.clone();
    let heartbeats = tokio::spawn(async move {
        let mut tick = tokio::time::interval(heartbeat_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = beat.heartbeat().await {
                tracing::warn!(error = %e, "heartbeat failed");
            }
        }
    });
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| ServerError::Io {
            context: "serving".to_owned(),
            source: e,
        });
    heartbeats.abort();
    tracing::info!("stopped");
    result
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
    tracing::info!("shutdown requested; finishing in-flight requests");
}
