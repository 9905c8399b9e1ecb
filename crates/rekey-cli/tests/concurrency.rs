//! Bundles racing each other through the HTTP API, on SQLite, PostgreSQL
//! and MariaDB: the same user submitting two bundles at once, two members
//! of a role migrating it at once, and 32 clients at once. Each race has
//! exactly one winner per principal; the others get a clear `409`, rebuild
//! and finish; nothing is half-applied (the ledger of
//! `tests/support/ledger.rs` finds every holding once, every grant opening,
//! every principal in exactly one applied bundle). The server runs in this
//! process (rekey-server's library) on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::ledger;

use rekey_client::{ClientError, HttpClient, MigrationApi};
use rekey_core::PrincipalId;
use rekey_core::auth::LoginAuthenticator;
use rekey_core::bundle::{BuildOptions, Unlock, build_bundle};
use rekey_core::model::PrincipalKind;
use rekey_demo::password::master_secret;
use rekey_demo::reader::Reader;
use rekey_demo::{Credentials, DemoSpec, KeySource, generate};
use rekey_engine::{Engine, KeyDir};
use rekey_keys::{BackupOptions, Passphrase};
use rekey_server::{AppState, ServerConfig};
use rekey_storage::Vault;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use support::{Backend, VaultDb};

const TOKEN: &str = "concurrency-test-admin-token";

/// A demo vault (the CLI's 16 fixture keys: 10 users, 3 roles, 3
/// services) served on loopback.
struct Served {
    dir: PathBuf,
    _db: VaultDb,
    engine: Engine,
    vault: Vault,
    keys: KeyDir,
    creds: Credentials,
    client: HttpClient,
    /// A logged-in client of each user.
    sessions: BTreeMap<PrincipalId, HttpClient>,
    before: ledger::Snapshot,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), rekey_server::ServerError>>>,
}

