//! The route table and its handlers. [`ROUTES`] is the one list: the
//! router is built from it ([`router`]) and so is the OpenAPI document
//! ([`crate::openapi::document`]), so the two cannot drift apart.
//!
//! No rules live here: each handler decodes its request, calls one
//! rekey-engine method and turns the outcome into JSON or a status code.

use crate::answers::{
    DeviceWrittenOff, Health, Ready, ReceiptKept, RecordWritten, Resolved, UserRestored,
};
use crate::error::ServerError;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::status;
use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use rekey_core::auth::LoginAuthenticator;
use rekey_core::bundle::SignedBundle;
use rekey_core::bundle::package::PackageJson;
use rekey_core::confirm::{
    ROLE_CHECKS_FORMAT, Receipt, ReceiptJson, RoleCheckJson, RoleChecksJson,
};
use rekey_core::model::{Resolution, Timestamp};
use rekey_core::report::{AbortReport, ApplyReport, FinalizeReport, StartReport, StatusReport};
use rekey_core::{GrantId, PrincipalId, RecordId};
use rekey_engine::{Names, Session};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// An HTTP method the API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
}

impl HttpMethod {
    /// Upper case, as on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
        }
    }
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Anyone.
    Public,
    /// `Authorization: Bearer <admin token>`.
    Admin,
    /// A session of the account in the path (`Authorization: Bearer
    /// TOKEN` from `POST /v1/session`, or the vault's own login); a bundle
    /// is also signed by the account's legacy key.
    Session,
}

/// What a route takes as its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// Nothing.
    None,
    /// JSON with this schema (a name under `components/schemas`).
    Json(&'static str),
    /// `application/octet-stream`.
    Binary,
}

/// What a route answers on success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// JSON of this schema (a name under `components/schemas`, the name of
    /// the Rust type the handler serializes).
    Json(&'static str),
    /// JSON the server passes through without a type of its own (this
    /// sentence says what it is).
    OpaqueJson(&'static str),
    /// An HTML page.
    Html,
    /// Plain text (Prometheus exposition format).
    Text,
}

/// An optional query parameter of a route (for the OpenAPI document).
#[derive(Debug, Clone, Copy)]
pub struct QueryParam {
    /// Its name.
    pub name: &'static str,
    /// `boolean`, or the values a string may take.
    pub schema: QuerySchema,
    /// What it does.
    pub description: &'static str,
}

/// The type of a query parameter.
#[derive(Debug, Clone, Copy)]
pub enum QuerySchema {
    /// `true` or `false`.
    Boolean,
    /// One of these strings.
    OneOf(&'static [&'static str]),
}

/// One route; `S` is the state its handler takes (a vault's [`AppState`],
/// or the [`crate::VaultSet`] for the routes of a process serving several
/// vaults).
#[derive(Debug)]
pub struct RouteSpec<S = AppState> {
    /// The method.
    pub method: HttpMethod,
    /// The path, with `{param}` placeholders.
    pub path: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Group in the OpenAPI document.
    pub tag: &'static str,
    /// Who may call it.
    pub auth: Auth,
    /// Its body.
    pub body: BodyKind,
    /// What it answers on success.
    pub answer: Answer,
    /// The statuses it answers, with their meaning.
    pub responses: &'static [(u16, &'static str)],
    /// Whether it takes bundle-sized bodies (`--max-bundle-bytes`).
    pub large_body: bool,
    /// Its optional query parameters: `(name, JSON schema type or enum
    /// list, description)`.
    pub query: &'static [QueryParam],
    pub(crate) handler: fn() -> MethodRouter<S>,
}

