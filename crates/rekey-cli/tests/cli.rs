//! The `rekey` binary itself: the demo end to end, and bad input giving
//! one clear message, a distinct exit code, and no change.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a scenario test reads top to bottom; its steps are commented in place"
)]

use std::process::{Command, Output};

fn rekey(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rekey"))
        .current_dir(dir)
        .args(args)
        .env_remove("REKEY_DATABASE_URL")
        .output()
        .unwrap()
}

fn temp() -> std::path::PathBuf {
    let d = std::env::temp_dir()
        .join(format!("rekey-cli-{}", std::process::id()))
        .join(format!(
            "{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `rekey demo --then hpke-mlkem768-x25519`: the demo vault migrates to
/// P-256, then again to the hybrid target; each migration verifies, and
/// the vault it leaves holds hybrid keys only.
#[test]
fn demo_then_migrates_the_migrated_vault_again() {
    let dir = temp();
    let out = rekey(
        &dir,
        &[
            "demo",
            "--users",
            "8",
            "--roles",
            "2",
            "--format",
            "json",
            "--key-cache",
            "cache.bin",
            "--then",
            "hpke-mlkem768-x25519",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["target"], "hpke-p256", "{v}");
    assert_eq!(v["verify"]["mismatches"], serde_json::json!([]), "{v}");
    let again = v["again"].as_array().unwrap();
    assert_eq!(again.len(), 1, "{v}");
    let a = &again[0];
    assert_eq!(a["target"], "hpke-mlkem768-x25519", "{a}");
    assert_eq!(a["verify"]["mismatches"], serde_json::json!([]), "{a}");
    assert_eq!(
        a["verify"]["records_read"], v["verify"]["records_read"],
        "{v}"
    );
    assert_eq!(a["logins"]["users"], v["logins"]["users"], "{v}");
    assert!(a["legacy_rows_deleted"].as_u64().unwrap() > 0, "{a}");
    assert_eq!(a["server_keys"], 3, "{a}");
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.join("rekey-demo/vault.db").display()
    );
    let st = rekey(&dir, &["--db", &db, "--format", "json", "status"]);
    let s: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(
        (&s["phase"], &s["target"]),
        (
            &serde_json::json!("completed"),
            &serde_json::json!("hpke-mlkem768-x25519")
        ),
        "{s}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn demo_runs_to_a_verified_finalized_vault_with_json_summary() {
    let dir = temp();
    let out = rekey(
        &dir,
        &[
            "demo",
            "--users",
            "8",
            "--roles",
            "2",
            "--format",
            "json",
            "--key-cache",
            "cache.bin",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verify"]["mismatches"], serde_json::json!([]), "{v}");
    assert!(v["verify"]["users"].as_u64().unwrap() > 0, "{v}");
    assert!(v["logins"]["grants"].as_u64().unwrap() > 0, "{v}");
    assert!(v["legacy_rows_deleted"].as_u64().unwrap() > 0, "{v}");
    // The vault it left is completed.
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.join("rekey-demo/vault.db").display()
    );
    let st = rekey(&dir, &["--db", &db, "--format", "json", "status"]);
    let s: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(s["phase"], "completed");
    // Abort after completion: refused, exit 3.
    let ab = rekey(&dir, &["--db", &db, "abort", "--yes"]);
    assert_eq!(
        ab.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&ab.stderr)
    );
    assert!(String::from_utf8_lossy(&ab.stderr).contains("hint:"));
}

/// Seeds a small demo vault into `db` from the fixture key cache (no RSA
/// key generation) and backs up its certificates, so preflight lets
/// `start` through.
fn seeded(dir: &std::path::Path, db: &str, creds: &str) {
    seeded_with(dir, db, creds, &[]);
}

/// [`seeded`], with more `demo` options (before `seed`).
fn seeded_with(dir: &std::path::Path, db: &str, creds: &str, extra: &[&str]) {
    std::fs::copy(
        rekey_test_support::fixtures::demo_key_cache(),
        dir.join("cache.bin"),
    )
    .unwrap();
    let seed = rekey(
        dir,
        &[
            "--db",
            db,
            "demo",
            "--users",
            "10",
            "--roles",
            "3",
            "--records",
            "40",
            "--key-cache",
            "cache.bin",
        ]
        .iter()
        .chain(extra)
        .chain(&["seed", "--credentials", creds])
        .copied()
        .collect::<Vec<_>>(),
    );
    assert!(
        seed.status.success(),
        "{}",
        String::from_utf8_lossy(&seed.stderr)
    );
    std::fs::write(dir.join("pass"), "pw for the test").unwrap();
    let backup = rekey(
        dir,
        &[
            "--db",
            db,
            "cert",
            "backup",
            "--out",
            "b.age",
            "--passphrase-file",
            "pass",
        ],
    );
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Each documented exit code, from a real refusal, with its hint; the
/// vault unchanged by every one.
#[test]
fn every_documented_exit_code_comes_with_a_hint_and_changes_nothing() {
    let dir = temp();
    let db = format!("sqlite://{}?mode=rwc", dir.join("v.db").display());
    seeded(&dir, &db, "c.json");
    let status = || {
        let st = rekey(&dir, &["--db", &db, "--format", "json", "status"]);
        let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
        (v["phase"].clone(), v["progress"].clone())
    };
    let legacy = status();
    assert_eq!(legacy.0, "legacy");

    // 2: bad arguments (clap), and a demo spec that cannot be.
    let bad = rekey(&dir, &["--db", &db, "start", "--no-such-flag"]);
    assert_eq!(code(&bad), Some(2), "{}", stderr(&bad));
    let spec = rekey(
        &dir,
        &[
            "--db",
            "sqlite://x.db?mode=rwc",
            "demo",
            "--users",
            "1",
            "seed",
        ],
    );
    assert_eq!(code(&spec), Some(2), "{}", stderr(&spec));
    assert!(stderr(&spec).contains("--users") && stderr(&spec).contains("hint:"));
    // 3: the code word, exactly; nothing changed.
    let s = rekey(&dir, &["--db", &db, "start", "--code-word", "start"]);
    assert_eq!(code(&s), Some(3), "{}", stderr(&s));
    assert!(stderr(&s).contains("Start") && stderr(&s).contains("hint:"));
    assert_eq!(status(), legacy);
    // 5: a database that does not answer, named without its password.
    let unreachable = rekey(
        &dir,
        &["--db", "postgres://u:secretpw@127.0.0.1:1/x", "status"],
    );
    assert_eq!(code(&unreachable), Some(5));
    let err = stderr(&unreachable);
    assert!(
        err.contains("127.0.0.1:1") && !err.contains("secretpw"),
        "{err}"
    );
    // 8: an unusable file (a backup that is not one, a credentials file
    // that does not parse).
    std::fs::write(dir.join("junk.age"), b"not an age file").unwrap();
    let junk = rekey(
        &dir,
        &[
            "--db",
            &db,
            "cert",
            "verify",
            "junk.age",
            "--passphrase-file",
            "pass",
        ],
    );
    assert_eq!(code(&junk), Some(8), "{}", stderr(&junk));
    assert!(stderr(&junk).contains("hint:"));
    std::fs::write(dir.join("junk.json"), b"{").unwrap();
    let creds = rekey(&dir, &["--db", &db, "verify", "--credentials", "junk.json"]);
    assert_eq!(code(&creds), Some(8), "{}", stderr(&creds));

    let start = rekey(&dir, &["--db", &db, "start", "--code-word", "Start"]);
    assert_eq!(code(&start), Some(0), "{}", stderr(&start));
    let started = status();
    assert_eq!(started.0, "user_phase");

    // 6: an unknown user, a wrong password (in-process and through a
    // run of logins, which names the user).
    let u = rekey(
        &dir,
        &["--db", &db, "login", "--user", "nobody", "--password", "x"],
    );
    assert_eq!(code(&u), Some(6), "{}", stderr(&u));
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("c.json")).unwrap()).unwrap();
    let victim = c["users"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let w = rekey(
        &dir,
        &[
            "--db",
            &db,
            "login",
            "--user",
            &victim,
            "--password",
            "wrong",
        ],
    );
    assert_eq!(code(&w), Some(6), "{}", stderr(&w));
    let mut bad: serde_json::Value = c.clone();
    bad["users"][&victim]["password"] = "not the password".into();
    std::fs::write(dir.join("bad.json"), bad.to_string()).unwrap();
    let all = rekey(
        &dir,
        &[
            "--db",
            &db,
            "demo",
            "--concurrency",
            "1",
            "login-all",
            "--credentials",
            "bad.json",
        ],
    );
    assert_eq!(code(&all), Some(6), "{}", stderr(&all));
    assert!(stderr(&all).contains(&victim));
    // 3: finalize while users are pending names them; start again.
    let f = rekey(&dir, &["--db", &db, "finalize"]);
    assert_eq!(code(&f), Some(3), "{}", stderr(&f));
    assert!(stderr(&f).contains("pending"));
    let again = rekey(&dir, &["--db", &db, "start", "--code-word", "Start"]);
    assert_eq!(code(&again), Some(3), "{}", stderr(&again));
    assert_eq!(status().0, "user_phase");

    // 7: a vault that no longer gives a user what it should (records
    // deleted behind its back once the vault is writable again).
    let ok = rekey(
        &dir,
        &["--db", &db, "demo", "login-all", "--credentials", "c.json"],
    );
    assert_eq!(code(&ok), Some(0), "{}", stderr(&ok));
    let fin = rekey(&dir, &["--db", &db, "finalize"]);
    assert_eq!(code(&fin), Some(0), "{}", stderr(&fin));
    rekey_test_support::db::block_on(async {
        use sea_orm::ConnectionTrait;
        let conn = sea_orm::Database::connect(&db).await.unwrap();
        conn.execute_unprepared("DELETE FROM record WHERE id IN (SELECT id FROM record LIMIT 3)")
            .await
            .unwrap();
        conn.close().await.unwrap();
    });
    let v = rekey(&dir, &["--db", &db, "verify", "--credentials", "c.json"]);
    assert_eq!(code(&v), Some(7), "{}", stderr(&v));
    assert!(stderr(&v).contains("hint:"));
}

/// Kills the server when the test ends, however it ends.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_demo_vault_migrates_through_rekey_serve() {
    let dir = temp();
    let db = format!("sqlite://{}?mode=rwc", dir.join("v.db").display());
    seeded(&dir, &db, "c.json");
    let start = rekey(&dir, &["--db", &db, "start", "--code-word", "Start"]);
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let server = Serve(
        Command::new(env!("CARGO_BIN_EXE_rekey"))
            .current_dir(&dir)
            .args(["--db", &db, "serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("REKEY_ADMIN_TOKEN", "a-long-enough-admin-token")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Wait for it to answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "rekey serve did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let all = rekey(
        &dir,
        &[
            "--format",
            "json",
            "demo",
            "login-all",
            "--server",
            &url,
            "--credentials",
            "c.json",
        ],
    );
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    assert!(v["grants"].as_u64().unwrap() > 0, "{v}");
    assert!(v["legacy_unwraps"].as_u64().unwrap() > 0, "{v}");
    drop(server);
    let fin = rekey(&dir, &["--db", &db, "finalize"]);
    assert!(
        fin.status.success(),
        "{}",
        String::from_utf8_lossy(&fin.stderr)
    );
    let ver = rekey(&dir, &["--db", &db, "verify", "--credentials", "c.json"]);
    assert!(
        ver.status.success(),
        "{}",
        String::from_utf8_lossy(&ver.stderr)
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Preflight's remedy for users that can never log in: `user purge` and
/// `user restore`, with their refusals (unknown user, wrong status, records
/// that would lose their last reader, a migration under way), each
/// changing nothing, and what a purge removes.
#[test]
fn user_purge_and_restore_are_preflight_remedies_with_their_refusals() {
    use rekey_core::model::{AuditEvent, Timestamp, UserStatus};
    let dir = temp();
    let db = format!("sqlite://{}?mode=rwc", dir.join("v.db").display());
    seeded_with(&dir, &db, "c.json", &["--with-problems"]);
    let rt = runtime();
    let vault = rt.block_on(rekey_storage::Vault::open(&db)).unwrap();
    let deactivated = rt
        .block_on(vault.users_by_status(UserStatus::Deactivated))
        .unwrap()
        .remove(0);
    let active = rt
        .block_on(vault.users_by_status(UserStatus::Active))
        .unwrap()
        .remove(0);
    let audit_len = || rt.block_on(vault.audit_events(0, 1_000_000)).unwrap().len();
    let pre = rekey(&dir, &["--db", &db, "preflight"]);
    assert!(
        String::from_utf8_lossy(&pre.stdout).contains("rekey user purge"),
        "preflight names the command"
    );

    // Refusals: nobody of that name (2), an active user (3), a purge that
    // would leave records unreadable (3, unless --force). Nothing changes.
    let before = audit_len();
    let unknown = rekey(&dir, &["--db", &db, "user", "restore", "nobody.9999"]);
    assert_eq!(code(&unknown), Some(2), "{}", stderr(&unknown));
    let purge_active = rekey(&dir, &["--db", &db, "user", "purge", &active.name]);
    assert_eq!(code(&purge_active), Some(3), "{}", stderr(&purge_active));
    assert!(stderr(&purge_active).contains("hint:"));
    let orphans = rt
        .block_on(vault.sole_reader_records(deactivated.id))
        .unwrap();
    let mut args = vec![
        "--db",
        &db,
        "--format",
        "json",
        "user",
        "purge",
        &deactivated.name,
    ];
    if !orphans.is_empty() {
        let refused = rekey(&dir, &args);
        assert_eq!(code(&refused), Some(3), "{}", stderr(&refused));
        // With --format json the refusal is JSON on stdout.
        let said: serde_json::Value = serde_json::from_slice(&refused.stdout).unwrap();
        assert_eq!(said["exit_code"], 3, "{said}");
        assert!(
            said["error"].as_str().unwrap().contains("--force"),
            "{said}"
        );
        args.push("--force");
    }
    assert_eq!(audit_len(), before, "a refusal wrote to the audit log");
    assert!(
        !rt.block_on(vault.grants_to(deactivated.id))
            .unwrap()
            .is_empty()
    );

    // The purge: grants, key pairs and memberships go; the row stays as
    // purged; the audit log names the orphaned records.
    let purge = rekey(&dir, &args);
    assert_eq!(code(&purge), Some(0), "{}", stderr(&purge));
    let report: serde_json::Value = serde_json::from_slice(&purge.stdout).unwrap();
    assert_eq!(
        report["orphaned_records"].as_array().unwrap().len(),
        orphans.len()
    );
    assert!(report["grants"].as_u64().unwrap() > 0, "{report}");
    assert!(
        rt.block_on(vault.grants_to(deactivated.id))
            .unwrap()
            .is_empty()
    );
    assert!(
        rt.block_on(vault.key_pairs(deactivated.id))
            .unwrap()
            .is_empty()
    );
    assert!(
        rt.block_on(vault.roles_of(deactivated.id))
            .unwrap()
            .is_empty()
    );
    let row = rt
        .block_on(vault.principal(deactivated.id))
        .unwrap()
        .unwrap();
    assert_eq!(row.status, UserStatus::Purged);
    let events = rt.block_on(vault.audit_events(0, 1_000_000)).unwrap();
    let (_, last) = events.last().unwrap();
    assert_eq!(last.action, "user_purged");
    for r in &orphans {
        assert!(last.details.contains(&r.to_string()), "{}", last.details);
    }
    // A purged user is not restored, nor purged twice.
    let again = rekey(&dir, &["--db", &db, "user", "restore", &deactivated.name]);
    assert_eq!(code(&again), Some(3), "{}", stderr(&again));

    // Restore: the vault's administrator deactivated a user; rekey makes
    // it active again.
    rt.block_on(vault.set_user_status(
        active.id,
        UserStatus::Deactivated,
        &AuditEvent {
            at: Timestamp::now(),
            actor: "vault".to_owned(),
            action: "deactivated".to_owned(),
            details: "{}".to_owned(),
        },
    ))
    .unwrap();
    let restore = rekey(&dir, &["--db", &db, "user", "restore", &active.name]);
    assert_eq!(code(&restore), Some(0), "{}", stderr(&restore));
    let row = rt.block_on(vault.principal(active.id)).unwrap().unwrap();
    assert_eq!(row.status, UserStatus::Active);

    // Once a migration has started, both are refused and change nothing.
    let dir2 = temp();
    let db2 = format!("sqlite://{}?mode=rwc", dir2.join("v.db").display());
    seeded(&dir2, &db2, "c.json");
    let start = rekey(&dir2, &["--db", &db2, "start", "--code-word", "Start"]);
    assert_eq!(code(&start), Some(0), "{}", stderr(&start));
    let v2 = rt.block_on(rekey_storage::Vault::open(&db2)).unwrap();
    let someone = rt
        .block_on(v2.users_by_status(UserStatus::Active))
        .unwrap()
        .remove(0);
    let events = rt.block_on(v2.audit_events(0, 1_000_000)).unwrap().len();
    for cmd in ["purge", "restore"] {
        let r = rekey(&dir2, &["--db", &db2, "user", cmd, &someone.name]);
        assert_eq!(code(&r), Some(3), "{}", stderr(&r));
        assert!(stderr(&r).contains("has started"), "{}", stderr(&r));
    }
    assert_eq!(
        rt.block_on(v2.audit_events(0, 1_000_000)).unwrap().len(),
        events
    );
}

/// `rekey start --target-scheme hpke-mlkem768-x25519`: preflight estimates
/// the larger grants, the run records its target (start, status), a
/// resume with another target is refused and changes nothing, and the
/// users' logins write hybrid keys and X-Wing grants only; the finalized
/// vault verifies.
#[test]
fn a_vault_migrates_to_the_post_quantum_target_chosen_at_start() {
    let dir = temp();
    let db = format!("sqlite://{}?mode=rwc", dir.join("v.db").display());
    seeded(&dir, &db, "c.json");
    let hybrid = "hpke-mlkem768-x25519";
    let pre = rekey(&dir, &["--db", &db, "preflight", "--target-scheme", hybrid]);
    assert!(
        String::from_utf8_lossy(&pre.stdout).contains(&format!("new grants ({hybrid}) add about")),
        "{}",
        String::from_utf8_lossy(&pre.stdout)
    );
    let bad = rekey(
        &dir,
        &[
            "--db",
            &db,
            "start",
            "--code-word",
            "Start",
            "--target-scheme",
            "hpke-x448",
        ],
    );
    assert_eq!(code(&bad), Some(2), "{}", stderr(&bad));
    let start = rekey(
        &dir,
        &[
            "--db",
            &db,
            "--format",
            "json",
            "start",
            "--code-word",
            "Start",
            "--target-scheme",
            hybrid,
        ],
    );
    assert_eq!(code(&start), Some(0), "{}", stderr(&start));
    let s: serde_json::Value = serde_json::from_slice(&start.stdout).unwrap();
    assert_eq!(s["target"], hybrid, "{s}");
    let status = || {
        let st = rekey(&dir, &["--db", &db, "--format", "json", "status"]);
        serde_json::from_slice::<serde_json::Value>(&st.stdout).unwrap()
    };
    let before = status();
    assert_eq!(before["target"], hybrid, "{before}");
    // Another target while the run is on: refused with the abort hint,
    // nothing changed.
    let other = rekey(
        &dir,
        &["--db", &db, "start", "--target-scheme", "hpke-p256"],
    );
    assert_eq!(code(&other), Some(3), "{}", stderr(&other));
    assert!(stderr(&other).contains("rekey abort"), "{}", stderr(&other));
    let after = status();
    assert_eq!(
        (&after["phase"], &after["progress"], &after["target"]),
        (&before["phase"], &before["progress"], &before["target"])
    );

    let all = rekey(
        &dir,
        &["--db", &db, "demo", "login-all", "--credentials", "c.json"],
    );
    assert_eq!(code(&all), Some(0), "{}", stderr(&all));
    let fin = rekey(&dir, &["--db", &db, "finalize"]);
    assert_eq!(code(&fin), Some(0), "{}", stderr(&fin));
    let v = rekey(&dir, &["--db", &db, "verify", "--credentials", "c.json"]);
    assert_eq!(code(&v), Some(0), "{}", stderr(&v));
    // Every key pair and grant left is of the hybrid target.
    let (keys, grants) = rekey_test_support::db::block_on(async {
        use sea_orm::{ConnectionTrait, Statement};
        let conn = sea_orm::Database::connect(&db).await.unwrap();
        let rows = |sql: &str| {
            let conn = &conn;
            let sql = sql.to_owned();
            async move {
                conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (
                            r.try_get_by_index::<String>(0).unwrap(),
                            r.try_get_by_index::<i64>(1).unwrap(),
                        )
                    })
                    .collect::<Vec<_>>()
            }
        };
        let keys = rows(
            "SELECT scheme, length(public_key) FROM key_pair GROUP BY scheme, length(public_key)",
        )
        .await;
        let grants = rows("SELECT scheme, count(*) FROM \"grant\" GROUP BY scheme").await;
        conn.close().await.unwrap();
        (keys, grants)
    });
    let scheme = "hpke-mlkem768-x25519-sha256-aes256gcm-export".to_owned();
    assert_eq!(keys, vec![(scheme.clone(), 1281)]);
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].0, scheme);
}
