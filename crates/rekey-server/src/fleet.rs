//! One process serving several vaults ([`VaultSet`]): each vault has its own
//! engine, session key, admin routes and heartbeat (in its own server
//! list), and is served under its name:
//!
//! ```text
//! GET  /                            the list of vaults (HTML), each linking to its page
//! GET  /vaults/{vault}              that vault's status page (the single-vault page)
//! *    /v1/vaults/{vault}/…         that vault's API: every /v1/… route of ROUTES
//! GET  /health                      the process answers
//! GET  /ready                       every vault's database answers (503 names those that do not)
//! GET  /metrics                     every vault's series with a vault="name" label
//! GET  /openapi.json                this layout's OpenAPI document
//! ```
//!
//! The vault routes are generated from [`ROUTES`] ([`crate::routes::vault_path`]); only
//! the process's own routes are listed here ([`FLEET_ROUTES`]). An unknown
//! vault answers `404` with the usual JSON error body. The single-vault
//! paths (`/v1/session`, …) are not served: a client names its vault.
//!
//! What the configuration limits apply to the process as a whole where it
//! matters: `max_concurrent_bundles` (it bounds the memory bundle bodies
//! take) and the failed-login counters are shared by the vaults a
//! [`VaultSet::open`] opens; body limits and timeouts apply per request.

use crate::answers::{VaultReady, VaultsReady};
use crate::auth::BuiltinSessions;
use crate::error::ServerError;
use crate::metrics::{Latency, Metrics, Scrape, exposition};
use crate::routes::{
    Answer, Auth, BodyKind, HttpMethod, ROUTES, RouteSpec, Track, health, method_not_allowed,
    not_found, public_status, vault_router, vault_templates, with_limits,
};
use crate::state::{AppState, ServerConfig, Shared};
use crate::status;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get};
use rekey_core::report::StatusReport;
use rekey_engine::{Engine, KeyDir};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

/// Longest vault name.
pub use rekey_core::ids::MAX_VAULT_NAME;

/// One vault a server of several serves: its name (in its paths, on the
/// pages and in the metrics' `vault` label), its database and its key
/// directory.
#[derive(Clone)]
pub struct VaultSite {
    /// 1 to [`MAX_VAULT_NAME`] of `a-z`, `0-9`, `_` and `-`.
    pub name: String,
    /// Its database URL.
    pub db_url: String,
    /// Its key directory (server-held private keys).
    pub key_dir: PathBuf,
}

impl VaultSite {
    /// The vault `name` at `db_url` with the key directory `key_dir`.
    pub fn new(
        name: impl Into<String>,
        db_url: impl Into<String>,
        key_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            name: name.into(),
            db_url: db_url.into(),
            key_dir: key_dir.into(),
        }
    }
}

impl std::fmt::Debug for VaultSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultSite")
            .field("name", &self.name)
            .field("db_url", &rekey_storage::redact_url(&self.db_url))
            .field("key_dir", &self.key_dir)
            .finish()
    }
}

/// Refuses a vault name that is not 1 to [`MAX_VAULT_NAME`] of `a-z`,
/// `0-9`, `_` and `-` (names go into paths, pages and metric labels as
/// they are).
pub fn check_vault_name(name: &str) -> Result<(), ServerError> {
    if rekey_core::ids::valid_vault_name(name) {
        Ok(())
    } else {
        Err(ServerError::Config(format!(
            "vault name {:?} is not usable: a name is 1 to {MAX_VAULT_NAME} characters of a-z, 0-9, _ and -",
            shorten(name)
        )))
    }
}

/// Checks every name ([`check_vault_name`]), that no two are the same,
/// and that there is at least one.
pub fn check_vault_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), ServerError> {
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        check_vault_name(name)?;
        if !seen.insert(name) {
            return Err(ServerError::Config(format!(
                "two vaults are named {name:?}: each vault needs a name of its own"
            )));
        }
    }
    if seen.is_empty() {
        return Err(ServerError::Config("no vault to serve".to_owned()));
    }
    Ok(())
}

/// At most [`MAX_VAULT_NAME`] characters of `name`, for messages.
fn shorten(name: &str) -> String {
    if name.chars().count() <= MAX_VAULT_NAME {
        name.to_owned()
    } else {
        let mut s: String = name.chars().take(MAX_VAULT_NAME).collect();
        s.push('…');
        s
    }
}

/// Several vaults served by one process. Cheap to clone.
#[derive(Clone, Debug)]
pub struct VaultSet {
    inner: Arc<FleetInner>,
}

