//! The whole migration through the engine on a real database: seed a demo
//! vault (fixture RSA keys), start (server phase), every user logs in,
//! finalize, verify; plus abort restoring the legacy rows. SQLite always,
//! PostgreSQL when reachable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rekey_core::model::{MigrationState, Phase};
use rekey_engine::demo::{DemoSpec, generate};
use rekey_engine::keycache::KeySource;
use rekey_engine::{Engine, KeyDir};
use rekey_storage::Vault;
use std::sync::Arc;
use support::fixture_keys;

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("rekey-flow-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn seeded(url: &str, keydir: &std::path::Path) -> (Engine, rekey_engine::demo::Credentials) {
    let vault = Vault::init(url).await.unwrap();
    let engine = Engine::new(vault, Some(KeyDir::open(keydir).unwrap()), "test");
    // 4 users + 1 role + 3 services = the 8 fixture keys.
    let spec = DemoSpec {
        users: 4,
        roles: 1,
        records: 40,
        rsa_bits: 2048,
        seed: 7,
        with_problems: false,
    };
    let demo = generate(&spec, &mut KeySource::preset(fixture_keys()), &|_, _, _| {}).unwrap();
    engine.seed_demo(&demo).await.unwrap();
    (engine, demo.credentials)
}

async fn full_flow(url: &str) {
    let dir = temp("full");
    let (engine, creds) = seeded(url, &dir.join("keys")).await;
    let before = engine.verify(&creds, &|_, _| {}).await.unwrap();
    assert!(before.passed(), "{before:?}");
    assert!(before.records_read > 0);

    // Wrong code word: nothing changes.
    assert!(engine.start("start", &[]).await.is_err());
    assert_eq!(
        engine.vault().migration().await.unwrap().phase,
        Phase::Legacy
    );
    let (start, server) = engine.start("Start", &[]).await.unwrap();
    assert_eq!(start.phase, Phase::UserPhase);
    let server = server.unwrap();
    assert_eq!(server.migrated.len(), 3, "every service migrated");
    assert!(
        server.migrated_along >= 1,
        "managed users migrate with the directory key"
    );
    // Start twice is refused.
    assert!(engine.start("Start", &[]).await.is_err());

    // Finalize refused while users are pending, naming them.
    let err = engine.finalize(&|_| {}).await.unwrap_err();
    assert!(err.to_string().contains("still pending"), "{err}");

    // A wrong password changes nothing.
    let (name, _) = creds.users.iter().next().unwrap();
    assert!(
        engine
            .login(name, "wrong password", Some(1), Arc::new(|_, _| {}))
            .await
            .is_err()
    );
    for (name, u) in &creds.users {
        let r = engine
            .login(name, &u.password, Some(2), Arc::new(|_, _| {}))
            .await
            .unwrap();
        assert_eq!(r.build.non_migratable, 0);
    }
    // Verified through the mixed state, then finalized.
    assert!(engine.verify(&creds, &|_, _| {}).await.unwrap().passed());
    let progress = engine.vault().progress().await.unwrap();
    assert_eq!(progress.users.remaining, 0, "{progress:?}");
    let deleted = engine.finalize(&|_| {}).await.unwrap();
    assert!(deleted > 0);
    assert_eq!(
        engine.vault().migration().await.unwrap().phase,
        Phase::Completed
    );
    let after = engine.verify(&creds, &|_, _| {}).await.unwrap();
    assert!(after.passed(), "{after:?}");
    assert_eq!(after.records_read, before.records_read);
    // Abort after completion is refused.
    assert!(engine.abort().await.is_err());
    std::fs::remove_dir_all(dir).ok();
}