/// Every route the server serves.
pub static ROUTES: &[RouteSpec] = &[
    RouteSpec {
        method: HttpMethod::Get,
        path: "/",
        summary: "The status page (HTML, refreshes itself every 2 s)",
        tag: "status",
        auth: Auth::Public,
        body: BodyKind::None,
        answer: Answer::Html,
        responses: &[(200, "the page")],
        large_body: false,
        query: &[],
        handler: || get(page),
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
        summary: "Readiness: the vault's database answers",
        tag: "status",
        auth: Auth::Public,
        body: BodyKind::None,
        answer: Answer::Json("Ready"),
        responses: &[(200, "ready"), (503, "the database does not answer")],
        large_body: false,
        query: &[],
        handler: || get(ready),
    },
    RouteSpec {
        method: HttpMethod::Get,
        path: "/metrics",
        summary: "Prometheus metrics (text format 0.0.4)",
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
        summary: "This API's OpenAPI 3.1 document",
        tag: "status",
        auth: Auth::Public,
        body: BodyKind::None,
        answer: Answer::OpaqueJson("this document"),
        responses: &[(200, "the document")],
        large_body: false,
        query: &[],
        handler: || get(openapi),
    },
    RouteSpec {
        method: HttpMethod::Get,
        path: "/v1/migration/status",
        summary: "Phase, progress counts, rate, estimate, blockers and the next step; no principal's name",
        tag: "status",
        auth: Auth::Public,
        body: BodyKind::None,
        answer: Answer::Json("StatusReport"),
        responses: &[(200, "the status"), (503, "the database does not answer")],
        large_body: false,
        query: &[],
        handler: || get(migration_status),
    },
    RouteSpec {
        method: HttpMethod::Get,
        path: "/v1/admin/status",
        summary: "The status with the pending and blocked principals' names (`?all=true`: every one), as `rekey status --format json` prints it",
        tag: "admin",
        auth: Auth::Admin,
        body: BodyKind::None,
        answer: Answer::Json("StatusReport"),
        responses: &[
            (200, "the status"),
            (401, "missing or wrong admin token"),
            (503, "the database does not answer"),
        ],
        large_body: false,
        query: &[QueryParam {
            name: "all",
            schema: QuerySchema::Boolean,
            description: "name every pending and blocked principal, not just the first ones",
        }],
        handler: || get(admin_status),
    },
    RouteSpec {
        method: HttpMethod::Post,
        path: "/v1/admin/preflight",
        summary: "Run the preparation checks; answers the report (rekey-preflight/1); ?target_scheme= sizes the disk-space estimate for that target",
        tag: "admin",
        auth: Auth::Admin,
        body: BodyKind::None,
        answer: Answer::Json("PreflightReport"),
        responses: &[
            (200, "the report"),
            (400, "an unknown target_scheme"),
            (401, "missing or wrong admin token"),
        ],
        large_body: false,
        query: &[QueryParam {
            name: "target_scheme",
            schema: QuerySchema::OneOf(&["hpke-p256", "hpke-p521", "hpke-mlkem768-x25519"]),
            description: "the target the start will be given (the disk-space estimate depends on it; default hpke-p256)",
        }],
        handler: || post(admin_preflight),
    },
    RouteSpec {
        method: HttpMethod::Post,
        path: "/v1/admin/start",
        summary: "Start the migration with the code word; refused while a preflight check blocks; runs the server phase",
        tag: "admin",
        auth: Auth::Admin,
        body: BodyKind::Json("StartRequest"),
        answer: Answer::Json("StartReport"),
        responses: &[
            (200, "started"),
            (400, "wrong code word or malformed body (nothing changed)"),
            (401, "missing or wrong admin token"),
            (409, "preflight checks block, or already started"),
            (413, "body too large"),
        ],
        large_body: false,
        query: &[],
        handler: || post(admin_start),
    },
    RouteSpec {
        method: HttpMethod::Post,
        path: "/v1/admin/finalize",
        summary: "Finalize: remove the legacy material and lift read-only mode",
        tag: "admin",
        auth: Auth::Admin,
        body: BodyKind::None,
        answer: Answer::Json("FinalizeReport"),
        responses: &[
            (200, "completed"),
            (401, "missing or wrong admin token"),
            (409, "principals pending, grants unresolved, or wrong phase"),
        ],
        large_body: false,
        query: &[],
        handler: || post(admin_finalize),
    },
    RouteSpec {
        method: HttpMethod::Post,
        path: "/v1/admin/abort",
        summary: "Abort: back to the exact legacy state",
        tag: "admin",
        auth: Auth::Admin,
        body: BodyKind::None,
        answer: Answer::Json("AbortReport"),
        responses: &[
            (200, "aborted"),
            (401, "missing or wrong admin token"),
            (409, "too late (finalizing or completed) or not started"),
        ],
        large_body: false,
        query: &[],
        handler: || post(admin_abort),
    },
    RouteSpec {
        method: HttpMethod::Post,
        path: "/v1/admin/devices/{id}/write-off",
        summary: "Write a device off: accept losing its unsynchronised changes",
        tag: "admin",
        auth: Auth::Admin,
        body: BodyKind::None,
        answer: Answer::Json("DeviceWrittenOff"),
        responses: &[
            (200, "written off"),
            (401, "missing or wrong admin token"),
            (404, "no such device"),
        ],
        large_body: false,
        query: &[],
        handler: || post(admin_write_off),
    },
    RouteSpec {
        method: HttpMethod::Post,
        path: "/v1/admin/users/{name}/purge",
        summary: "Purge a deactivated or deleted user before the start: its grants, key pairs and memberships are deleted, its row kept as purged (audited); refused if records would be left unreadable unless {\"force\": true}",
        tag: "admin",
        auth: Auth::Admin,
        body: BodyKind::Json("PurgeRequest"),
        answer: Answer::Json("PurgeReport"),
        responses: &[
            (200, "purged"),
            (400, "the body is not the route's JSON"),
            (401, "missing or wrong admin token"),
            (404, "no user of that name"),
            (
                409,
                "the user is not deactivated or deleted, or records would be left unreadable",
            ),
            (423, "a migration is under way"),
        ],
        large_body: false,
        query: &[],
        handler: || post(admin_purge_user),
    },
    RouteSpec {
        method: HttpMethod::Post,
        path: "/v1/admin/users/{name}/restore",
        summary: "Make a deactivated or deleted user active again before the start (audited)",
        tag: "admin",
        auth: Auth::Admin,
        body: BodyKind::None,
        answer: Answer::Json("UserRestored"),
        responses: &[
            (200, "restored"),
            (401, "missing or wrong admin token"),
            (404, "no user of that name"),
            (409, "the user is not deactivated or deleted"),
            (423, "a migration is under way"),
        ],
        large_body: false,
        query: &[],
        handler: || post(admin_restore_user),
    },
    RouteSpec {
        method: HttpMethod::Post,
        path: "/v1/admin/non-migratable/{grant}/resolve",
        summary: "Resolve a non-migratable grant (reshared or written_off)",
        tag: "admin",
        auth: Auth::Admin,
        body: BodyKind::Json("ResolveRequest"),
        answer: Answer::Json("Resolved"),
        responses: &[
            (200, "resolved"),
            (400, "malformed body or id"),
            (401, "missing or wrong admin token"),
            (404, "no such non-migratable grant"),
            (413, "body too large"),
        ],
        large_body: false,
        query: &[],
        handler: || post(admin_resolve),
    },
    RouteSpec {
        method: HttpMethod::Get,
        path: "/v1/client-kdf",
        summary: "The parameters of the vault's client password KDF (a client asks before it derives its master secret)",
        tag: "client",
        auth: Auth::Public,
        body: BodyKind::None,
        answer: Answer::OpaqueJson(
            "the password-KDF parameters the vault stored for its clients, passed through as stored (the demo vault's shape: docs/PROTOCOL.md §12)",
        ),
        responses: &[(200, "the parameters (JSON)"), (404, "the vault has none")],
        large_body: false,
        query: &[],
        handler: || get(client_kdf),
    },
    RouteSpec {
        method: HttpMethod::Post,
        path: "/v1/session",
        summary: "Log an account in with its login authenticator; answers a session token (15 minutes)",
        tag: "client",
        auth: Auth::Public,
        body: BodyKind::Json("SessionRequest"),
        answer: Answer::Json("Session"),
        responses: &[
            (200, "the session"),
            (400, "malformed body"),
            (
                401,
                "wrong credentials (the same answer for an unknown account)",
            ),
            (
                404,
                "this deployment logs clients in with its own session login",
            ),
            (413, "body too large"),
            (
                429,
                "too many failed logins for this account or from this address",
            ),
        ],
        large_body: false,
        query: &[],
        handler: || post(open_session),
    },
    RouteSpec {
        method: HttpMethod::Get,
        path: "/v1/principals/{id}/package",
        summary: "The migration package of an account (rekey-package/2): public keys and wrapped material only",
        tag: "client",
        auth: Auth::Session,
        body: BodyKind::None,
        answer: Answer::Json("PackageJson"),
        responses: &[
            (200, "the package"),
            (400, "malformed id"),
            (401, "no session, or an expired or invalid one"),
            (403, "the session belongs to another account"),
            (404, "no such principal"),
            (409, "the account has migrated already, or cannot migrate"),
            (423, "no migration in progress"),
        ],
        large_body: false,
        query: &[],
        handler: || get(package),
    },
    RouteSpec {
        method: HttpMethod::Post,
        path: "/v1/principals/{id}/bundle",
        summary: "Submit a signed bundle (binary SignedBundle); checked and applied in one transaction",
        tag: "client",
        auth: Auth::Session,
        body: BodyKind::Binary,
        answer: Answer::Json("ApplyReport"),
        responses: &[
            (200, "applied"),
            (400, "malformed bundle, with the reason"),
            (401, "no session, or an expired or invalid one"),
            (
                403,
                "the session belongs to another account, or the signatures are not this account's",
            ),
            (408, "the body did not arrive in time"),
            (
                409,
                "conflict: the vault changed (already migrated, grants or holders changed); fetch a new package and rebuild",
            ),
            (
                413,
                "bundle too large (refused from its Content-Length before it is read)",
            ),
            (415, "not application/octet-stream"),
            (423, "the vault is not in the user phase"),
            (
                503,
                "too many bundles being checked; try again (Retry-After)",
            ),
        ],
        large_body: true,
        query: &[],
        handler: || post(submit_bundle),
    },
    RouteSpec {
        method: HttpMethod::Get,
        path: "/v1/principals/{id}/role-checks",
        summary: "The migrated roles this account must confirm, with what its client needs to check them (rekey-role-checks/1)",
        tag: "client",
        auth: Auth::Session,
        body: BodyKind::None,
        answer: Answer::Json("RoleChecksJson"),
        responses: &[
            (
                200,
                "the role checks (an empty list when there is nothing to confirm)",
            ),
            (400, "malformed id"),
            (401, "no session, or an expired or invalid one"),
            (403, "the session belongs to another account"),
            (404, "no such principal"),
            (423, "no migration in progress"),
        ],
        large_body: false,
        query: &[],
        handler: || get(role_checks),
    },
    RouteSpec {
        method: HttpMethod::Post,
        path: "/v1/principals/{id}/role-receipts",
        summary: "Hand in a receipt: the account's client checked a role another member migrated and signs with the role's new key",
        tag: "client",
        auth: Auth::Session,
        body: BodyKind::Json("ReceiptJson"),
        answer: Answer::Json("ReceiptKept"),
        responses: &[
            (200, "kept"),
            (400, "malformed body or id"),
            (401, "no session, or an expired or invalid one"),
            (
                403,
                "the session belongs to another account, or the receipt is refused (not a member, another key, a signature that does not verify)",
            ),
            (413, "body too large"),
            (423, "no migration in progress"),
        ],
        large_body: false,
        query: &[],
        handler: || post(role_receipt),
    },
    RouteSpec {
        method: HttpMethod::Get,
        path: "/v1/records/{id}",
        summary: "Read a record's ciphertext (the vault stays readable during the migration)",
        tag: "records",
        auth: Auth::Admin,
        body: BodyKind::None,
        answer: Answer::Json("RecordJson"),
        responses: &[
            (200, "the record"),
            (400, "malformed id"),
            (401, "missing or wrong admin token"),
            (404, "no such record"),
        ],
        large_body: false,
        query: &[],
        handler: || get(get_record),
    },
    RouteSpec {
        method: HttpMethod::Put,
        path: "/v1/records/{id}",
        summary: "Write a record's ciphertext; 423 Locked while the vault is being migrated",
        tag: "records",
        auth: Auth::Admin,
        body: BodyKind::Json("RecordWrite"),
        answer: Answer::Json("RecordWritten"),
        responses: &[
            (200, "written"),
            (400, "malformed body or id"),
            (401, "missing or wrong admin token"),
            (413, "body too large"),
            (423, "read-only during the migration"),
        ],
        large_body: false,
        query: &[],
        handler: || put(put_record),
    },
];