#[derive(Debug)]
struct FleetInner {
    /// Each vault's state (its [`AppState::vault`] set), in the order
    /// given.
    vaults: Vec<AppState>,
    /// The server's name (the same in every vault's server list).
    server: String,
    /// The latency of the process's own routes, by [`FLEET_ROUTES`] index.
    metrics: Arc<Metrics>,
}

impl VaultSet {
    /// Opens every vault and its key directory, each with its own engine;
    /// `config` gives the admin token, server name and limits of all (its
    /// `db_url` and `key_dir` are not used). The names are checked before
    /// anything is opened. The vaults share one set of bundle slots
    /// (`max_concurrent_bundles`) and failed-login counters.
    pub async fn open(vaults: Vec<VaultSite>, config: &ServerConfig) -> Result<Self, ServerError> {
        check_vault_names(vaults.iter().map(|v| v.name.as_str()))?;
        let shared = Shared::new(config);
        let mut states = Vec::with_capacity(vaults.len());
        for site in vaults {
            let opened = async {
                let keys = KeyDir::open(&site.key_dir)?;
                Engine::open(
                    &site.db_url,
                    Some(keys),
                    format!("server:{}", config.server_name),
                )
                .await
            }
            .await
            .map_err(|source| ServerError::OpenVault {
                vault: site.name.clone(),
                source,
            })?;
            let auth = Arc::new(BuiltinSessions::new(opened.clone()));
            states.push((
                site.name,
                AppState::build(opened, config, auth, shared.clone()),
            ));
        }
        Self::new(states)
    }

    /// The fleet of already built states, by name (each keeps the limits
    /// and client authentication it was built with: see
    /// [`AppState::with_client_auth`]). Refuses a bad or repeated name, or
    /// no vault at all.
    pub fn new(vaults: Vec<(String, AppState)>) -> Result<Self, ServerError> {
        check_vault_names(vaults.iter().map(|(n, _)| n.as_str()))?;
        let server = vaults
            .first()
            .map(|(_, s)| s.name().to_owned())
            .unwrap_or_default();
        Ok(Self {
            inner: Arc::new(FleetInner {
                vaults: vaults
                    .into_iter()
                    .map(|(name, state)| state.in_vault(&name))
                    .collect(),
                server,
                metrics: Arc::new(Metrics::for_routes(FLEET_ROUTES.len())),
            }),
        })
    }

    /// Every vault's state, in the order given (each one's
    /// [`AppState::vault`] is its name).
    pub fn vaults(&self) -> impl Iterator<Item = &AppState> {
        self.inner.vaults.iter()
    }

    /// The state of the vault `name`.
    #[must_use]
    pub fn vault(&self, name: &str) -> Option<&AppState> {
        self.inner.vaults.iter().find(|s| s.vault() == Some(name))
    }

    /// The vaults' names, in order.
    #[must_use]
    pub fn names(&self) -> Vec<&str> {
        self.inner
            .vaults
            .iter()
            .filter_map(AppState::vault)
            .collect()
    }

    /// The server's name.
    #[must_use]
    pub fn server_name(&self) -> &str {
        &self.inner.server
    }

    /// The router: every vault's routes, the process's own routes
    /// ([`FLEET_ROUTES`]), a JSON 404 naming an unknown vault, and the
    /// usual JSON 404/405 for anything else.
    pub fn router(&self) -> Router {
        let mut app = Router::new();
        for state in &self.inner.vaults {
            if let Some(name) = state.vault() {
                app = app.merge(vault_router(state, name).with_state(state.clone()));
            }
        }
        let limit = self
            .inner
            .vaults
            .first()
            .map_or(crate::state::DEFAULT_MAX_BODY_BYTES, |s| {
                s.body_limit(false)
            });
        let mut own: Router<VaultSet> = Router::new();
        for (index, spec) in FLEET_ROUTES.iter().enumerate() {
            let track = Track {
                metrics: self.inner.metrics.clone(),
                index,
                method: spec.method.as_str(),
                route: spec.path,
                vault: None,
            };
            own = own.route(spec.path, with_limits(spec, limit, track));
        }
        // Static segments win over these, so they only see names that no
        // vault has (or a vault's path that does not exist).
        own = own
            .route("/v1/vaults/{vault}", any(unknown_vault))
            .route("/v1/vaults/{vault}/{*rest}", any(unknown_vault))
            .route("/vaults/{vault}", any(unknown_vault))
            .route("/vaults/{vault}/{*rest}", any(unknown_vault));
        app.merge(own.with_state(self.clone()))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
    }

