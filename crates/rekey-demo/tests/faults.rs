//! The database going away in the middle of a migration transaction: on
//! PostgreSQL, the backend running `start`, a bundle's apply or a finalize
//! batch is terminated (`pg_terminate_backend`) while the transaction is
//! half done. Deterministic: a second session holds a lock the transaction
//! needs, so it waits at a known statement; then its backend is killed.
//! Each time: one clear error, nothing written, and the same operation
//! resumes on the same engine (its connection pool recovers).
//!
//! The shared PostgreSQL server is never stopped (other tests use it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rekey_core::model::{KeyState, MigrationState, Phase};
use rekey_demo::{DemoError, DemoSpec};
use rekey_engine::EngineError;
use rekey_storage::Vault;
use rekey_test_support::db::{Backend, TestDb};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use std::time::{Duration, Instant};
use support::{login, seeded_with, temp, verify};

fn spec() -> DemoSpec {
    DemoSpec {
        seed: 9,
        ..support::spec()
    }
}

async fn one(conn: &impl ConnectionTrait, sql: &str) -> Option<i32> {
    conn.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap()
        .map(|r| r.try_get_by_index::<i32>(0).unwrap())
}

/// Runs `op` while another session holds `lock` on `table`; once `op`'s
/// backend waits for that lock (mid-transaction), terminates it. Answers
/// the operation's error.
async fn terminated<T, E, F>(url: &str, table: &str, op: F) -> E
where
    T: std::fmt::Debug + Send + 'static,
    E: Send + 'static,
    F: std::future::Future<Output = Result<T, E>> + Send + 'static,
{
    let holder = sea_orm::Database::connect(url).await.unwrap();
    let admin = sea_orm::Database::connect(url).await.unwrap();
    let txn = holder.begin().await.unwrap();
    // EXCLUSIVE: reads go on, writes wait.
    txn.execute_unprepared(&format!("LOCK TABLE \"{table}\" IN EXCLUSIVE MODE"))
        .await
        .unwrap();
    let holder_pid = one(&txn, "SELECT pg_backend_pid()").await.unwrap();
    let task = tokio::spawn(op);
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        if let Some(pid) = one(
            &admin,
            &format!(
                "SELECT pid FROM pg_stat_activity WHERE {holder_pid} = ANY(pg_blocking_pids(pid))"
            ),
        )
        .await
        {
            break pid;
        }
        assert!(
            !task.is_finished(),
            "the operation finished without waiting for the lock"
        );
        assert!(Instant::now() < deadline, "nothing waits for the lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let killed = one(
        &admin,
        &format!("SELECT pg_terminate_backend({victim})::int"),
    )
    .await;
    assert_eq!(killed, Some(1));
    let result = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the operation ends once its backend is gone")
        .unwrap();
    txn.rollback().await.unwrap();
    close(holder).await;
    close(admin).await;
    result.expect_err("the operation lost its backend mid-transaction")
}

async fn close(c: DatabaseConnection) {
    let _ = c.close().await;
}

