//! "The server alone" (issue #29, item 3): prebuilt bundles submitted to
//! rekey-server by 1, 8 and 64 concurrent submitters, on SQLite and on
//! PostgreSQL, for bundles of about 100 and about 1,000 grants. Reports
//! bundles/s, grants/s and the p50/p99 latency of a submission: the number
//! that sizes a morning login storm.
//!
//! ```text
//! cargo bench -p rekey-server --bench submit
//! REKEY_BENCH_POSTGRES=1 cargo bench -p rekey-server --bench submit
//! REKEY_BENCH_SUBMIT_USERS=2000 REKEY_BENCH_SUBMIT_SUBMITTERS=64 cargo bench -p rekey-server --bench submit
//! ```
//!
//! # What is timed
//!
//! Only the submissions. The clock starts just before the first `POST
//! /v1/principals/{id}/bundle` and stops when the last one is answered;
//! each bundle's latency runs from its first POST to its `200`, retries
//! included. Inside the window: the HTTP exchange on loopback (the client
//! sending the prebuilt bytes, the server reading the body), the server's
//! whole handling (parse, RSA-PSS and ECDSA signature checks and the
//! coverage checks on its blocking pool, then the write set applied in one
//! database transaction), its JSON answer and the client reading it.
//!
//! Outside the window, done before it and kept in memory: seeding, the
//! start (server phase), every login (Argon2id on both sides), every
//! package fetch, every bundle build (RSA unwraps, HPKE sealing, signing)
//! and its encoding; copying the vault for the cell; starting the server;
//! opening the keep-alive connections (as many `GET /health` at once as
//! there are submitters; hyper's pool keeps them for the POSTs).
//!
//! # How
//!
//! Per size (about 100 and about 1,000 grants per bundle) one demo vault
//! is generated, with no roles: a prebuilt bundle that migrates a role
//! along goes stale as soon as another member's bundle migrates that role
//! (a 409 only a rebuild, client work, resolves), so every bundle here is
//! its user's own part. Grants per user are the demo's skewed shape (a few
//! heavy users): the sizes are the mean per bundle, and the table gives the
//! median and the largest too. RSA keys: the 16 fixture keys of the
//! command-line tests, repeated (`--distinct-keys`); no key is generated.
//!
//! Per backend, that vault is installed once, started through the API,
//! and every e2ee user logs in, fetches its package and builds its bundle
//! (the RSA unwraps are remembered across backends: the same legacy
//! grants). Then per cell (number of submitters) the started vault is
//! copied (SQLite: the files; PostgreSQL: a fresh schema made by rekey's
//! own schema migrations, then every row copied with `psql`, sequences
//! set, its statistics fresh from `ANALYZE`) and a fresh server serves the
//! copy: the copy holds exactly the vault the bundles were built against
//! (its files, or every row), so each bundle applies exactly once. A 409
//! or 503 is retried and counted; anything else is an error (there must
//! be none). After each cell the vault's status must show every user
//! migrated and the grants applied must add up to the bundles' grants.
//!
//! The server runs in this process on its own multi-thread tokio runtime
//! (as `rekey-server` does: one worker per core, bundle checks on its
//! blocking pool, 8 database connections, the default limits: 16 bundles
//! at once); the submitters run on a second runtime of 2 workers. Both
//! share the machine's cores: the load generator is in the figures. Each
//! line also gives the server's own mean time per bundle request (its
//! `/metrics` histogram), which leaves the client side out; the last
//! lines give the machine's load average before and after (other work on
//! the machine shows in every figure).
//!
//! Environment: `REKEY_BENCH_SUBMIT_USERS` (users of the ~100-grant
//! vault, default 1000: 900 bundles), `REKEY_BENCH_SUBMIT_USERS_1000` (of
//! the ~1,000-grant vault, default 200: 180 bundles; 0 leaves it out),
//! `REKEY_BENCH_SUBMIT_SUBMITTERS` (default `1,8,64`),
//! `REKEY_BENCH_POSTGRES` (`1`: PostgreSQL is required; `0`: skipped;
//! unset: run when it answers at `REKEY_TEST_POSTGRES_URL`, default
//! `postgres://root@127.0.0.1:5432/test`, and `psql` is installed). The
//! last line of standard output is a JSON summary that `cargo xtask
//! bench-report` reads.
#![allow(clippy::expect_used)]

