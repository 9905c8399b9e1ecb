//! The `rekey` binary itself: the demo end to end, and bad input giving
//! one clear message, a distinct exit code, and no change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
    assert_eq!(v["verified"], true);
    assert!(v["grants_rewrapped"].as_u64().unwrap() > 0);
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

#[test]
fn bad_input_is_refused_with_distinct_codes_and_changes_nothing() {
    let dir = temp();
    let db = format!("sqlite://{}?mode=rwc", dir.join("v.db").display());
    let creds = dir.join("c.json");
    let seed = rekey(
        &dir,
        &[
            "--db",
            &db,
            "demo",
            "--users",
            "6",
            "--roles",
            "1",
            "seed",
            "--credentials",
            creds.to_str().unwrap(),
        ],
    );
    assert!(
        seed.status.success(),
        "{}",
        String::from_utf8_lossy(&seed.stderr)
    );
    let _ = rekey(&dir, &["--db", &db, "cert-backup", "--out", "b.age"]);

    // Wrong code word: exit 3, still legacy.
    let s = rekey(&dir, &["--db", &db, "start", "--code-word", "start"]);
    assert_eq!(s.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&s.stderr).contains("Start"));
    let st = rekey(&dir, &["--db", &db, "--format", "json", "status"]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["phase"], "legacy");

    // A database that does not answer: exit 5, names the URL without the password.
    let bad = rekey(
        &dir,
        &["--db", "postgres://u:secretpw@127.0.0.1:1/x", "status"],
    );
    assert_eq!(bad.status.code(), Some(5));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("127.0.0.1:1") && !err.contains("secretpw"),
        "{err}"
    );

    // Unknown user: exit 6 (needs a started migration to get that far).
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(&creds).unwrap()).unwrap();
    let _ = c;
    let s = rekey(
        &dir,
        &[
            "--db",
            &db,
            "--key-dir",
            "rekey-keys",
            "start",
            "--code-word",
            "Start",
        ],
    );
    if s.status.success() {
        let u = rekey(
            &dir,
            &["--db", &db, "login", "--user", "nobody", "--password", "x"],
        );
        assert_eq!(u.status.code(), Some(6));
        // login-all with one wrong password: exit 6 (not 3), names the user.
        let mut bad: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&creds).unwrap()).unwrap();
        let users = bad["users"].as_object_mut().unwrap();
        let victim = users.keys().next().unwrap().clone();
        users.get_mut(&victim).unwrap()["password"] = "not the password".into();
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
        assert_eq!(all.status.code(), Some(6));
        assert!(String::from_utf8_lossy(&all.stderr).contains(&victim));
        // Finalize with users pending: exit 3, names them.
        let f = rekey(&dir, &["--db", &db, "finalize"]);
        assert_eq!(f.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&f.stderr).contains("pending"));
        // Start twice: exit 3.
        let again = rekey(&dir, &["--db", &db, "start", "--code-word", "Start"]);
        assert_eq!(again.status.code(), Some(3));
    }
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
    let seed = rekey(
        &dir,
        &[
            "--db",
            &db,
            "demo",
            "--users",
            "8",
            "--roles",
            "2",
            "--key-cache",
            "cache.bin",
            "seed",
            "--credentials",
            "c.json",
        ],
    );
    assert!(
        seed.status.success(),
        "{}",
        String::from_utf8_lossy(&seed.stderr)
    );
    std::fs::write(dir.join("pass"), "pw for the test").unwrap();
    assert!(
        rekey(
            &dir,
            &[
                "--db",
                &db,
                "cert",
                "backup",
                "--out",
                "b.age",
                "--passphrase-file",
                "pass"
            ]
        )
        .status
        .success()
    );
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