async fn abort_flow(url: &str) {
    let dir = temp("abort");
    let (engine, creds) = seeded(url, &dir.join("keys")).await;
    let before = engine.verify(&creds, &|_, _| {}).await.unwrap();
    engine.start("Start", &[]).await.unwrap();
    let (name, u) = creds.users.iter().next().unwrap();
    engine
        .login(name, &u.password, None, Arc::new(|_, _| {}))
        .await
        .unwrap();
    engine.abort().await.unwrap();
    assert_eq!(
        engine.vault().migration().await.unwrap().phase,
        Phase::Legacy
    );
    let p = engine.vault().principal(u.id).await.unwrap().unwrap();
    assert_eq!(p.migration, MigrationState::Pending);
    let after = engine.verify(&creds, &|_, _| {}).await.unwrap();
    assert_eq!(
        after, before,
        "every user reads everything with the legacy keys"
    );
    // And the migration can start again.
    engine.start("Start", &[]).await.unwrap();
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_full_flow() {
    let dir = temp("sqlite");
    full_flow(&format!("sqlite://{}?mode=rwc", dir.join("v.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_abort_flow() {
    let dir = temp("sqlite-abort");
    abort_flow(&format!("sqlite://{}?mode=rwc", dir.join("v.db").display())).await;
}

/// A fresh PostgreSQL schema for one test, or None (with a visible skip).
async fn postgres_url(tag: &str) -> Option<String> {
    let base = std::env::var("REKEY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
    let schema = format!("rekey_flow_{tag}_{}", uuid::Uuid::new_v4().simple());
    let created = async {
        use sea_orm::ConnectionTrait;
        let conn = sea_orm::Database::connect(&base).await?;
        conn.execute_unprepared(&format!("CREATE SCHEMA {schema}"))
            .await?;
        conn.close().await?;
        Ok::<_, sea_orm::DbErr>(format!("{base}?options[search_path]={schema}"))
    };
    match created.await {
        Ok(url) => Some(url),
        Err(e) => {
            assert!(
                std::env::var("REKEY_REQUIRE_DBS").is_err(),
                "PostgreSQL required: {e}"
            );
            eprintln!("skipped: no PostgreSQL at {base} ({e})");
            None
        }
    }
}

/// Drops a test schema made by [`postgres_url`].
async fn drop_schema(url: &str) {
    use sea_orm::ConnectionTrait;
    let Some((base, schema)) = url.split_once("?options[search_path]=") else {
        return;
    };
    if let Ok(conn) = sea_orm::Database::connect(base).await {
        let _ = conn
            .execute_unprepared(&format!("DROP SCHEMA {schema} CASCADE"))
            .await;
        let _ = conn.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_full_flow() {
    if let Some(url) = postgres_url("full").await {
        full_flow(&url).await;
        drop_schema(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_abort_flow() {
    if let Some(url) = postgres_url("abort").await {
        abort_flow(&url).await;
        drop_schema(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_certificate_key_waits_for_its_import() {
    let dir = temp("awaiting");
    let keys = dir.join("keys");
    let url = format!("sqlite://{}?mode=rwc", dir.join("v.db").display());
    let (engine, creds) = seeded(&url, &keys).await;
    // Take one certificate's private key away.
    let cert = engine.vault().certificates().await.unwrap().remove(0);
    let file = keys.join(format!("{}.pk8", cert.fingerprint));
    let aside = dir.join("aside.pk8");
    std::fs::rename(&file, &aside).unwrap();

    let (report, server) = engine.start("Start", &[]).await.unwrap();
    assert_eq!(report.phase, Phase::AwaitingCertificates);
    let server = server.unwrap();
    assert_eq!(server.missing_certificates.len(), 1);
    assert!(server.missing_certificates[0].contains(&cert.fingerprint));
    // Still missing: stays waiting, names it again.
    let err = engine.run_server_phase(&|_, _, _| {}).await.unwrap_err();
    assert!(err.to_string().contains(&cert.fingerprint), "{err}");
    assert_eq!(
        engine.vault().migration().await.unwrap().phase,
        Phase::AwaitingCertificates
    );
    // Logins wait for the user phase.
    let (name, u) = creds.users.iter().next().unwrap();
    assert!(
        engine
            .login(name, &u.password, None, Arc::new(|_, _| {}))
            .await
            .is_err()
    );

    // Imported: the server phase resumes and completes.
    std::fs::rename(&aside, &file).unwrap();
    let done = engine.run_server_phase(&|_, _, _| {}).await.unwrap();
    assert_eq!(done.phase, Some(Phase::UserPhase));
    assert_eq!(done.migrated.len(), 3);
    engine
        .login(name, &u.password, None, Arc::new(|_, _| {}))
        .await
        .unwrap();
    std::fs::remove_dir_all(dir).ok();
}