/// The router for `state`, built from [`ROUTES`]: each route gets its body
/// limit and the latency middleware; anything else answers a JSON 404/405.
pub fn router(state: AppState) -> Router {
    let mut r: Router<AppState> = Router::new();
    for (index, spec) in ROUTES.iter().enumerate() {
        r = r.route(spec.path, tracked(spec, &state, index, spec.path));
    }
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Where route `path` of [`ROUTES`] is served for each vault of a process
/// serving several ([`crate::VaultSet`]), with `{vault}` for the vault's name:
/// the API (`/v1/…`) under `/v1/vaults/{vault}/…`, the status page (`/`)
/// at `/vaults/{vault}`. `None` for the routes of the process itself
/// (health, readiness, metrics, the OpenAPI document), which
/// [`crate::fleet::FLEET_ROUTES`] serves.
#[must_use]
pub fn vault_path(path: &str) -> Option<String> {
    if path == "/" {
        return Some("/vaults/{vault}".to_owned());
    }
    path.strip_prefix("/v1/")
        .map(|rest| format!("/v1/vaults/{{vault}}/{rest}"))
}

/// [`vault_path`] of every route of [`ROUTES`], in order (the templates
/// the log and the metrics name).
static VAULT_PATHS: std::sync::LazyLock<Vec<Option<String>>> =
    std::sync::LazyLock::new(|| ROUTES.iter().map(|r| vault_path(r.path)).collect());

/// [`vault_path`] of every route of [`ROUTES`], in order.
pub(crate) fn vault_templates() -> &'static [Option<String>] {
    &VAULT_PATHS
}