use hyper::Method;
use rekey_client::{HttpClient, MigrationApi};
use rekey_core::bundle::{BuildOptions, OpenedGrants, Unlock, build_bundle_reusing};
use rekey_core::model::Phase;
use rekey_core::{PrincipalId, VaultId};
use rekey_demo::password::master_secret;
use rekey_demo::{DemoSpec, DemoVault, KeySource, generate};
use rekey_engine::{Engine, KeyDir};
use rekey_keys::{BackupOptions, Passphrase};
use rekey_server::{AppState, ServerConfig};
use rekey_test_support::db::{Backend, TestDb};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const TOKEN: &str = "bench-admin-token-0123456789";
/// Distinct RSA keys: the fixture cache of the command-line tests has 16.
const DISTINCT_KEYS: usize = 16;
/// Legacy grants an e2ee user of the demo gets per record per user
/// (owner plus shares), measured: records = users × grants / this.
const GRANTS_PER_RECORD_PER_USER: f64 = 2.2;
/// Sessions older than this are opened again before a cell (they last 15
/// minutes).
const SESSION_REFRESH: Duration = Duration::from_secs(10 * 60);
/// Attempts of one bundle answered 409 before it counts as an error.
const MAX_CONFLICT_ATTEMPTS: usize = 3;
/// Attempts of one bundle answered 503 before it counts as an error.
const MAX_BUSY_ATTEMPTS: usize = 200;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not match skips.
    if std::env::args()
        .skip(1)
        .any(|a| a != "--bench" && !"submit".contains(a.as_str()))
    {
        return;
    }
    // As rekey-server's main does, before any thread.
    rekey_engine::memory::return_large_buffers_to_the_system();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("server")
        .enable_all()
        .build()
        .expect("the server's runtime");
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("submitter")
        .enable_all()
        .build()
        .expect("the submitters' runtime");
    let config = Config::from_env();
    let work = std::env::temp_dir().join(format!("rekey-bench-submit-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&work).expect("the work directory");
    let rts = Runtimes {
        server: server_rt,
        client: client_rt,
    };
    let load_before = load_average();
    let mut summary = run(&config, &rts, &work);
    std::fs::remove_dir_all(&work).ok();
    let load_after = load_average();
    // Other work on the machine shows in every figure: say how busy it was.
    println!(
        "submit: load average (1 min) {load_before:.2} before, {load_after:.2} after, on {} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    summary["load_average"] = serde_json::json!([load_before, load_after]);
    println!("{summary}");
}

/// The server's runtime and the load generator's.
struct Runtimes {
    server: Runtime,
    client: Runtime,
}

/// One vault size: bundles of about `grants` grants.
#[derive(Clone, Copy)]
struct Size {
    grants: usize,
    users: usize,
}

impl Size {
    fn spec(self) -> DemoSpec {
        DemoSpec {
            users: self.users,
            roles: 0,
            records: ((self.users * self.grants) as f64 / GRANTS_PER_RECORD_PER_USER).round()
                as usize,
            rsa_bits: 2048,
            seed: 29,
            with_problems: false,
            kdf: rekey_demo::KdfParams::LIGHT,
        }
    }
}

/// Whether PostgreSQL runs, and where.
enum Postgres {
    Run,
    Skip(String),
}

struct Config {
    sizes: Vec<Size>,
    submitters: Vec<usize>,
    postgres: Postgres,
}

impl Config {
    fn from_env() -> Self {
        let mut sizes = vec![Size {
            grants: 100,
            users: env_usize("REKEY_BENCH_SUBMIT_USERS", 1000),
        }];
        let large = env_usize("REKEY_BENCH_SUBMIT_USERS_1000", 200);
        if large >= 2 {
            sizes.push(Size {
                grants: 1000,
                users: large,
            });
        }
        let submitters = std::env::var("REKEY_BENCH_SUBMIT_SUBMITTERS")
            .unwrap_or_else(|_| "1,8,64".to_owned())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .filter(|&n: &usize| n > 0)
            .collect();
        Self {
            sizes,
            submitters,
            postgres: postgres_wanted(),
        }
    }
}

/// `REKEY_BENCH_POSTGRES`: `1` requires it (a missing server or `psql`
/// fails the bench), `0` skips it, unset runs it when it answers.
fn postgres_wanted() -> Postgres {
    let url = Backend::Postgres.admin_url().unwrap_or_default();
    let shown = rekey_storage::redact_url(&url);
    let forced = match std::env::var("REKEY_BENCH_POSTGRES").as_deref() {
        Ok("0") => return Postgres::Skip("REKEY_BENCH_POSTGRES=0".to_owned()),
        Ok("1") => true,
        _ => false,
    };
    let problem = if !psql_installed() {
        Some("`psql` is not installed (the vault copies need it)".to_owned())
    } else if !answers(&url) {
        Some(format!("no PostgreSQL answers at {shown}"))
    } else {
        None
    };
    match problem {
        Some(p) if forced => panic!("REKEY_BENCH_POSTGRES=1 but {p}"),
        Some(p) => Postgres::Skip(format!("{p}; REKEY_BENCH_POSTGRES=1 requires it")),
        None => Postgres::Run,
    }
}

fn psql_installed() -> bool {
    std::process::Command::new("psql")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether `psql` can run a query at `url`.
fn answers(url: &str) -> bool {
    std::process::Command::new("psql")
        .args([url, "-XAtqc", "SELECT 1"])
        .env("PGCONNECT_TIMEOUT", "3")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What one cell measured.
#[derive(serde::Serialize)]
struct Cell {
    backend: &'static str,
    grants_target: usize,
    submitters: usize,
    bundles: usize,
    grants: usize,
    seconds: f64,
    bundles_per_second: f64,
    grants_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The server's own mean time per bundle request (its `/metrics`
    /// latency histogram: from the request's arrival to its answer).
    server_mean_ms: f64,
    retried_409: usize,
    retried_503: usize,
    errors: usize,
}

/// One seeded, started vault with its prebuilt bundles.
#[derive(serde::Serialize)]
struct VaultFacts {
    backend: &'static str,
    grants_target: usize,
    users: usize,
    records: usize,
    bundles: usize,
    bundle_grants_mean: f64,
    bundle_grants_p50: usize,
    bundle_grants_max: usize,
    seed_seconds: f64,
    start_seconds: f64,
    prepare_seconds: f64,
}

/// The 1-minute load average (`/proc/loadavg`; 0 where there is none).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn run(config: &Config, rts: &Runtimes, work: &Path) -> serde_json::Value {
    let mut cells = Vec::new();
    let mut vaults = Vec::new();
    let mut backends = vec![Backend::Sqlite];
    match &config.postgres {
        Postgres::Run => backends.push(Backend::Postgres),
        Postgres::Skip(why) => println!("submit: PostgreSQL skipped: {why}"),
    }
    for &size in &config.sizes {
        let spec = size.spec();
        let t = Instant::now();
        let mut demo = demo_vault(&spec, work);
        eprintln!(
            "submit: generated the ~{}-grant vault ({} users, {} records) in {:.1?}",
            size.grants,
            spec.users,
            spec.records,
            t.elapsed()
        );
        // The RSA unwraps of each user's legacy grants, kept across
        // backends (the same grants in both).
        let memos: HashMap<PrincipalId, Arc<OpenedGrants>> = demo
            .credentials
            .users
            .values()
            .map(|u| (u.id, Arc::new(OpenedGrants::new())))
            .collect();
        for &backend in &backends {
            let mut source = Source::seed(backend, &mut demo, rts, work, size);
            let facts = source.prepare(&demo, &memos, rts);
            for &n in &config.submitters {
                cells.push(source.cell(&demo, rts, n, work));
            }
            vaults.push(facts);
        }
    }
    let postgres = match &config.postgres {
        Postgres::Run => serde_json::Value::Null,
        Postgres::Skip(why) => serde_json::Value::String(why.clone()),
    };
    serde_json::json!({
        "bench": "submit",
        "postgres_skipped": postgres,
        "vaults": vaults,
        "cells": cells,
    })
}

/// The demo vault of `spec`, its RSA keys the fixture cache's (copied, so
/// nothing is ever appended to the fixture).
fn demo_vault(spec: &DemoSpec, work: &Path) -> DemoVault {
    let cache = work.join("keys-2048.cache");
    if !cache.exists() {
        std::fs::copy(rekey_test_support::fixtures::demo_key_cache(), &cache)
            .expect("copy the fixture key cache");
    }
    let mut source = KeySource::with_cache(&cache).with_distinct_limit(DISTINCT_KEYS);
    let demo = generate(spec, &mut source, &|_, _, _| {}).expect("generate the demo vault");
    if source.generated > 0 {
        eprintln!(
            "submit: warning: {} RSA keys generated (the fixture cache had {})",
            source.generated, source.reused
        );
    }
    demo
}

/// A user's prebuilt submission.
#[derive(Clone)]
struct Prebuilt {
    user: PrincipalId,
    token: String,
    bytes: Vec<u8>,
    grants: usize,
}

/// A started vault (on SQLite: a directory; on PostgreSQL: a schema and a
/// key directory) and the bundles built against it.
struct Source {
    backend: Backend,
    size: Size,
    dir: PathBuf,
    url: String,
    /// The PostgreSQL schema (dropped with it).
    pg: Option<TestDb>,
    bundles: Vec<Prebuilt>,
    sessions_at: Instant,
    seed_seconds: f64,
    start_seconds: f64,
}

/// A rekey-server serving one vault on loopback, on the server runtime.
struct Server {
    base: String,
    /// The server's pool, closed once it has stopped.
    vault: rekey_storage::Vault,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), rekey_server::ServerError>>,
}

impl Server {
    fn start(rt: &Runtime, url: &str, keys: &Path) -> Self {
        rt.block_on(async {
            let mut config = ServerConfig::new(url, keys, TOKEN).expect("server config");
            // The demo registered its one server under this name; the
            // server takes its place (preflight wants exactly one).
            config.server_name = rekey_engine::host_name();
            let vault = rekey_storage::Vault::open(url)
                .await
                .expect("the server opens the vault");
            let engine = Engine::new(
                vault.clone(),
                Some(KeyDir::open(keys).expect("key directory")),
                "server:bench",
            );
            let state = AppState::new(engine, &config);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback");
            let base = format!("http://{}", listener.local_addr().expect("address"));
            let (stop, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(rekey_server::run(
                listener,
                state,
                Duration::from_secs(10),
                rekey_server::ConnectionLimits::from(&config),
                async move {
                    let _ = rx.await;
                },
            ));
            Self {
                base,
                vault,
                stop,
                task,
            }
        })
    }

    /// Stops the server and closes its connections (SQLite: the last one
    /// to close checkpoints the WAL), so the vault's files can be copied.
    fn stop(self, rt: &Runtime) {
        let _ = self.stop.send(());
        rt.block_on(async {
            self.task
                .await
                .expect("the server task")
                .expect("the server stops cleanly");
            self.vault.close().await.expect("close the server's pool");
        });
    }
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
        Backend::MySql => "MariaDB",
    }
}

/// The schema a [`TestDb`] URL names (`…options[search_path]=NAME`).
fn schema_of(url: &str) -> String {
    url.rsplit_once("search_path]=")
        .map(|(_, s)| s.split('&').next().unwrap_or(s).to_owned())
        .expect("a PostgreSQL test URL names its schema")
}

/// A copy of the started vault for one cell, removed when dropped.
struct CellVault {
    dir: PathBuf,
    url: String,
    /// The PostgreSQL schema of the copy (dropped with it).
    _pg: Option<TestDb>,
}

impl Drop for CellVault {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

impl Source {
    /// Installs `demo` on `backend` (a SQLite file or a fresh PostgreSQL
    /// schema) in preparation, its certificates backed up.
    fn seed(
        backend: Backend,
        demo: &mut DemoVault,
        rts: &Runtimes,
        work: &Path,
        size: Size,
    ) -> Self {
        let dir = work.join(format!("{}-{}", backend_name(backend), size.grants));
        std::fs::create_dir_all(&dir).expect("the vault's directory");
        let (url, pg) = match backend {
            Backend::Postgres => {
                let db = rts.client.block_on(TestDb::create(Backend::Postgres));
                (db.url.clone(), Some(db))
            }
            _ => (
                format!("sqlite://{}?mode=rwc", dir.join("vault.db").display()),
                None,
            ),
        };
        let t = Instant::now();
        rts.client.block_on(async {
            let keys = KeyDir::open(dir.join("keys")).expect("key directory");
            let vault = rekey_storage::Vault::init(&url)
                .await
                .expect("init the vault");
            let engine = Engine::new(vault.clone(), Some(keys), "bench");
            engine.begin_preparation().await.expect("preparation");
            // The vault was generated once for every backend: its
            // directory-sync token must still postdate this preparation.
            for p in &mut demo.data.directory_profiles {
                p.token_issued_at = Some(rekey_core::model::Timestamp::now());
            }
            demo.install(&engine).await.expect("install the demo vault");
            engine
                .backup_certificates_with(
                    &dir.join("certificates.age"),
                    &Passphrase::new("bench passphrase".into()),
                    &BackupOptions {
                        work_factor: Some(10),
                        ..BackupOptions::default()
                    },
                )
                .await
                .expect("back up the certificates");
            drop(engine);
            vault.close().await.expect("close the operator's pool");
        });
        Self {
            backend,
            size,
            dir,
            url,
            pg,
            bundles: Vec::new(),
            sessions_at: Instant::now(),
            seed_seconds: t.elapsed().as_secs_f64(),
            start_seconds: 0.0,
        }
    }

    /// Starts the migration through the API, then every e2ee user logs in,
    /// fetches its package and builds its bundle, kept in memory. Untimed
    /// (but reported).
    fn prepare(
        &mut self,
        demo: &DemoVault,
        memos: &HashMap<PrincipalId, Arc<OpenedGrants>>,
        rts: &Runtimes,
    ) -> VaultFacts {
        let server = Server::start(&rts.server, &self.url, &self.dir.join("keys"));
        let client = HttpClient::new(&server.base)
            .expect("client")
            .expect_vault(demo.vault);
        let t = Instant::now();
        rts.client.block_on(async {
            let admin = client.clone().with_admin_token(TOKEN);
            let started = admin.start("Start").await.expect("start");
            assert_eq!(started.phase, Phase::UserPhase, "{started:?}");
        });
        self.start_seconds = t.elapsed().as_secs_f64();
        let t = Instant::now();
        self.sessions_at = Instant::now();
        self.bundles = rts.client.block_on(prebuild_all(&client, demo, memos));
        let prepare_seconds = t.elapsed().as_secs_f64();
        server.stop(&rts.server);

        let mut sizes: Vec<usize> = self.bundles.iter().map(|b| b.grants).collect();
        sizes.sort_unstable();
        let total: usize = sizes.iter().sum();
        let facts = VaultFacts {
            backend: backend_name(self.backend),
            grants_target: self.size.grants,
            users: self.size.users,
            records: self.size.spec().records,
            bundles: sizes.len(),
            bundle_grants_mean: total as f64 / sizes.len().max(1) as f64,
            bundle_grants_p50: sizes.get(sizes.len() / 2).copied().unwrap_or(0),
            bundle_grants_max: sizes.last().copied().unwrap_or(0),
            seed_seconds: self.seed_seconds,
            start_seconds: self.start_seconds,
            prepare_seconds,
        };
        eprintln!(
            "submit: {} ~{}-grant vault: seeded in {:.1} s, started in {:.1} s, {} bundles \
             built in {:.1} s (untimed); grants per bundle: mean {:.0}, median {}, max {}",
            facts.backend,
            facts.grants_target,
            facts.seed_seconds,
            facts.start_seconds,
            facts.bundles,
            prepare_seconds,
            facts.bundle_grants_mean,
            facts.bundle_grants_p50,
            facts.bundle_grants_max
        );
        facts
    }
}

/// Logs `u` in: its master secret (Argon2id), then a session.
async fn log_in(
    client: &HttpClient,
    u: &rekey_demo::DemoUser,
    vault: VaultId,
    kdf: rekey_demo::KdfParams,
) -> (HttpClient, rekey_core::MasterSecret) {
    let (id, password) = (u.id, u.password.clone());
    let (master, authenticator) = tokio::task::spawn_blocking(move || {
        let master = master_secret(&password, vault, id, &kdf).expect("master secret");
        let auth = rekey_core::auth::LoginAuthenticator::derive(&master, vault, id)
            .expect("login authenticator");
        (master, auth)
    })
    .await
    .expect("the master secret's task");
    let session = client
        .open_session(id, &authenticator)
        .await
        .expect("log in");
    (session, master)
}

/// Every e2ee user's bundle: log in, fetch the package, build (one
/// thread per build, as many builds at once as there are cores).
async fn prebuild_all(
    client: &HttpClient,
    demo: &DemoVault,
    memos: &HashMap<PrincipalId, Arc<OpenedGrants>>,
) -> Vec<Prebuilt> {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let slots = Arc::new(tokio::sync::Semaphore::new(cores));
    let (vault, kdf) = (demo.credentials.vault, demo.credentials.kdf);
    let mut tasks = Vec::new();
    for u in demo.credentials.users.values() {
        let (client, slots, u) = (client.clone(), slots.clone(), u.clone());
        let memo = memos[&u.id].clone();
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire().await.expect("a build slot");
            let (session, master) = log_in(&client, &u, vault, kdf).await;
            let package = session.package(u.id).await.expect("the package");
            let (bytes, grants) = tokio::task::spawn_blocking(move || {
                let out = build_bundle_reusing(
                    &package,
                    Unlock::MasterSecret(&master),
                    BuildOptions { threads: Some(1) },
                    &|_, _| {},
                    &memo,
                )
                .expect("build the bundle");
                (out.bundle.encode(), out.bundle.bundle().grant_count())
            })
            .await
            .expect("the build's task");
            Prebuilt {
                user: u.id,
                token: session.session_token().expect("a session").to_owned(),
                bytes,
                grants,
            }
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("a prebuild task"));
    }
    out
}

/// New sessions for every user (the old ones are about to expire).
async fn relog_all(client: &HttpClient, demo: &DemoVault) -> HashMap<PrincipalId, String> {
    let mut tasks = Vec::new();
    let (vault, kdf) = (demo.credentials.vault, demo.credentials.kdf);
    for u in demo.credentials.users.values() {
        let (client, u) = (client.clone(), u.clone());
        tasks.push(tokio::spawn(async move {
            let (session, _) = log_in(&client, &u, vault, kdf).await;
            (u.id, session.session_token().expect("a session").to_owned())
        }));
    }
    let mut out = HashMap::new();
    for t in tasks {
        let (id, token) = t.await.expect("a login task");
        out.insert(id, token);
    }
    out
}

impl Source {
    /// A fresh copy of the started vault: the SQLite files, or a new
    /// PostgreSQL schema with the source's rows; the key directory too.
    fn copy(&self, rts: &Runtimes, work: &Path, n: usize) -> CellVault {
        let dir = work.join(format!(
            "{}-{}-cell-{n}",
            backend_name(self.backend),
            self.size.grants
        ));
        copy_dir(&self.dir, &dir);
        match &self.pg {
            None => CellVault {
                url: format!("sqlite://{}?mode=rwc", dir.join("vault.db").display()),
                dir,
                _pg: None,
            },
            Some(src) => {
                let db = rts.client.block_on(async {
                    let db = TestDb::create(Backend::Postgres).await;
                    // rekey's own schema: tables, indexes, triggers.
                    db.vault().await.close().await.expect("close");
                    db
                });
                clone_schema(&schema_of(&src.url), &schema_of(&db.url));
                CellVault {
                    url: db.url.clone(),
                    dir,
                    _pg: Some(db),
                }
            }
        }
    }

    /// One cell: a copy of the vault, a server on it, `n` submitters.
    fn cell(&mut self, demo: &DemoVault, rts: &Runtimes, n: usize, work: &Path) -> Cell {
        let copy = self.copy(rts, work, n);
        let server = Server::start(&rts.server, &copy.url, &copy.dir.join("keys"));
        let client = HttpClient::new(&server.base)
            .expect("client")
            .expect_vault(demo.vault);
        if self.sessions_at.elapsed() > SESSION_REFRESH {
            // The session key is the vault's: sessions opened on this copy
            // are good on the next ones too.
            let tokens = rts.client.block_on(relog_all(&client, demo));
            for b in &mut self.bundles {
                b.token.clone_from(&tokens[&b.user]);
            }
            self.sessions_at = Instant::now();
        }
        let bundles = Arc::new(self.bundles.clone());
        let outcome = rts
            .client
            .block_on(submit_all(client.clone(), bundles.clone(), n));
        let admin = client.with_admin_token(TOKEN);
        let status = rts.client.block_on(admin.status()).expect("status");
        let server_mean_ms = rts.client.block_on(server_mean_ms(&admin));
        server.stop(&rts.server);
        drop(copy);
        let expected: usize = bundles.iter().map(|b| b.grants).sum();
        if outcome.errors.is_empty() {
            assert_eq!(status.progress.users.remaining, 0, "{status:?}");
            assert_eq!(outcome.grants, expected, "grants applied");
        }
        self.report(&outcome, n, server_mean_ms)
    }

    fn report(&self, o: &Outcome, n: usize, server_mean_ms: f64) -> Cell {
        let mut lat = o.latencies.clone();
        lat.sort_unstable();
        let bundles = lat.len() - o.errors.len();
        let cell = Cell {
            backend: backend_name(self.backend),
            grants_target: self.size.grants,
            submitters: n,
            bundles,
            grants: o.grants,
            seconds: o.seconds,
            bundles_per_second: bundles as f64 / o.seconds.max(1e-9),
            grants_per_second: o.grants as f64 / o.seconds.max(1e-9),
            p50_ms: ms(percentile(&lat, 0.5)),
            p99_ms: ms(percentile(&lat, 0.99)),
            max_ms: ms(lat.last().copied().unwrap_or_default()),
            server_mean_ms,
            retried_409: o.retried_409,
            retried_503: o.retried_503,
            errors: o.errors.len(),
        };
        println!(
            "submit: {:<10} ~{:>4} grants/bundle, {:>2} submitters: {:>5} bundles in {:>6.2} s = \
             {:>7.1} bundles/s, {:>7.0} grants/s; latency p50 {:>7.1} ms, p99 {:>7.1} ms, max \
             {:>7.1} ms (server's mean {:>6.1} ms); retried {} (409) {} (503); errors {}",
            cell.backend,
            cell.grants_target,
            n,
            cell.bundles,
            cell.seconds,
            cell.bundles_per_second,
            cell.grants_per_second,
            cell.p50_ms,
            cell.p99_ms,
            cell.max_ms,
            cell.server_mean_ms,
            cell.retried_409,
            cell.retried_503,
            cell.errors
        );
        for e in o.errors.iter().take(3) {
            println!("submit:   error: {e}");
        }
        cell
    }
}

/// Copies a vault directory (the database and its WAL, the key directory,
/// the backup); not SQLite's `-shm` index, which the first connection to
/// the copy rebuilds.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("a copy's directory");
    for e in std::fs::read_dir(from).expect("read the vault's directory") {
        let e = e.expect("a directory entry");
        let name = e.file_name();
        if name.to_string_lossy().ends_with("-shm") {
            continue;
        }
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).expect("copy a vault file");
        }
    }
}

