//! Shared by the integration tests: a demo vault (fixture RSA keys,
//! SQLite in a temporary file) served by rekey-server on loopback.
#![allow(dead_code, unreachable_pub)]

use hyper::{Method, StatusCode};
use rekey_client::{HttpClient, MigrationApi};
use rekey_core::PrincipalId;
use rekey_core::bundle::{BuildOptions, SignedBundle, Unlock, build_bundle};
use rekey_core::model::Progress;
use rekey_demo::password::master_secret;
use rekey_demo::{Credentials, DemoSpec, KeySource, generate};
use rekey_engine::{Engine, KeyDir};
use rekey_keys::{BackupOptions, Passphrase};
use rekey_server::{AppState, ServerConfig};
use rekey_storage::Vault;
use std::path::PathBuf;
use std::time::Duration;

pub use rekey_test_support::fixtures::rsa_2048 as fixture_keys;

pub const TOKEN: &str = "test-admin-token-0123456789";
pub const MAX_BUNDLE: usize = 256 * 1024;

/// Who sends a request.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    /// No credentials.
    Anon,
    /// The admin token.
    Admin,
    /// The session of the demo user of this name.
    User(&'a str),
}

pub struct Harness {
    pub dir: PathBuf,
    /// The operator's engine on the vault (the test's own connection).
    pub engine: Engine,
    /// The test's own handle on the vault, to look at what was written.
    pub vault: Vault,
    pub creds: Credentials,
    pub admin: HttpClient,
    pub anon: HttpClient,
    /// A logged-in client of each demo user, by name.
    pub users: std::collections::BTreeMap<String, HttpClient>,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<Result<(), rekey_server::ServerError>>>,
}

/// A demo vault (SQLite in a temporary directory, fixture RSA keys) in
/// preparation, its certificates backed up: what a server is started on.
pub struct Seeded {
    /// The temporary directory (the vault, the key directory).
    pub dir: PathBuf,
    /// The vault's database URL.
    pub url: String,
    /// The key directory.
    pub keys: PathBuf,
    /// The operator's engine on the vault.
    pub engine: Engine,
    pub creds: Credentials,
}