/// The routes of [`ROUTES`] served for the vault of `state` (which must be
/// one of a [`crate::VaultSet`]): each at its [`vault_path`] with the vault's
/// name in place, with its body limit and the latency middleware. No
/// fallback: the fleet's router has the one fallback.
pub(crate) fn vault_router(state: &AppState, vault: &str) -> Router<AppState> {
    let mut r: Router<AppState> = Router::new();
    for (index, (spec, template)) in ROUTES.iter().zip(vault_templates()).enumerate() {
        if let Some(template) = template {
            let path = template.replace("{vault}", vault);
            r = r.route(&path, tracked(spec, state, index, template));
        }
    }
    r
}

/// `spec`'s handler with its body limit and the latency middleware, which
/// logs it as `route` and counts it as route `index` of `state`'s metrics.
fn tracked(
    spec: &RouteSpec,
    state: &AppState,
    index: usize,
    route: &'static str,
) -> MethodRouter<AppState> {
    with_limits(
        spec,
        state.body_limit(spec.large_body),
        Track {
            metrics: state.metrics_arc(),
            index,
            method: spec.method.as_str(),
            route,
            vault: state.vault_arc(),
        },
    )
}

/// `spec`'s handler with `body_limit` and the latency middleware `track`.
pub(crate) fn with_limits<S: Clone + Send + Sync + 'static>(
    spec: &RouteSpec<S>,
    body_limit: usize,
    track: Track,
) -> MethodRouter<S> {
    (spec.handler)()
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(track, self::track))
}

/// What the latency middleware knows of a route.
#[derive(Debug, Clone)]
pub(crate) struct Track {
    /// The counters it is timed in.
    pub(crate) metrics: Arc<Metrics>,
    /// Its index in the table `metrics` was made for.
    pub(crate) index: usize,
    /// Its method.
    pub(crate) method: &'static str,
    /// Its path template, as logged.
    pub(crate) route: &'static str,
    /// The vault it serves, on a server of several.
    pub(crate) vault: Option<Arc<str>>,
}