/// Copies every row of schema `src` into `dst` (made by rekey's schema
/// migrations: the same tables, columns in the same order), with
/// triggers and foreign keys off for the copy, sets the sequences, then
/// `ANALYZE`s the copy, in one `psql` run.
fn clone_schema(src: &str, dst: &str) {
    let url = Backend::Postgres.admin_url().unwrap_or_default();
    let sql = format!(
        r"BEGIN;
SET LOCAL session_replication_role = replica;
DO $clone$
DECLARE t record;
BEGIN
  FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = '{src}' LOOP
    EXECUTE format('DELETE FROM %I.%I', '{dst}', t.tablename);
    EXECUTE format('INSERT INTO %I.%I SELECT * FROM %I.%I', '{dst}', t.tablename, '{src}', t.tablename);
    EXECUTE format('ANALYZE %I.%I', '{dst}', t.tablename);
  END LOOP;
  FOR t IN SELECT sequencename, last_value FROM pg_sequences
           WHERE schemaname = '{src}' AND last_value IS NOT NULL LOOP
    PERFORM setval(format('%I.%I', '{dst}', t.sequencename), t.last_value);
  END LOOP;
END
$clone$;
COMMIT;
"
    );
    let out = std::process::Command::new("psql")
        .args([url.as_str(), "-XqAt", "-v", "ON_ERROR_STOP=1", "-c", &sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql could not copy the vault: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the submitters of one cell saw.
#[derive(Default)]
struct Outcome {
    /// Each bundle's, first POST to its answer (retries included).
    latencies: Vec<Duration>,
    /// Grants the server reports applied.
    grants: usize,
    retried_409: usize,
    retried_503: usize,
    /// Bundles that failed for good.
    errors: Vec<String>,
    /// The window: the first POST to the last answer.
    seconds: f64,
}

/// One bundle to send: its user's session client, its bytes and its index.
type Job = (HttpClient, Vec<u8>, usize);

/// The timed part: `n` submitters send every bundle once, each taking the
/// next from a shared queue.
async fn submit_all(client: HttpClient, bundles: Arc<Vec<Prebuilt>>, n: usize) -> Outcome {
    // Before the clock: keep-alive connections (n requests at once), and
    // each job's client and bytes.
    let warm: Vec<_> = (0..n)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.raw(Method::GET, "/health", None, false).await })
        })
        .collect();
    for w in warm {
        w.await.expect("warm-up task").expect("GET /health");
    }
    let jobs: Vec<Job> = bundles
        .iter()
        .enumerate()
        .map(|(i, b)| (client.clone().with_session(&b.token), b.bytes.clone(), i))
        .collect();
    let queue = Arc::new(Mutex::new(jobs.into_iter()));
    let done = Arc::new(AtomicUsize::new(0));

    let t0 = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (queue, bundles, done) = (queue.clone(), bundles.clone(), done.clone());
            tokio::spawn(submitter(queue, bundles, done))
        })
        .collect();
    let mut all = Outcome::default();
    for t in tasks {
        let o = t.await.expect("a submitter");
        all.latencies.extend(o.latencies);
        all.grants += o.grants;
        all.retried_409 += o.retried_409;
        all.retried_503 += o.retried_503;
        all.errors.extend(o.errors);
    }
    all.seconds = t0.elapsed().as_secs_f64();
    assert_eq!(
        done.load(Ordering::Relaxed),
        bundles.len(),
        "every bundle sent"
    );
    all
}