    /// Registers this server in every vault's server list, or records its
    /// heartbeat there; the first failure names its vault.
    pub async fn heartbeat(&self) -> Result<(), ServerError> {
        for state in &self.inner.vaults {
            if let Err(e) = beat(state).await {
                tracing::error!(vault = state.vault(), error = %e, "heartbeat failed");
                return Err(e);
            }
        }
        Ok(())
    }

    /// Every vault's public status, in order (`None` for a vault whose
    /// status cannot be read).
    async fn statuses(&self) -> Vec<(&AppState, Option<StatusReport>)> {
        let mut out = Vec::with_capacity(self.inner.vaults.len());
        for state in &self.inner.vaults {
            let s = match public_status(state).await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(vault = state.vault(), error = %e, "status unreadable");
                    None
                }
            };
            out.push((state, s));
        }
        out
    }
}

/// The heartbeat of one vault of a fleet; a database that does not answer
/// is named.
pub(crate) async fn beat(state: &AppState) -> Result<(), ServerError> {
    state
        .heartbeat()
        .await
        .map_err(|e| match (e, state.vault()) {
            (ServerError::Unavailable, Some(v)) => {
                ServerError::VaultsUnavailable(vec![v.to_owned()])
            }
            (e, _) => e,
        })
}

/// The routes of the process itself on a server of several vaults (the
/// vaults' own routes are generated from [`ROUTES`] by [`crate::routes::vault_path`]).
pub static FLEET_ROUTES: &[RouteSpec<VaultSet>] = &[
    RouteSpec {
        method: HttpMethod::Get,
        path: "/",
        summary: "The list of vaults: each one's phase, target and progress, linking to its status page at /vaults/{vault} (HTML, refreshes itself every 2 s)",
        tag: "status",
        auth: Auth::Public,
        body: BodyKind::None,
        answer: Answer::Html,
        responses: &[(200, "the page")],
        large_body: false,
        query: &[],
        handler: || get(index),
    },
    RouteSpec {
        method: HttpMethod::Get,
        path: "/health",
        summary: "Liveness: the process answers",
        tag: "status",
        auth: Auth::Public,
        body: BodyKind::None,
        answer: Answer::Json("Health"),
        responses: &[(200, "alive")],
        large_body: false,
        query: &[],
        handler: || get(health),
    },
    RouteSpec {
        method: HttpMethod::Get,
        path: "/ready",
        summary: "Readiness: every vault's database answers",
        tag: "status",
        auth: Auth::Public,
        body: BodyKind::None,
        answer: Answer::Json("VaultsReady"),
        responses: &[
            (200, "ready, with each vault's phase"),
            (
                503,
                "a vault's database does not answer (the error names the vault)",
            ),
        ],
        large_body: false,
        query: &[],
        handler: || get(ready),
    },
    RouteSpec {
        method: HttpMethod::Get,
        path: "/metrics",
        summary: "Prometheus metrics (text format 0.0.4): every vault's series with a vault=\"name\" label",
        tag: "status",
        auth: Auth::Public,
        body: BodyKind::None,
        answer: Answer::Text,
        responses: &[(200, "metrics")],
        large_body: false,
        query: &[],
        handler: || get(metrics),
    },
    RouteSpec {
        method: HttpMethod::Get,
        path: "/openapi.json",
        summary: "This API's OpenAPI 3.1 document (the vaults' routes under /v1/vaults/{vault})",
        tag: "status",
        auth: Auth::Public,
        body: BodyKind::None,
        answer: Answer::OpaqueJson("this document"),
        responses: &[(200, "the document")],
        large_body: false,
        query: &[],
        handler: || get(openapi),
    },
];

async fn index(State(set): State<VaultSet>) -> Html<String> {
    let statuses = set.statuses().await;
    let rows: Vec<status::VaultRow<'_>> = statuses
        .iter()
        .filter_map(|(state, s)| state.vault().map(|name| (name, s.as_ref())))
        .collect();
    Html(status::render_index(set.server_name(), &rows))
}

async fn ready(State(set): State<VaultSet>) -> Result<Json<VaultsReady>, ServerError> {
    let mut vaults = Vec::new();
    let mut down = Vec::new();
    for state in set.vaults() {
        let name = state.vault().unwrap_or_default().to_owned();
        match state.engine().phase().await {
            Ok(phase) => vaults.push(VaultReady { name, phase }),
            Err(e) => {
                tracing::warn!(vault = %name, error = %e, "not ready");
                down.push(name);
            }
        }
    }
    if down.is_empty() {
        Ok(Json(VaultsReady {
            status: "ready".to_owned(),
            vaults,
        }))
    } else {
        Err(ServerError::VaultsUnavailable(down))
    }
}

