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
//! GET  /v1/principals/{id}/package             rekey-package/1 JSON (see [`package`])
//! POST /v1/principals/{id}/bundle              binary SignedBundle
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
//! Every error body is `{"error": "...", "hint": "..."}`.
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

pub mod client;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod package;
pub mod routes;
pub mod state;
pub mod status;

pub use client::{ClientError, HttpClient, MigrateReport};
pub use error::ServerError;
pub use package::{PackageJson, parse_package};
pub use routes::{ApplyResponse, ROUTES, router};
pub use state::{AdminToken, AppState, ServerConfig};
pub use status::MigrationStatus;

use rekey_engine::{Engine, KeyDir};
use rekey_storage::Vault;
use std::future::Future;
use tokio::net::TcpListener;

/// Opens the vault and key directory of `config`, binds, registers the
/// server in the vault, and serves until SIGTERM or ctrl-c (in-flight
/// requests finish first).
pub async fn serve(config: ServerConfig) -> Result<(), ServerError> {
    let vault = Vault::open(&config.db_url)
        .await
        .map_err(|e| ServerError::Open(e.into()))?;
    let keys = KeyDir::open(&config.key_dir).map_err(ServerError::Open)?;
    let engine = Engine::new(vault, Some(keys), format!("server:{}", config.server_name));
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|e| ServerError::Io {
            context: format!("cannot listen on {}", config.bind),
            source: e,
        })?;
    let state = AppState::new(engine, &config);
    run(listener, state, config.heartbeat_every, shutdown_signal()).await
}

/// Serves `state` on `listener` until `shutdown` completes, heartbeating
/// every `heartbeat_every` (the first one registers the server before the
/// first request is taken).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    heartbeat_every: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    state.heartbeat().await?;
    let addr = listener.local_addr().ok();
    tracing::info!(server = state.name(), addr = ?addr, "serving");
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
    let result = axum::serve(listener, router(state))
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

/// Completes on SIGTERM or ctrl-c.
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