/// Request ids, counted from 1 per process (sent back as `x-request-id`).
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Times and logs every request: one line with its id, the client's
/// address, the method, the route template (never the concrete path: ids
/// stay out of the log), the vault on a server of several, the status and
/// the latency. Written here rather than with tower-http's trace layer
/// because that layer logs the request URI, and the route template is only
/// known per route.
async fn track(State(t): State<Track>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = REQUESTS.fetch_add(1, Ordering::Relaxed) + 1;
    let client = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.to_string());
    let mut response = next.run(req).await;
    let elapsed = started.elapsed();
    t.metrics.observe(t.index, elapsed);
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert("x-request-id", v);
    }
    let status = response.status().as_u16();
    let ms = elapsed.as_secs_f64() * 1000.0;
    let client = client.as_deref().unwrap_or("-");
    let (method, route) = (t.method, t.route);
    // A field that is `None` is left out: a single-vault server's lines
    // stay as they were.
    let vault = t.vault.as_deref();
    if status >= 500 {
        tracing::error!(
            request = id,
            client,
            method,
            route,
            vault,
            status,
            ms,
            "request"
        );
    } else if status >= 400 {
        tracing::warn!(
            request = id,
            client,
            method,
            route,
            vault,
            status,
            ms,
            "request"
        );
    } else {
        tracing::info!(
            request = id,
            client,
            method,
            route,
            vault,
            status,
            ms,
            "request"
        );
    }
    response
}

pub(crate) async fn not_found() -> ServerError {
    ServerError::NotFound("no such route".to_owned())
}

pub(crate) async fn method_not_allowed() -> Response {
    let body = json!({
        "error": "this route does not take this method",
        "code": "method_not_allowed",
        "hint": "GET /openapi.json lists the routes and their methods",
    });
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

/// Proof that the request carried the admin token.
#[derive(Debug)]
pub(crate) struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ServerError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ServerError::Unauthorized)?;
        if state.token().matches(presented.trim()) {
            Ok(Admin)
        } else {
            tracing::warn!("admin request with a wrong token refused");
            Err(ServerError::Unauthorized)
        }
    }
}

fn body(
    body: Result<Bytes, BytesRejection>,
    state: &AppState,
    large: bool,
) -> Result<Bytes, ServerError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServerError::TooLarge {
                limit: state.body_limit(large),
            }
        } else {
            ServerError::bad_request(
                format!("could not read the request body: {}", r.body_text()),
                "body_unreadable",
                "send the whole body",
            )
        }
    })
}

fn json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    hint: &'static str,
) -> Result<T, ServerError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ServerError::bad_request(format!("malformed JSON body: {e}"), "json_malformed", hint)
    })
}

// Request decoding. Each route that takes a body decodes it with one of
// these pure functions before anything else happens: the handlers call
// them (the bundle route hands its bytes to the engine, whose first step is
// the same parse, see `decode_bundle`), and so do the fuzz targets and
// property tests, so what is fuzzed is what is served. Every refusal is a
// 400 with a message and a hint.

const START_HINT: &str = "send {\"code_word\": \"Start\"}";
const RESOLVE_HINT: &str =
    "send {\"resolution\": \"reshared\"} or {\"resolution\": \"written_off\"}";
const RECORD_HINT: &str = "send {\"ciphertext\": \"<hex>\"}";

/// Decodes the body of `POST /v1/admin/start` ([`StartRequest`]). The code
/// word itself is checked by the engine (a wrong one is refused there, and
/// changes nothing).
pub fn decode_start(bytes: &[u8]) -> Result<StartRequest, ServerError> {
    json(bytes, START_HINT)
}

/// Decodes the body of `POST /v1/admin/non-migratable/{grant}/resolve`
/// ([`ResolveRequest`]): `reshared` or `written_off`, nothing else.
pub fn decode_resolve(bytes: &[u8]) -> Result<Resolution, ServerError> {
    let req: ResolveRequest = json(bytes, RESOLVE_HINT)?;
    match req.resolution.parse::<Resolution>() {
        Ok(r @ (Resolution::Reshared | Resolution::WrittenOff)) => Ok(r),
        _ => Err(ServerError::bad_request(
            format!(
                "resolution {:?} is not reshared or written_off",
                req.resolution
            ),
            "bad_resolution",
            RESOLVE_HINT,
        )),
    }
}

/// Decodes the body of `PUT /v1/records/{id}` ([`RecordWrite`]) into the
/// ciphertext bytes.
pub fn decode_record_write(bytes: &[u8]) -> Result<Vec<u8>, ServerError> {
    let req: RecordWrite = json(bytes, RECORD_HINT)?;
    hex::decode(&req.ciphertext).map_err(|_| {
        ServerError::bad_request("ciphertext is not valid hex", "hex_malformed", RECORD_HINT)
    })
}

/// Decodes the body of `POST /v1/principals/{id}/bundle` as the route
/// does: the engine's submit parses it first thing (on the blocking pool,
/// so the handler does not parse it twice) and a malformed bundle is
/// answered with exactly this error.
pub fn decode_bundle(bytes: &[u8]) -> Result<SignedBundle, ServerError> {
    SignedBundle::parse(bytes)
        .map_err(|w| ServerError::from_engine(rekey_engine::EngineError::MalformedBundle(w)))
}