async fn metrics(State(set): State<VaultSet>) -> Response {
    let statuses = set.statuses().await;
    let scrapes: Vec<Scrape<'_>> = statuses
        .iter()
        .map(|(state, s)| Scrape {
            vault: state.vault(),
            metrics: state.metrics(),
            progress: s.as_ref().map(|s| &s.progress),
            phase: s.as_ref().map(|s| s.phase.as_str()),
        })
        .collect();
    let mut latency: Vec<Latency<'_>> = FLEET_ROUTES
        .iter()
        .enumerate()
        .map(|(index, r)| Latency {
            vault: None,
            method: r.method.as_str(),
            route: r.path,
            metrics: &set.inner.metrics,
            index,
        })
        .collect();
    for state in set.vaults() {
        for (index, (r, template)) in ROUTES.iter().zip(vault_templates()).enumerate() {
            if let Some(route) = template {
                latency.push(Latency {
                    vault: state.vault(),
                    method: r.method.as_str(),
                    route,
                    metrics: state.metrics(),
                    index,
                });
            }
        }
    }
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        exposition(&scrapes, &latency),
    )
        .into_response()
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::fleet_document())
}

/// A path under `/v1/vaults/{vault}` or `/vaults/{vault}` that no vault
/// route matched: an unknown vault, or a known one's unknown route.
async fn unknown_vault(State(set): State<VaultSet>, uri: Uri) -> ServerError {
    let name = uri
        .path()
        .strip_prefix("/v1/vaults/")
        .or_else(|| uri.path().strip_prefix("/vaults/"))
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    if set.vault(name).is_some() {
        ServerError::NotFound("no such route".to_owned())
    } else {
        ServerError::UnknownVault(shorten(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::vault_path;

    #[test]
    fn names_are_checked() {
        for good in ["berlin", "a", "eu-west_2", &"x".repeat(MAX_VAULT_NAME)] {
            check_vault_name(good).unwrap();
        }
        for bad in [
            "",
            "Berlin",
            "a/b",
            "a b",
            "{vault}",
            "bérlin",
            "a.b",
            &"x".repeat(MAX_VAULT_NAME + 1),
        ] {
            let e = check_vault_name(bad).unwrap_err();
            assert!(matches!(e, ServerError::Config(_)), "{bad}: {e}");
            assert!(e.to_string().contains("a-z, 0-9, _ and -"), "{e}");
        }
        let e = check_vault_names(["a", "b", "a"]).unwrap_err();
        assert!(e.to_string().contains("two vaults are named \"a\""), "{e}");
        let e = check_vault_names([]).unwrap_err();
        assert!(e.to_string().contains("no vault"), "{e}");
        check_vault_names(["a", "b"]).unwrap();
        let e = ServerError::VaultsUnavailable(vec!["b".into()]);
        assert_eq!(e.to_string(), "the database of vault b does not answer");
        assert_eq!((e.status().as_u16(), e.code()), (503, "unavailable"));
        let e = ServerError::VaultsUnavailable(vec!["b".into(), "c".into()]);
        assert_eq!(e.to_string(), "the databases of vaults b, c do not answer");
        let e = ServerError::UnknownVault("nope".into());
        assert_eq!((e.status().as_u16(), e.code()), (404, "not_found"));
        assert!(e.to_string().contains("\"nope\""), "{e}");
    }

    /// Every route of ROUTES is served on a server of several vaults: for
    /// each vault, or by the process with the same method.
    #[test]
    fn every_route_has_its_place() {
        for r in ROUTES {
            match vault_path(r.path) {
                Some(p) => {
                    assert!(p.contains("{vault}"), "{p}");
                    assert!(
                        r.path == "/" || p.ends_with(r.path.trim_start_matches("/v1")),
                        "{p}"
                    );
                }
                None => assert!(
                    FLEET_ROUTES
                        .iter()
                        .any(|f| f.path == r.path && f.method == r.method),
                    "{} {} is served neither per vault nor by the process",
                    r.method.as_str(),
                    r.path
                ),
            }
        }
        assert_eq!(
            vault_path("/v1/principals/{id}/bundle").as_deref(),
            Some("/v1/vaults/{vault}/principals/{id}/bundle")
        );
        assert_eq!(vault_path("/").as_deref(), Some("/vaults/{vault}"));
        assert_eq!(vault_path("/metrics"), None);
    }
}