impl Seeded {
    /// A demo vault generated from `seed` (4 users, 1 role, 3 services).
    pub async fn new(tag: &str, seed: u64) -> Self {
        let dir = std::env::temp_dir().join(format!("rekey-server-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("vault.db").display());
        let keys = dir.join("keys");
        let engine = Engine::init(&url, Some(KeyDir::open(&keys).unwrap()), "test")
            .await
            .unwrap();
        engine.begin_preparation().await.unwrap();
        // 4 users + 1 role + 3 services = the 8 fixture keys.
        let spec = DemoSpec {
            users: 4,
            roles: 1,
            records: 40,
            rsa_bits: 2048,
            seed,
            with_problems: false,
            kdf: rekey_demo::KdfParams::LIGHT,
        };
        let demo = generate(&spec, &mut KeySource::preset(fixture_keys()), &|_, _, _| {}).unwrap();
        demo.install(&engine).await.unwrap();
        engine
            .backup_certificates_with(
                &dir.join("certificates.age"),
                &Passphrase::new("test passphrase".into()),
                &BackupOptions {
                    work_factor: Some(10),
                    ..BackupOptions::default()
                },
            )
            .await
            .unwrap();
        Self {
            dir,
            url,
            keys,
            engine,
            creds: demo.credentials,
        }
    }
}

impl Harness {
    pub async fn new(tag: &str) -> Self {
        Self::with_config(tag, |_| {}).await
    }

    /// A harness whose server runs with `adjust`ed limits.
    pub async fn with_config(tag: &str, adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let Seeded {
            dir,
            url,
            keys,
            engine,
            creds,
        } = Seeded::new(tag, 11).await;
        let demo_vault = creds.vault;

        // The server opens the vault on its own, as the binary does.
        let mut config = ServerConfig::new(&url, &keys, TOKEN).unwrap();
        // The demo registered its one server under this name; the server
        // takes its place (preflight wants exactly one active server).
        config.server_name = rekey_engine::host_name();
        config.max_bundle_bytes = MAX_BUNDLE;
        adjust(&mut config);
        let server_engine = Engine::open(&url, Some(KeyDir::open(&keys).unwrap()), "server:test")
            .await
            .unwrap();
        let state = AppState::new(server_engine, &config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(rekey_server::run(
            listener,
            state,
            Duration::from_millis(200),
            rekey_server::ConnectionLimits::from(&config),
            async move {
                let _ = rx.await;
            },
        ));
        let anon = HttpClient::new(&base).unwrap().expect_vault(demo_vault);
        let admin = anon.clone().with_admin_token(TOKEN);
        let mut users = std::collections::BTreeMap::new();
        for name in creds.users.keys() {
            users.insert(name.clone(), login(&anon, &creds, name).await);
        }
        Self {
            dir,
            vault: Vault::open(&url).await.unwrap(),
            engine,
            creds,
            admin,
            anon,
            users,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// What must not change when a request is refused.
    pub async fn snapshot(&self) -> (Progress, usize, i64) {
        let v = &self.vault;
        (
            v.progress().await.unwrap(),
            v.audit_events(0, 1_000_000).await.unwrap().len(),
            v.migration().await.unwrap().version,
        )
    }

    /// The client of `who`, and whether it sends the admin token.
    pub fn client(&self, who: Who<'_>) -> (&HttpClient, bool) {
        match who {
            Who::Anon => (&self.anon, false),
            Who::Admin => (&self.admin, true),
            Who::User(name) => (&self.users[name], false),
        }
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        who: Who<'_>,
    ) -> (StatusCode, serde_json::Value) {
        let (c, admin) = self.client(who);
        let (status, bytes) = c.raw(method, path, body, admin).await.unwrap();
        let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        });
        (status, v)
    }

    /// Asserts an error status with a JSON {error, code, hint} body and no
    /// write; answers the error message.
    pub async fn refused(
        &self,
        expected: StatusCode,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        who: Who<'_>,
    ) -> String {
        let before = self.snapshot().await;
        let (status, v) = self.raw(method.clone(), path, body, who).await;
        assert_eq!(status, expected, "{method} {path}: {v}");
        let error = v["error"].as_str().expect("error message").to_owned();
        assert!(v["hint"].as_str().is_some_and(|h| !h.is_empty()), "{v}");
        assert!(
            v["code"].as_str().is_some_and(
                |c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            ),
            "a stable snake_case code: {v}"
        );
        assert_documented(status, &v);
        assert_eq!(
            self.snapshot().await,
            before,
            "{method} {path} wrote something"
        );
        error
    }

    pub async fn build(&self, name: &str) -> (PrincipalId, Vec<u8>) {
        let u = &self.creds.users[name];
        let package = self.users[name].package(u.id).await.unwrap();
        let master = master_secret(&u.password, self.creds.vault, u.id, &self.creds.kdf).unwrap();
        let out = build_bundle(
            &package,
            Unlock::MasterSecret(&master),
            BuildOptions { threads: Some(1) },
        )
        .unwrap();
        (u.id, out.bundle.encode())
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("graceful shutdown")
                .unwrap()
                .unwrap();
        }
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// Logs the demo user `name` in as its client does: the vault's KDF
/// parameters, the master secret, the login authenticator, a session.
pub async fn login(anon: &HttpClient, creds: &Credentials, name: &str) -> HttpClient {
    let u = &creds.users[name];
    let kdf = rekey_demo::KdfParams::from_json(&anon.client_kdf().await.unwrap()).unwrap();
    let master = master_secret(&u.password, creds.vault, u.id, &kdf).unwrap();
    let authenticator =
        rekey_core::auth::LoginAuthenticator::derive(&master, creds.vault, u.id).unwrap();
    anon.open_session(u.id, &authenticator).await.unwrap()
}

/// Asserts that a refusal's code and status are those docs/PROTOCOL.md §9
/// lists (admin-only refusals are listed in /openapi.json instead).
pub fn assert_documented(status: StatusCode, body: &serde_json::Value) {
    const ADMIN_ONLY: [&str; 6] = [
        "unauthorized",
        "query_malformed",
        "read_only",
        "wrong_code_word",
        "hex_malformed",
        "bad_resolution",
    ];
    let code = body["code"].as_str().unwrap_or_default();
    if ADMIN_ONLY.contains(&code) {
        return;
    }
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/PROTOCOL.md"
    ))
    .unwrap();
    let listed = rekey_server::error::documented_codes(&page);
    assert!(
        listed
            .iter()
            .any(|(c, s)| c == code && *s == status.as_u16()),
        "{code} ({status}) is not listed in docs/PROTOCOL.md §9: {body}"
    );
}

/// A signature list edit: (principal, kind byte, signature bytes).
pub type Sigs = Vec<(PrincipalId, u8, Vec<u8>)>;

/// `bytes` (a signed bundle) with its signatures edited by `edit`.
pub fn with_signatures(bytes: &[u8], edit: impl FnOnce(&mut Sigs)) -> Vec<u8> {
    let signed = SignedBundle::parse(bytes).unwrap();
    let body = signed.body();
    let sigs_len: usize = 2 + signed
        .signatures()
        .iter()
        .map(|s| 16 + 1 + 2 + s.bytes.len())
        .sum::<usize>();
    let header = &bytes[..bytes.len() - body.len() - sigs_len];
    let mut sigs: Sigs = signed
        .signatures()
        .iter()
        .map(|s| (s.principal, s.kind.to_byte(), s.bytes.clone()))
        .collect();
    edit(&mut sigs);
    let mut out = header.to_vec();
    out.extend_from_slice(body);
    out.extend_from_slice(&u16::try_from(sigs.len()).unwrap().to_be_bytes());
    for (principal, kind, sig) in sigs {
        out.extend_from_slice(&principal.to_bytes());
        out.push(kind);
        out.extend_from_slice(&u16::try_from(sig.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&sig);
    }
    out
}

/// Demo vaults served by one process ([`rekey_server::run_vaults`]) on
/// loopback.
pub struct ServedVaults {
    /// The vaults, in the order given.
    pub vaults: Vec<Seeded>,
    /// The server's URL (`http://127.0.0.1:PORT`).
    pub base: String,
    pub config: ServerConfig,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<Result<(), rekey_server::ServerError>>>,
}

impl ServedVaults {
    /// A demo vault per `(name, seed)`, all served by one process.
    pub async fn new(named: &[(&str, u64)]) -> Self {
        let mut vaults = Vec::new();
        for (name, seed) in named {
            vaults.push(Seeded::new(&format!("vaults-{name}"), *seed).await);
        }
        // The database URL and key directory of the configuration are not
        // used: each vault has its own.
        let mut config = ServerConfig::new("sqlite://unused.db", "unused-keys", TOKEN).unwrap();
        // The demo registered its one server under this name; the server
        // takes its place in each vault (preflight wants one active server).
        config.server_name = rekey_engine::host_name();
        config.max_bundle_bytes = MAX_BUNDLE;
        let sites = named
            .iter()
            .zip(&vaults)
            .map(|((name, _), v)| rekey_server::VaultSite::new(*name, &v.url, &v.keys))
            .collect();
        let set = rekey_server::VaultSet::open(sites, &config).await.unwrap();
        let names: Vec<&str> = named.iter().map(|(n, _)| *n).collect();
        assert_eq!(set.names(), names);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(rekey_server::run_vaults(
            listener,
            set,
            Duration::from_millis(200),
            rekey_server::ConnectionLimits::from(&config),
            async move {
                let _ = rx.await;
            },
        ));
        Self {
            vaults,
            base,
            config,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server (gracefully) and removes the vaults.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("graceful shutdown")
                .unwrap()
                .unwrap();
        }
        for v in &self.vaults {
            std::fs::remove_dir_all(&v.dir).ok();
        }
    }
}

/// The first run of a vault that migrates twice: started to `first` over
/// HTTP, every e2ee user logged in by rekey's Rust client, finalized, and
/// the certificate keys (now of `first`) backed up again, as an operator
/// does before the next start.
pub async fn migrate_once_with_the_rust_client(h: &Harness, first: rekey_core::Target) {
    let started = h.admin.start_to("Start", Some(first)).await.unwrap();
    assert_eq!(started.target, first);
    everyone_logs_in(h).await;
    h.admin.finalize().await.unwrap();
    assert_eq!(
        h.vault.migration().await.unwrap().phase,
        rekey_core::model::Phase::Completed
    );
    let ids: Vec<_> = h.creds.users.values().map(|u| u.id).collect();
    for kp in h.vault.key_pairs_of(&ids).await.unwrap() {
        assert_eq!(kp.scheme, first.batch_scheme(), "{kp:?}");
    }
    h.engine
        .backup_certificates_with(
            &h.dir.join("certificates-after-first-run.age"),
            &Passphrase::new("test passphrase".into()),
            &BackupOptions {
                work_factor: Some(10),
                ..BackupOptions::default()
            },
        )
        .await
        .unwrap();
}

/// Every e2ee demo user logs in over HTTP with rekey's Rust client, one at
/// a time; no role check refused.
pub async fn everyone_logs_in(h: &Harness) -> rekey_demo::login::LoginSummary {
    let quiet: rekey_demo::login::Progress = std::sync::Arc::new(|_, _| {});
    let summary = rekey_demo::login::login_all(
        rekey_demo::login::Via::Server(h.anon.base_url().to_owned()),
        h.creds.clone(),
        1,
        quiet,
    )
    .await
    .unwrap();
    assert!(summary.roles_refused.is_empty(), "{summary:?}");
    summary
}