/// Decodes an id in a route's path (`{id}`, `{grant}`); `what` names it in
/// the error.
pub fn decode_id<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, ServerError> {
    s.parse().map_err(|_| {
        ServerError::bad_request(
            format!("the {what} id is not a valid id"),
            "id_malformed",
            "ids are UUIDs, e.g. 0b0f6c9e-4a7e-4c47-9a44-3f0d4d0f1d2a",
        )
    })
}

/// Runs `f` (which may do CPU-heavy crypto) on the blocking pool, so the
/// async workers keep serving other requests.
async fn blocking<T, F, Fut>(state: &AppState, f: F) -> Result<T, ServerError>
where
    T: Send + 'static,
    F: FnOnce(rekey_engine::Engine) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let engine = state.engine().clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(f(engine)))
        .await
        .map_err(|_| ServerError::Internal("a blocking task failed".to_owned()))
}

async fn page(State(state): State<AppState>) -> Result<Html<String>, ServerError> {
    let s = public_status(&state).await?;
    Ok(Html(match state.vault() {
        None => status::render_page(&s, state.name()),
        Some(vault) => status::render_vault_page(&s, state.name(), vault),
    }))
}

pub(crate) async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

async fn ready(State(state): State<AppState>) -> Result<Json<Ready>, ServerError> {
    let phase = state
        .engine()
        .phase()
        .await
        .map_err(|_| ServerError::Unavailable)?;
    Ok(Json(Ready {
        status: "ready".to_owned(),
        phase,
    }))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let s = public_status(&state).await.ok();
    let text = state.metrics().render(
        s.as_ref().map(|s| &s.progress),
        s.as_ref().map(|s| s.phase.as_str()),
    );
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

/// The status anyone may read: counts, no names.
pub(crate) async fn public_status(state: &AppState) -> Result<StatusReport, ServerError> {
    state
        .engine()
        .status(Names::Withheld)
        .await
        .map_err(ServerError::from_admin_engine)
}

async fn migration_status(
    State(state): State<AppState>,
) -> Result<Json<StatusReport>, ServerError> {
    Ok(Json(public_status(&state).await?))
}

/// The query of `GET /v1/admin/status`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// Name every pending principal, not just the first ones.
    #[serde(default)]
    pub all: bool,
}

async fn admin_status(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<StatusQuery>,
) -> Result<Json<StatusReport>, ServerError> {
    let names = if query.all { Names::All } else { Names::First };
    Ok(Json(
        state
            .engine()
            .status(names)
            .await
            .map_err(ServerError::from_admin_engine)?,
    ))
}

/// The query of `POST /v1/admin/preflight`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreflightQuery {
    /// The target the start will be given (default `hpke-p256`).
    #[serde(default)]
    pub target_scheme: Option<rekey_core::Target>,
}

async fn admin_preflight(
    _: Admin,
    State(state): State<AppState>,
    query: Result<Query<PreflightQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ServerError> {
    let Query(query) = query.map_err(|e| {
        ServerError::bad_request(
            format!("malformed query: {}", e.body_text()),
            "query_malformed",
            "the only parameter is target_scheme=hpke-p256|hpke-p521|hpke-mlkem768-x25519",
        )
    })?;
    let engine = match query.target_scheme {
        Some(t) => state.engine().clone().with_target(t),
        None => state.engine().clone(),
    };
    let report = engine
        .preflight()
        .await
        .map_err(ServerError::from_admin_engine)?;
    Ok((
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        report.to_json(),
    )
        .into_response())
}

/// The body of `POST /v1/admin/start`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// Must be `Start`, exactly.
    pub code_word: String,
    /// What the migration moves keys to (`hpke-p256` when absent). A run
    /// in progress keeps its own: another one is refused
    /// (`target_changed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_scheme: Option<rekey_core::Target>,
}