/// One submitter: takes bundles off the queue until it is empty.
async fn submitter(
    queue: Arc<Mutex<std::vec::IntoIter<Job>>>,
    bundles: Arc<Vec<Prebuilt>>,
    done: Arc<AtomicUsize>,
) -> Outcome {
    let mut out = Outcome::default();
    loop {
        let next = queue.lock().expect("the queue").next();
        let Some((client, bytes, i)) = next else {
            return out;
        };
        let user = bundles[i].user;
        let mut first = Some(bytes);
        let (mut conflicts, mut busy) = (0, 0);
        let t = Instant::now();
        let result = loop {
            // A retry sends the bytes again (a copy: rare, and counted).
            let body = first.take().unwrap_or_else(|| bundles[i].bytes.clone());
            match client.submit(user, body).await {
                Ok(report) => break Ok(report),
                Err(e) if e.status() == Some(409) && conflicts + 1 < MAX_CONFLICT_ATTEMPTS => {
                    conflicts += 1;
                    tokio::time::sleep(rekey_client::conflict_backoff(conflicts)).await;
                }
                Err(e) if e.status() == Some(503) && busy + 1 < MAX_BUSY_ATTEMPTS => {
                    busy += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => break Err(e),
            }
        };
        out.latencies.push(t.elapsed());
        out.retried_409 += conflicts;
        out.retried_503 += busy;
        match result {
            Ok(report) => out.grants += report.grants,
            Err(e) => out.errors.push(format!("{user}: {e}")),
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// The mean of the server's latency histogram of `POST …/bundle`, in ms
/// (0 when `/metrics` does not have it).
async fn server_mean_ms(client: &HttpClient) -> f64 {
    let Ok((_, body)) = client.raw(Method::GET, "/metrics", None, false).await else {
        return 0.0;
    };
    let text = String::from_utf8_lossy(&body);
    let value = |family: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(family) && l.contains("method=\"POST\"") && l.contains("/bundle\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    match (
        value("rekey_http_request_duration_seconds_sum{"),
        value("rekey_http_request_duration_seconds_count{"),
    ) {
        (Some(sum), Some(count)) if count > 0.0 => sum / count * 1000.0,
        _ => 0.0,
    }
}
