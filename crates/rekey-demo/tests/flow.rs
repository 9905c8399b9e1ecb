//! The whole migration through the engine on a real database: seed a demo
//! vault (fixture RSA keys), start (server phase), every user logs in,
//! finalize, verify; plus abort restoring the legacy rows. SQLite always,
//! PostgreSQL when reachable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rekey_core::grant::wrap_legacy_grant;
use rekey_core::model::{
    GrantOrigin, GrantRecord, KeyCustody, MigrationState, Phase, PrincipalKind, ServiceKind,
};
use rekey_core::{GrantId, Kek, LegacyRsaPublicKey, PrincipalId, Scheme, Subject};
use rekey_engine::demo::{DemoSpec, generate};
use rekey_engine::keycache::KeySource;
use rekey_engine::password::master_secret;
use rekey_engine::{Engine, KeyDir};
use rekey_storage::Vault;
use std::sync::Arc;
use support::fixture_keys;

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("rekey-flow-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// 4 users + 1 role + 3 services = the 8 fixture keys.
fn spec() -> DemoSpec {
    DemoSpec {
        users: 4,
        roles: 1,
        records: 40,
        rsa_bits: 2048,
        seed: 7,
        with_problems: false,
    }
}

async fn seeded(url: &str, keydir: &std::path::Path) -> (Engine, rekey_engine::demo::Credentials) {
    seeded_with(url, keydir, &spec()).await
}

async fn seeded_with(
    url: &str,
    keydir: &std::path::Path,
    spec: &DemoSpec,
) -> (Engine, rekey_engine::demo::Credentials) {
    let vault = Vault::init(url).await.unwrap();
    let engine = Engine::new(vault, Some(KeyDir::open(keydir).unwrap()), "test");
    // 4 users + 1 role + 3 services = the 8 fixture keys.
    let demo = generate(spec, &mut KeySource::preset(fixture_keys()), &|_, _, _| {}).unwrap();
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

/// A role whose members are all directory-managed users: no member of it
/// ever logs in, so the server phase must migrate it with the managed users
/// it holds, or finalize would wait for ever.
async fn managed_only_role_flow(url: &str) {
    let dir = temp("managed-role");
    let vault = Vault::init(url).await.unwrap();
    let engine = Engine::new(vault, Some(KeyDir::open(dir.join("keys")).unwrap()), "test");
    let spec = spec();
    let mut demo = generate(&spec, &mut KeySource::preset(fixture_keys()), &|_, _, _| {}).unwrap();
    // Hand every e2ee member of the role to the directory: a grant of its
    // KEK to the directory master key, and no password any more.
    let data = &demo.data;
    let role = data
        .principals
        .iter()
        .find(|p| p.kind == PrincipalKind::Role)
        .unwrap()
        .id;
    let dmk = data
        .principals
        .iter()
        .find(|p| p.service == Some(ServiceKind::DirectoryMasterKey))
        .unwrap()
        .id;
    let dmk_public = data
        .key_pairs
        .iter()
        .find(|k| k.principal == dmk)
        .map(|k| LegacyRsaPublicKey::from_spki_der(&k.public_key).unwrap())
        .unwrap();
    let members: Vec<PrincipalId> = data
        .memberships
        .iter()
        .filter(|m| m.role == role)
        .map(|m| m.member)
        .collect();
    let mut handed = Vec::new();
    for (name, u) in demo.credentials.users.clone() {
        if !members.contains(&u.id) {
            continue;
        }
        let master = master_secret(&u.password, demo.vault, u.id).unwrap();
        let kek = Kek::derive(&master, demo.vault, u.id).unwrap();
        let kp = demo
            .data
            .key_pairs
            .iter()
            .find(|k| k.principal == u.id)
            .unwrap()
            .id;
        demo.data.grants.push(GrantRecord {
            id: GrantId::random(),
            recipient: dmk,
            subject: Subject::PrivateKey(kp),
            envelope: wrap_legacy_grant(
                &dmk_public,
                Scheme::RsaOaepSha256,
                kek.dangerous_as_bytes(),
            )
            .unwrap(),
            origin: GrantOrigin::Legacy,
            created_at: None,
        });
        let p = demo
            .data
            .principals
            .iter_mut()
            .find(|p| p.id == u.id)
            .unwrap();
        p.custody = KeyCustody::Managed;
        demo.credentials.users.remove(&name);
        handed.push(u.id);
    }
    assert!(
        !handed.is_empty(),
        "the role had an e2ee member to hand over"
    );
    let all_managed = members.iter().all(|m| {
        demo.data
            .principals
            .iter()
            .any(|p| p.id == *m && p.custody == KeyCustody::Managed)
    });
    assert!(all_managed, "every member of the role is managed now");
    assert!(!demo.credentials.users.is_empty(), "an e2ee user is left");
    engine.seed_demo(&demo).await.unwrap();
    let creds = demo.credentials;

    let directory_before = engine.readable_records_of_service(dmk).await.unwrap();
    let role_records = demo
        .data
        .grants
        .iter()
        .filter(|g| g.recipient == role && matches!(g.subject, Subject::RecordKey(_)))
        .count();
    assert!(role_records > 0, "the role is granted records");
    assert!(
        directory_before.len() >= role_records,
        "the directory key reads the role's records through its managed members"
    );

    let (_, server) = engine.start("Start", &[]).await.unwrap();
    let server = server.unwrap();
    let role_now = engine.vault().principal(role).await.unwrap().unwrap();
    assert_eq!(
        role_now.migration,
        MigrationState::Migrated,
        "the server phase migrated the managed-only role"
    );
    assert!(server.migrated_along > handed.len(), "{server:?}");
    for (name, u) in &creds.users {
        engine
            .login(name, &u.password, Some(2), Arc::new(|_, _| {}))
            .await
            .unwrap();
    }
    engine.finalize(&|_| {}).await.unwrap();
    assert_eq!(
        engine.vault().migration().await.unwrap().phase,
        Phase::Completed
    );
    assert!(engine.verify(&creds, &|_, _| {}).await.unwrap().passed());
    assert_eq!(
        engine.readable_records_of_service(dmk).await.unwrap(),
        directory_before,
        "through the new keys only, the directory key reads what it read before"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_managed_only_role_migrates_in_the_server_phase() {
    let dir = temp("sqlite-managed");
    let url = format!("sqlite://{}?mode=rwc", dir.join("vault.db").display());
    managed_only_role_flow(&url).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_managed_only_role_migrates_in_the_server_phase() {
    if let Some(url) = postgres_url("managed").await {
        managed_only_role_flow(&url).await;
        drop_schema(&url).await;
    }
}

/// Verify reads a role's records once for all its members (a cache): a
/// record lost from the role must still show up as a mismatch for every
/// member that reads through it, not only the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_every_member_of_a_role_that_lost_a_record() {
    use sea_orm::ConnectionTrait;
    let dir = temp("verify-role");
    let url = format!("sqlite://{}?mode=rwc", dir.join("v.db").display());
    // Seed 8: the role has two e2ee members, and one of its records
    // reaches both only through it.
    let spec = DemoSpec { seed: 8, ..spec() };
    let (engine, creds) = seeded_with(&url, &dir.join("keys"), &spec).await;
    let before = engine.verify(&creds, &|_, _| {}).await.unwrap();
    assert!(before.passed(), "{before:?}");

    let vault = engine.vault();
    let role = vault.principals_of_kind(PrincipalKind::Role).await.unwrap()[0].clone();
    let members = vault.members_of(role.id).await.unwrap();
    let members_in_creds: Vec<&str> = creds
        .users
        .iter()
        .filter(|(_, u)| members.contains(&u.id))
        .map(|(n, _)| n.as_str())
        .collect();
    // The role's record that the most members read only through the role.
    let mut direct = std::collections::HashMap::new();
    for (n, u) in &creds.users {
        let subjects: std::collections::HashSet<Subject> = vault
            .grants_to(u.id)
            .await
            .unwrap()
            .into_iter()
            .map(|g| g.subject)
            .collect();
        direct.insert(n.as_str(), subjects);
    }
    let (lost, readers) = vault
        .grants_to(role.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|g| matches!(g.subject, Subject::RecordKey(_)))
        .map(|g| {
            let only_via_role: Vec<&str> = members_in_creds
                .iter()
                .copied()
                .filter(|n| !direct[n].contains(&g.subject))
                .collect();
            (g, only_via_role)
        })
        .max_by_key(|(_, r)| r.len())
        .expect("the role holds record grants");
    assert!(
        readers.len() >= 2,
        "two members read one of the role's records only through it: {readers:?}"
    );
    let conn = sea_orm::Database::connect(&url).await.unwrap();
    conn.execute_unprepared(&format!("DELETE FROM \"grant\" WHERE id = '{}'", lost.id))
        .await
        .unwrap();

    let after = engine.verify(&creds, &|_, _| {}).await.unwrap();
    assert!(!after.passed());
    let mut named: Vec<&str> = after
        .mismatches
        .iter()
        .map(|m| m.split(':').next().unwrap_or_default())
        .collect();
    named.sort_unstable();
    let mut expected = readers.clone();
    expected.sort_unstable();
    assert_eq!(named, expected, "{after:?}");
    assert_eq!(
        after.records_read,
        before.records_read - readers.len(),
        "each member reads one record fewer"
    );
    std::fs::remove_dir_all(dir).ok();
}