async fn admin_start(
    _: Admin,
    State(state): State<AppState>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<StartReport>, ServerError> {
    let req = decode_start(&body(raw, &state, false)?)?;
    // The server phase re-wraps every server-held grant: off the async
    // workers.
    let report = blocking(&state, move |e| async move {
        let e = match req.target_scheme {
            Some(target) => e.with_target(target),
            None => e,
        };
        e.start(&req.code_word, &|_, _, _| {}).await
    })
    .await?
    .map_err(ServerError::from_admin_engine)?;
    tracing::info!(run = %report.run, target = %report.target, phase = %report.phase, resumed = report.resumed, "migration started");
    Ok(Json(report))
}

async fn admin_finalize(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<FinalizeReport>, ServerError> {
    let report = state
        .engine()
        .finalize(&|_| {})
        .await
        .map_err(ServerError::from_admin_engine)?;
    tracing::info!(deleted = report.deleted_legacy_rows, "migration finalized");
    Ok(Json(report))
}

async fn admin_abort(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<AbortReport>, ServerError> {
    let report = state
        .engine()
        .abort()
        .await
        .map_err(ServerError::from_admin_engine)?;
    tracing::info!(from = %report.from, "migration aborted");
    Ok(Json(report))
}

async fn admin_write_off(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeviceWrittenOff>, ServerError> {
    state
        .engine()
        .write_off_device(&id)
        .await
        .map_err(ServerError::from_admin_engine)?;
    Ok(Json(DeviceWrittenOff {
        device: id,
        written_off: true,
    }))
}

/// The body of `POST /v1/admin/users/{name}/purge`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Purge even if records would be left that nobody can read.
    #[serde(default)]
    pub force: bool,
}

async fn admin_purge_user(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<rekey_preflight::PurgeReport>, ServerError> {
    let bytes = body(raw, &state, false)?;
    let req: PurgeRequest = if bytes.is_empty() {
        PurgeRequest::default()
    } else {
        json(
            &bytes,
            "send {\"force\": false} or {\"force\": true}, or no body",
        )?
    };
    Ok(Json(
        state
            .engine()
            .purge_user(&name, req.force)
            .await
            .map_err(ServerError::from_admin_engine)?,
    ))
}

async fn admin_restore_user(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<UserRestored>, ServerError> {
    state
        .engine()
        .restore_user(&name)
        .await
        .map_err(ServerError::from_admin_engine)?;
    Ok(Json(UserRestored {
        user: name,
        restored: true,
    }))
}

/// The body of `POST /v1/admin/non-migratable/{grant}/resolve`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// `reshared` or `written_off`.
    pub resolution: String,
}

async fn admin_resolve(
    _: Admin,
    State(state): State<AppState>,
    Path(grant): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Resolved>, ServerError> {
    let grant: GrantId = decode_id(&grant, "grant")?;
    let resolution = decode_resolve(&body(raw, &state, false)?)?;
    state
        .engine()
        .resolve_non_migratable(grant, resolution)
        .await
        .map_err(ServerError::from_admin_engine)?;
    Ok(Json(Resolved { grant, resolution }))
}

/// The body of `POST /v1/session`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The account.
    pub principal: PrincipalId,
    /// Hex of its 32-byte login authenticator.
    pub authenticator: String,
}

const SESSION_HINT: &str =
    "send {\"principal\": \"<uuid>\", \"authenticator\": \"<64 hex digits>\"}";

/// Decodes the body of `POST /v1/session`.
pub fn decode_session(bytes: &[u8]) -> Result<(PrincipalId, LoginAuthenticator), ServerError> {
    let req: SessionRequest = json(bytes, SESSION_HINT)?;
    let raw = hex::decode(&req.authenticator)
        .ok()
        .and_then(|b| LoginAuthenticator::from_bytes(&b))
        .ok_or_else(|| {
            ServerError::bad_request(
                "the authenticator is not 32 bytes of hex",
                "authenticator_malformed",
                SESSION_HINT,
            )
        })?;
    Ok((req.principal, raw))
}

async fn client_kdf(State(state): State<AppState>) -> Result<Response, ServerError> {
    let json = state
        .engine()
        .client_kdf()
        .await
        .map_err(ServerError::from_engine)?
        .ok_or_else(|| ServerError::NotFound("this vault keeps no client KDF parameters".into()))?;
    Ok((
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        json,
    )
        .into_response())
}

/// The client's address, when the server knows it (it does when served
/// by [`crate::run`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

async fn open_session(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Session>, ServerError> {
    if !state.client_auth().is_builtin() {
        return Err(ServerError::NotFound(
            "this deployment logs clients in with its own session login".into(),
        ));
    }
    let (principal, authenticator) = decode_session(&body(raw, &state, false)?)?;
    let now = Timestamp::now().as_millis();
    // Refused past the limit before any password work.
    if let Err(e) = state.limits().check(principal, address, now) {
        state.metrics().login("limited");
        tracing::warn!(client = ?address, "login refused unheard: too many failures");
        return Err(e);
    }
    let result = blocking(&state, move |e| async move {
        e.open_session(principal, &authenticator).await
    })
    .await?;
    match result {
        Ok(session) => {
            state.limits().succeeded(principal);
            state.metrics().login("opened");
            Ok(Json(session))
        }
        Err(e) => {
            state
                .limits()
                .failed(principal, address, Timestamp::now().as_millis());
            tracing::warn!(client = ?address, "login refused");
            Err(ServerError::from_engine(e))
        }
    }
}

/// The account a client request comes from: its session must name the
/// account in the path.
async fn session_for(
    state: &AppState,
    headers: &HeaderMap,
    principal: PrincipalId,
) -> Result<(), ServerError> {
    let who = state.client_auth().principal(headers).await?;
    if who == principal {
        Ok(())
    } else {
        Err(ServerError::WrongAccount)
    }
}

async fn package(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<PackageJson>, ServerError> {
    let principal: PrincipalId = decode_id(&id, "principal")?;
    session_for(&state, &headers, principal).await?;
    let p = state
        .engine()
        .package(principal)
        .await
        .map_err(ServerError::from_engine)?;
    Ok(Json(PackageJson::from(&p)))
}

async fn role_checks(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<RoleChecksJson>, ServerError> {
    let principal: PrincipalId = decode_id(&id, "principal")?;
    session_for(&state, &headers, principal).await?;
    let checks = state
        .engine()
        .role_checks(principal)
        .await
        .map_err(ServerError::from_engine)?;
    let (vault, run) = match checks.first() {
        Some(c) => (c.vault, c.run),
        None => state
            .engine()
            .current_run()
            .await
            .map_err(ServerError::from_engine)?,
    };
    Ok(Json(RoleChecksJson {
        format: ROLE_CHECKS_FORMAT.to_owned(),
        vault,
        run,
        holder: principal,
        roles: checks.iter().map(RoleCheckJson::from_check).collect(),
    }))
}

const RECEIPT_HINT: &str = "send {\"role\": \"<uuid>\", \"key_pair\": \"<uuid>\", \"checked\": <n>, \"signature\": \"<hex>\"}";

/// Decodes the body of `POST /v1/principals/{id}/role-receipts`.
pub fn decode_receipt(bytes: &[u8]) -> Result<Receipt, ServerError> {
    let req: ReceiptJson = json(bytes, RECEIPT_HINT)?;
    req.into_receipt().ok_or_else(|| {
        ServerError::bad_request("the signature is not hex", "hex_malformed", RECEIPT_HINT)
    })
}

async fn role_receipt(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<ReceiptKept>, ServerError> {
    let principal: PrincipalId = decode_id(&id, "principal")?;
    session_for(&state, &headers, principal).await?;
    let receipt = decode_receipt(&body(raw, &state, false)?)?;
    state
        .engine()
        .confirm_role(principal, &receipt)
        .await
        .map_err(ServerError::from_engine)?;
    tracing::info!(role = %receipt.role, checked = receipt.checked, "role confirmed");
    Ok(Json(ReceiptKept {
        role: receipt.role,
        key_pair: receipt.key_pair,
    }))
}

async fn submit_bundle(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ApplyReport>, ServerError> {
    let result = submit_inner(&state, &id, &headers, body).await;
    match &result {
        Ok(r) => {
            state.metrics().applied(r.grants);
            tracing::info!(
                principals = r.principals.len(),
                grants = r.grants,
                non_migratable = r.non_migratable,
                "bundle applied"
            );
        }
        Err(e) => {
            state.metrics().refused(e.refusal_reason());
            tracing::warn!(
                status = e.status().as_u16(),
                code = e.code(),
                "bundle refused"
            );
        }
    }
    result.map(Json)
}

/// Whether a `Content-Type` is `application/octet-stream` (parameters
/// after `;` allowed, nothing else).
fn is_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/octet-stream"))
}

/// The cheap checks first, then the body: the id, the session, the content
/// type and the declared length are checked before a byte of the body is
/// read; the body is read within the server's limit and time, by at most
/// `--max-concurrent-bundles` requests at once.
async fn submit_inner(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<ApplyReport, ServerError> {
    let principal: PrincipalId = decode_id(id, "principal")?;
    session_for(state, headers, principal).await?;
    if !is_octet_stream(headers) {
        return Err(ServerError::UnsupportedMediaType {
            expected: "application/octet-stream",
        });
    }
    let limit = state.body_limit(true);
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ServerError::TooLarge { limit });
    }
    // A slot is held while the body arrives and is checked, so a queued
    // client hears "busy" well before a slow holder's body times out.
    let permit = tokio::time::timeout(
        state.body_timeout() / 2,
        state.bundle_permits().clone().acquire_owned(),
    )
    .await
    .map_err(|_| ServerError::Busy)?
    .map_err(|_| ServerError::Busy)?;
    let bytes = tokio::time::timeout(state.body_timeout(), axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ServerError::BodyTimeout)?
        .map_err(|e| {
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                ServerError::TooLarge { limit }
            } else {
                ServerError::bad_request(
                    format!("could not read the request body: {e}"),
                    "body_unreadable",
                    "send the whole body",
                )
            }
        })?;
    // Parsing and the signature checks (RSA-PSS, ECDSA) run on the blocking
    // pool; the engine's database calls run there too, on this runtime.
    let report = blocking(
        state,
        move |e| async move { e.submit(principal, &bytes).await },
    )
    .await?
    .map_err(ServerError::from_engine);
    drop(permit);
    report
}

/// A record as the record API shows it: the role checks' record shape.
pub use rekey_core::confirm::RecordJson;

/// The body of `PUT /v1/records/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordWrite {
    /// The new ciphertext in hex.
    pub ciphertext: String,
}

async fn get_record(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RecordJson>, ServerError> {
    let rid: RecordId = decode_id(&id, "record")?;
    let ciphertext = state
        .engine()
        .record(rid)
        .await
        .map_err(ServerError::from_engine)?
        .ok_or_else(|| ServerError::NotFound(format!("record {rid} not found")))?;
    Ok(Json(RecordJson {
        id: rid,
        ciphertext: hex::encode(ciphertext),
    }))
}

async fn put_record(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<RecordWritten>, ServerError> {
    let rid: RecordId = decode_id(&id, "record")?;
    let ciphertext = decode_record_write(&body(raw, &state, false)?)?;
    state
        .engine()
        .put_record(rid, ciphertext)
        .await
        .map_err(ServerError::from_engine)?;
    Ok(Json(RecordWritten {
        id: rid,
        written: true,
    }))
}
