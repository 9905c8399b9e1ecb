//! Load bench: a demo vault migrated entirely through the HTTP API by
//! concurrent clients on loopback, then finalized and verified. Reports
//! bundles/s and the p50/p99 latency of bundle submission (server side:
//! parse, check, apply) and of a whole login (session, package, build,
//! submit).
//!
//! ```text
//! cargo bench -p rekey-server --bench load
//! REKEY_BENCH_USERS=1000 REKEY_BENCH_CLIENTS=32 cargo bench -p rekey-server --bench load
//! ```
//!
//! RSA keys come from a cache file (`REKEY_BENCH_KEY_CACHE`, default
//! `target/rekey-bench-rsa-2048.keys`): generated on the first run only.
//! Clients and server share the machine, so the client-side bundle
//! builds compete with the server for the same cores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rekey_client::{HttpClient, MigrationApi};
use rekey_core::bundle::{BuildOptions, Unlock, build_bundle};
use rekey_core::model::Phase;
use rekey_demo::password::master_secret;
use rekey_demo::reader::Reader;
use rekey_demo::{DemoSpec, KeySource, generate};
use rekey_engine::{Engine, KeyDir};
use rekey_keys::{BackupOptions, Passphrase};
use rekey_server::{AppState, ServerConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-admin-token-0123456789";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not match skips.
    if std::env::args()
        .skip(1)
        .any(|a| a != "--bench" && !"load".contains(a.as_str()))
    {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

/// A seeded demo vault of `users` in a fresh directory.
struct Seeded {
    dir: std::path::PathBuf,
    url: String,
    keys: std::path::PathBuf,
    engine: Engine,
    demo: rekey_demo::DemoVault,
}

async fn seed(users: usize) -> Seeded {
    let cache = std::env::var("REKEY_BENCH_KEY_CACHE").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/rekey-bench-rsa-2048.keys"
        )
        .to_owned()
    });
    let dir = std::env::temp_dir().join(format!("rekey-server-load-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("vault.db").display());
    let keys = dir.join("keys");

    let t0 = Instant::now();
    let engine = Engine::init(&url, Some(KeyDir::open(&keys).unwrap()), "bench")
        .await
        .unwrap();
    engine.begin_preparation().await.unwrap();
    let spec = DemoSpec {
        users,
        roles: (users / 20).max(1),
        records: users * 10,
        rsa_bits: 2048,
        seed: 1,
        with_problems: false,
        kdf: rekey_demo::KdfParams::LIGHT,
    };
    let mut source = KeySource::with_cache(&cache);
    let demo = tokio::task::block_in_place(|| generate(&spec, &mut source, &|_, _, _| {})).unwrap();
    demo.install(&engine).await.unwrap();
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
        .unwrap();
    eprintln!(
        "seeded {users} users, {} records in {:.1?} (RSA keys: {} generated, {} from {cache})",
        spec.records,
        t0.elapsed(),
        source.generated,
        source.reused
    );
    Seeded {
        dir,
        url,
        keys,
        engine,
        demo,
    }
}

/// One user's whole login: the master secret, a session, then package,
/// build and submit until applied. Answers the login's duration and each
/// submission's.
async fn login(
    client: HttpClient,
    u: rekey_demo::DemoUser,
    vault: rekey_core::VaultId,
    kdf: rekey_demo::KdfParams,
) -> (Duration, Vec<Duration>) {
    let login = Instant::now();
    let mut submits = Vec::new();
    // The server checks the authenticator with Argon2id.
    let mut master = master_secret(&u.password, vault, u.id, &kdf).unwrap();
    let authenticator = rekey_core::auth::LoginAuthenticator::derive(&master, vault, u.id).unwrap();
    let client = client.open_session(u.id, &authenticator).await.unwrap();
    loop {
        let package = client.package(u.id).await.unwrap();
        let (bytes, m) = tokio::task::spawn_blocking(move || {
            let options = BuildOptions { threads: Some(1) };
            let out = build_bundle(&package, Unlock::MasterSecret(&master), options);
            (out.unwrap().bundle.encode(), master)
        })
        .await
        .unwrap();
        master = m;
        let t = Instant::now();
        let r = client.submit(u.id, bytes).await;
        submits.push(t.elapsed());
        match r {
            Ok(_) => return (login.elapsed(), submits),
            Err(e) if e.is_conflict() => {}
            Err(e) => panic!("{e}"),
        }
    }
}

async fn run() {
    let users = env_usize("REKEY_BENCH_USERS", 1000);
    let clients = env_usize("REKEY_BENCH_CLIENTS", 32);
    let Seeded {
        dir,
        url,
        keys,
        engine,
        demo,
    } = seed(users).await;

    let mut config = ServerConfig::new(&url, &keys, TOKEN).unwrap();
    config.server_name = rekey_engine::host_name();
    let state = AppState::new(
        Engine::open(&url, Some(KeyDir::open(&keys).unwrap()), "server:bench")
            .await
            .unwrap(),
        &config,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(rekey_server::run(
        listener,
        state,
        Duration::from_secs(10),
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
    assert_eq!(started.phase, Phase::UserPhase, "{started:?}");

    let sem = Arc::new(tokio::sync::Semaphore::new(clients.max(1)));
    let t1 = Instant::now();
    let mut tasks = Vec::new();
    for u in demo.credentials.users.values() {
        let (client, sem, u) = (client.clone(), sem.clone(), u.clone());
        let (vault, kdf) = (demo.credentials.vault, demo.credentials.kdf);
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            login(client, u, vault, kdf).await
        }));
    }
    let mut logins = Vec::new();
    let mut submits = Vec::new();
    for t in tasks {
        let (l, s) = t.await.unwrap();
        logins.push(l);
        submits.extend(s);
    }
    let applied = logins.len();
    let wall = t1.elapsed().as_secs_f64();
    logins.sort();
    submits.sort();
    let status = client.status().await.unwrap();
    assert_eq!(status.progress.users.remaining, 0, "{status:?}");
    let fin = client.finalize().await.unwrap();
    assert_eq!(fin.phase, Phase::Completed);
    let verify = Reader::new(&engine)
        .verify(&demo.credentials, &|_, _| {})
        .await
        .unwrap();
    assert!(verify.passed(), "{verify:?}");

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "load: {} e2ee users, {clients} concurrent clients: {applied} bundles in {wall:.1} s = {:.1} bundles/s ({} submissions incl. {} conflict rebuilds)",
        demo.credentials.users.len(),
        applied as f64 / wall,
        submits.len(),
        submits.len() - applied,
    );
    println!(
        "load: submit latency p50 {:.1} ms, p99 {:.1} ms; whole login (session, package, build, submit) p50 {:.1} ms, p99 {:.1} ms; verify passed",
        ms(percentile(&submits, 0.5)),
        ms(percentile(&submits, 0.99)),
        ms(percentile(&logins, 0.5)),
        ms(percentile(&logins, 0.99)),
    );
    let _ = tx.send(());
    server.await.unwrap().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