impl Served {
    async fn new(backend: Backend, seed: u64) -> Self {
        let dir = support::temp("race");
        let db = tokio::task::block_in_place(|| VaultDb::new(backend, &dir));
        let url = db.url.clone();
        let keys_path = dir.join("keys");
        let engine = Engine::init(&url, Some(KeyDir::open(&keys_path).unwrap()), "test")
            .await
            .unwrap();
        engine.begin_preparation().await.unwrap();
        let vault = Vault::open(&url).await.unwrap();
        let cache = dir.join("keys.cache");
        std::fs::copy(rekey_test_support::fixtures::demo_key_cache(), &cache).unwrap();
        let spec = DemoSpec {
            users: 10,
            roles: 3,
            records: 80,
            rsa_bits: 2048,
            seed,
            with_problems: false,
            kdf: rekey_demo::KdfParams::LIGHT,
        };
        let mut source = KeySource::with_cache(&cache);
        let demo = generate(&spec, &mut source, &|_, _, _| {}).unwrap();
        assert_eq!(source.generated, 0, "the fixture cache has every key");
        demo.install(&engine).await.unwrap();
        let before = ledger::snapshot(&vault).await;
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
        let mut config = ServerConfig::new(&url, &keys_path, TOKEN).unwrap();
        config.server_name = rekey_engine::host_name();
        let state = AppState::new(
            Engine::open(&url, Some(KeyDir::open(&keys_path).unwrap()), "server:test")
                .await
                .unwrap(),
            &config,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(rekey_server::run(
            listener,
            state,
            Duration::from_secs(5),
            rekey_server::ConnectionLimits::from(&config),
            async move {
                let _ = rx.await;
            },
        ));
        let client = HttpClient::new(&base)
            .unwrap()
            .expect_vault(demo.vault)
            .with_admin_token(TOKEN);
        let started = client.start("Start").await.unwrap();
        assert_eq!(
            started.phase,
            rekey_core::model::Phase::UserPhase,
            "{started:?}"
        );
        let mut sessions = BTreeMap::new();
        for u in demo.credentials.users.values() {
            let master =
                master_secret(&u.password, demo.vault, u.id, &demo.credentials.kdf).unwrap();
            let authenticator = LoginAuthenticator::derive(&master, demo.vault, u.id).unwrap();
            sessions.insert(
                u.id,
                client.open_session(u.id, &authenticator).await.unwrap(),
            );
        }
        Self {
            dir,
            _db: db,
            engine,
            vault,
            keys: KeyDir::open(&keys_path).unwrap(),
            creds: demo.credentials,
            client,
            sessions,
            before,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// A bundle of `name`'s account built from the package as it is now.
    async fn build(&self, name: &str) -> (PrincipalId, Vec<u8>) {
        let u = &self.creds.users[name];
        let package = self.sessions[&u.id].package(u.id).await.unwrap();
        let master = master_secret(&u.password, self.creds.vault, u.id, &self.creds.kdf).unwrap();
        let bytes = tokio::task::spawn_blocking(move || {
            build_bundle(
                &package,
                Unlock::MasterSecret(&master),
                BuildOptions { threads: Some(1) },
            )
            .unwrap()
            .bundle
            .encode()
        })
        .await
        .unwrap();
        (u.id, bytes)
    }

    /// `name` logs in the ordinary way (rebuilding after conflicts);
    /// `Ok(false)` when someone else had migrated it already.
    async fn migrate(&self, name: &str) -> Result<bool, ClientError> {
        let u = &self.creds.users[name];
        let master = master_secret(&u.password, self.creds.vault, u.id, &self.creds.kdf).unwrap();
        let options = BuildOptions { threads: Some(1) };
        match rekey_client::migrate(
            &self.sessions[&u.id],
            u.id,
            master,
            options,
            Arc::new(|_, _| {}),
        )
        .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("already_migrated") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every user migrates; then finalize, verify and the ledger.
    async fn finish(mut self) -> ledger::Report {
        for name in self.creds.users.keys().cloned().collect::<Vec<_>>() {
            self.migrate(&name).await.unwrap();
        }
        let fin = self.client.finalize().await.unwrap();
        assert_eq!(fin.phase, rekey_core::model::Phase::Completed);
        let v = Reader::new(&self.engine)
            .verify(&self.creds, &|_, _| {})
            .await
            .unwrap();
        assert!(v.passed(), "{v:?}");
        let report =
            ledger::check_completed(&self.vault, &self.before, &self.keys, &self.creds).await;
        assert!(
            report.clean(),
            "{:#?} {:?}",
            report.problems,
            report.missing_certificates
        );
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        std::fs::remove_dir_all(&self.dir).ok();
        report
    }
}

/// One submission's outcome: applied, or the HTTP status and error text.
type Outcome = (PrincipalId, Result<(), (u16, String)>);

/// Submits every bundle at the same moment, each with its account's
/// session.
async fn submit_all(s: &Served, bundles: Vec<(PrincipalId, Vec<u8>)>) -> Vec<Outcome> {
    let barrier = Arc::new(tokio::sync::Barrier::new(bundles.len()));
    let mut tasks = Vec::new();
    for (id, bytes) in bundles {
        let (client, barrier) = (s.sessions[&id].clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let r = client.submit(id, bytes).await;
            (
                id,
                r.map(|_| ())
                    .map_err(|e| (e.status().unwrap_or(0), e.to_string())),
            )
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Checks a race: at most one winner per principal, every loser a clear
/// 409. Answers (winners, conflicts).
fn tally(outcomes: &[Outcome]) -> (usize, usize) {
    let mut wins: BTreeMap<PrincipalId, usize> = BTreeMap::new();
    let mut conflicts = 0;
    for (id, r) in outcomes {
        match r {
            Ok(()) => *wins.entry(*id).or_default() += 1,
            Err((409, text)) => {
                assert!(
                    text.contains("already migrated")
                        || text.contains("changed")
                        || text.contains("fetch a new package"),
                    "an unclear conflict: {text}"
                );
                conflicts += 1;
            }
            Err(other) => panic!("neither applied nor a conflict: {other:?}"),
        }
    }
    assert!(wins.values().all(|n| *n == 1), "two winners: {wins:?}");
    (wins.len(), conflicts)
}

async fn same_user_twice(backend: Backend) {
    let s = Served::new(backend, 21).await;
    let names: Vec<String> = s.creds.users.keys().take(3).cloned().collect();
    let mut conflicts = 0;
    for name in &names {
        let a = s.build(name).await;
        let b = s.build(name).await;
        let before = s.vault.progress().await.unwrap();
        let outcomes = submit_all(&s, vec![a, b]).await;
        let (winners, c) = tally(&outcomes);
        assert_eq!((winners, c), (1, 1), "{outcomes:?}");
        conflicts += c;
        let after = s.vault.progress().await.unwrap();
        assert!(after.users.migrated > before.users.migrated);
        // The loser logging in again learns it is done.
        assert!(!s.migrate(name).await.unwrap());
    }
    let report = s.finish().await;
    println!(
        "same user, two bundles at once ({}): {} races, {conflicts} conflicts, {} grants checked, 0 lost",
        backend.name(),
        names.len(),
        report.grants_checked
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_same_user_submitting_two_bundles_at_once() {
    same_user_twice(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (cargo xtask ci runs it)"]
async fn postgres_same_user_submitting_two_bundles_at_once() {
    same_user_twice(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MariaDB (cargo xtask ci runs it)"]
async fn mariadb_same_user_submitting_two_bundles_at_once() {
    same_user_twice(Backend::MySql).await;
}

async fn role_raced(backend: Backend) {
    let s = Served::new(backend, 22).await;
    let vault = s.vault.clone();
    let by_id: BTreeMap<PrincipalId, String> = s
        .creds
        .users
        .iter()
        .map(|(n, u)| (u.id, n.clone()))
        .collect();
    let mut races = 0;
    let mut conflicts = 0;
    for role in vault.principals_of_kind(PrincipalKind::Role).await.unwrap() {
        let role_now = vault.principal(role.id).await.unwrap().unwrap();
        if role_now.migration != rekey_core::model::MigrationState::Pending {
            continue;
        }
        // Two e2ee members still pending.
        let mut pending = Vec::new();
        for m in vault.members_of(role.id).await.unwrap() {
            let p = vault.principal(m).await.unwrap().unwrap();
            if p.migration == rekey_core::model::MigrationState::Pending {
                if let Some(n) = by_id.get(&m) {
                    pending.push(n.clone());
                }
            }
        }
        if pending.len() < 2 {
            continue;
        }
        let a = s.build(&pending[0]).await;
        let b = s.build(&pending[1]).await;
        let outcomes = submit_all(&s, vec![a, b]).await;
        let (winners, c) = tally(&outcomes);
        races += 1;
        conflicts += c;
        assert!(winners >= 1, "{outcomes:?}");
        if winners == 1 {
            // The loser's bundle carried the role too: it lost the role
            // and must rebuild without it.
            assert_eq!(c, 1);
        }
        let role_after = vault.principal(role.id).await.unwrap().unwrap();
        assert_eq!(
            role_after.migration,
            rekey_core::model::MigrationState::Migrated
        );
        let current = vault
            .key_pairs(role.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|k| k.state == rekey_core::model::KeyState::Current)
            .count();
        assert_eq!(current, 1, "the role got one new key");
        for n in &pending[..2] {
            s.migrate(n).await.unwrap();
        }
    }
    assert!(races >= 1, "the demo vault has a role with two members");
    let report = s.finish().await;
    println!(
        "two members of a role at once ({}): {races} races, {conflicts} conflicts, {} grants checked, 0 lost",
        backend.name(),
        report.grants_checked
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_members_migrating_a_role_at_once() {
    role_raced(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (cargo xtask ci runs it)"]
async fn postgres_two_members_migrating_a_role_at_once() {
    role_raced(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MariaDB (cargo xtask ci runs it)"]
async fn mariadb_two_members_migrating_a_role_at_once() {
    role_raced(Backend::MySql).await;
}

/// 32 clients, several per user, build from the same state and submit at
/// the same moment; then every loser logs in the ordinary way.
async fn thirty_two_clients(backend: Backend) {
    let s = Served::new(backend, 23).await;
    let names: Vec<String> = s.creds.users.keys().cloned().collect();
    let mut bundles = Vec::new();
    let mut who = Vec::new();
    for i in 0..32 {
        let name = &names[i % names.len()];
        bundles.push(s.build(name).await);
        who.push(name.clone());
    }
    let outcomes = submit_all(&s, bundles).await;
    let (winners, conflicts) = tally(&outcomes);
    assert!(winners >= 1);
    // Every loser logs in again: each ends migrated exactly once.
    let mut rebuilt = 0;
    let mut already = 0;
    for (i, (_, r)) in outcomes.iter().enumerate() {
        if r.is_err() {
            if s.migrate(&who[i]).await.unwrap() {
                rebuilt += 1;
            } else {
                already += 1;
            }
        }
    }
    assert_eq!(
        winners + rebuilt,
        names.len(),
        "each user wins exactly once"
    );
    assert_eq!(conflicts, rebuilt + already);
    let report = s.finish().await;
    println!(
        "32 clients at once ({}): {} users, {winners} won the first race, {conflicts} clear conflicts \
         ({rebuilt} rebuilt and won, {already} found their account done), {} grants checked, 0 lost",
        backend.name(),
        names.len(),
        report.grants_checked
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (cargo xtask ci runs it)"]
async fn postgres_thirty_two_clients_at_once() {
    thirty_two_clients(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MariaDB (cargo xtask ci runs it)"]
async fn mariadb_thirty_two_clients_at_once() {
    thirty_two_clients(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_thirty_two_clients_at_once() {
    thirty_two_clients(Backend::Sqlite).await;
}