/// What must not change when a transaction dies.
async fn state(v: &Vault) -> (Phase, i64, usize, rekey_core::model::Progress) {
    (
        v.migration().await.unwrap().phase,
        v.migration().await.unwrap().version,
        v.audit_events(0, 1_000_000).await.unwrap().len(),
        v.progress().await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (cargo xtask ci runs it)"]
async fn postgres_backend_terminated_mid_transaction() {
    let db = TestDb::create(Backend::Postgres).await;
    let url = db.url.clone();
    let dir = temp("fault");
    let (engine, vault, creds) = seeded_with(&url, &dir.join("keys"), &spec()).await;
    let before = verify(&engine, &creds).await;
    assert!(before.passed());
    let mut faults = Vec::new();

    // 1. start: the phase moved and the principals were reset, the audit
    //    event waits; killed.
    let s0 = state(&vault).await;
    let e = engine.clone();
    let err = terminated(&url, "audit", async move {
        e.start("Start", &|_, _, _| {}).await
    })
    .await;
    assert!(
        matches!(err, EngineError::Storage(_)),
        "a database error: {err:?}"
    );
    assert_eq!(state(&vault).await, s0, "start left nothing behind");
    faults.push(format!("start: {err}"));
    let report = engine.start("Start", &|_, _, _| {}).await.unwrap();
    assert_eq!(report.phase, Phase::UserPhase);

    // 2. a bundle's apply: key pair and grants inserted, the audit event
    //    waits; killed.
    let (name, user) = creds.users.iter().next().unwrap();
    let s1 = state(&vault).await;
    let (e, n, pw) = (engine.clone(), name.clone(), user.password.clone());
    let err = terminated(
        &url,
        "audit",
        async move { login(&e, &n, &pw, Some(1)).await },
    )
    .await;
    assert!(
        matches!(err, DemoError::Engine(EngineError::Storage(_))),
        "{err:?}"
    );
    assert_eq!(state(&vault).await, s1, "the apply left nothing");
    let p = vault.principal(user.id).await.unwrap().unwrap();
    assert_eq!(p.migration, MigrationState::Pending);
    assert!(
        vault
            .key_pairs(user.id)
            .await
            .unwrap()
            .iter()
            .all(|k| k.state == KeyState::Legacy),
        "no new key pair survived"
    );
    faults.push(format!("bundle apply: {err}"));
    for (n, u) in &creds.users {
        login(&engine, n, &u.password, Some(1)).await.unwrap();
    }

    // 3. finalize: the phase moved to finalizing; the first delete batch
    //    waits on the certificate table; killed. Resumes.
    let legacy_before = vault.progress().await.unwrap();
    let e = engine.clone();
    let err = terminated(
        &url,
        "certificate",
        async move { e.finalize(&|_| {}).await },
    )
    .await;
    assert!(matches!(err, EngineError::Storage(_)), "{err:?}");
    assert_eq!(vault.migration().await.unwrap().phase, Phase::Finalizing);
    assert_eq!(vault.progress().await.unwrap(), legacy_before);
    assert!(
        !vault.certificates().await.unwrap().is_empty(),
        "the batch's deletes rolled back"
    );
    faults.push(format!("finalize batch: {err}"));
    engine.finalize(&|_| {}).await.unwrap();
    assert_eq!(vault.migration().await.unwrap().phase, Phase::Completed);
    let after = verify(&engine, &creds).await;
    assert!(after.passed(), "{after:?}");
    assert_eq!(after.records_read, before.records_read);
    println!(
        "PostgreSQL backend terminated mid-transaction: {} faults injected, each resumed, verify passed:",
        faults.len()
    );
    for f in &faults {
        println!("  {f}");
    }

    std::fs::remove_dir_all(dir).ok();
}

/// A crash in the server phase between applying a service's bundle and
/// recording the certificate of its new key (`run_server_phase` stores the
/// key file, applies the bundle, then calls `add_certificate` in a
/// transaction of its own) leaves the service migrated without a
/// certificate for its new key; resuming skips migrated services, so the
/// certificate is never written, and finalize then deletes the legacy one.
/// The crash state is made by hand here: after a complete server phase,
/// one new certificate row is removed and the phase put back to
/// `server_phase`, exactly what a SIGKILL in that window leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_new_certificate_is_recorded_is_repaired_on_resume() {
    let dir = temp("cert-crash");
    let url = format!("sqlite://{}?mode=rwc", dir.join("v.db").display());
    let (engine, vault, _) = seeded_with(&url, &dir.join("keys"), &spec()).await;
    engine.start("Start", &|_, _, _| {}).await.unwrap();
    let services = vault
        .principals_of_kind(rekey_core::model::PrincipalKind::Service)
        .await
        .unwrap();
    let current = |kps: Vec<rekey_core::model::KeyPairRecord>| {
        kps.into_iter()
            .find(|k| k.state == KeyState::Current)
            .unwrap()
    };
    let victim = current(vault.key_pairs(services[0].id).await.unwrap());
    let raw = sea_orm::Database::connect(&url).await.unwrap();
    raw.execute_unprepared(&format!(
        "DELETE FROM certificate WHERE key_pair_id = '{}'",
        victim.id
    ))
    .await
    .unwrap();
    // The migration row is rekey's alone: the crash state is written past
    // its guard, as the migration's own transaction would.
    raw.execute_unprepared("INSERT INTO migration_session (conn_id) VALUES (0)")
        .await
        .unwrap();
    raw.execute_unprepared("UPDATE migration SET phase = 'server_phase' WHERE id = 1")
        .await
        .unwrap();
    raw.execute_unprepared("DELETE FROM migration_session")
        .await
        .unwrap();
    raw.close().await.unwrap();

    // Resume, as `rekey start` does after a crash.
    let done = engine.start("", &|_, _, _| {}).await.unwrap();
    assert!(done.resumed);
    assert_eq!(done.phase, Phase::UserPhase);
    let certificates = vault.certificates().await.unwrap();
    for s in &services {
        let kp = current(vault.key_pairs(s.id).await.unwrap());
        assert!(
            certificates.iter().any(|c| c.key_pair == kp.id),
            "service {} is migrated but its new key has no certificate",
            s.name
        );
    }
    std::fs::remove_dir_all(dir).ok();
}
