//! The same question gets the same answer from the command line and from
//! the HTTP server: two vaults seeded alike, one driven by `rekey … --format
//! json`, the other by a `rekey serve` through its admin API; status, start
//! and finalize answer the same JSON, field for field (only the run id and
//! the clock readings differ).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rekey_client::HttpClient;
use rekey_test_support::db::block_on;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "same-answers-admin-token";

struct Vault {
    dir: PathBuf,
    db: String,
}

impl Vault {
    /// A demo vault from the fixture key cache, backed up, in a directory
    /// of its own.
    fn seeded(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(rekey_test_support::unique(tag));
        std::fs::create_dir_all(&dir).unwrap();
        let db = format!("sqlite://{}?mode=rwc", dir.join("v.db").display());
        let v = Self { dir, db };
        std::fs::copy(
            rekey_test_support::fixtures::demo_key_cache(),
            v.dir.join("cache.bin"),
        )
        .unwrap();
        v.ok(&[
            "demo",
            "--users",
            "10",
            "--roles",
            "3",
            "--records",
            "40",
            "--seed",
            "5",
            "--key-cache",
            "cache.bin",
            "seed",
            "--credentials",
            "c.json",
        ]);
        std::fs::write(v.dir.join("pass"), "pw").unwrap();
        v.ok(&[
            "cert",
            "backup",
            "--out",
            "b.age",
            "--passphrase-file",
            "pass",
        ]);
        v
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rekey"));
        c.current_dir(&self.dir)
            .args(["--db", &self.db, "--key-dir", "keys"])
            .args(args)
            .env_remove("REKEY_DATABASE_URL")
            .env_remove("REKEY_KEY_DIR");
        c
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "rekey {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `rekey --format json ARGS`, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        serde_json::from_slice(&self.ok(&all).stdout).unwrap()
    }

    fn serve(&self, port: u16) -> Served {
        let child = self
            .command(&["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("REKEY_ADMIN_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "rekey serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Served(child)
    }
}

struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `v` without the fields that name a run or read a clock.
fn timeless(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        for k in [
            "run",
            "started_at",
            "rate_principals_per_minute",
            "eta_minutes",
        ] {
            o.remove(k);
        }
        // The chart's start is the run's; its counts stay compared.
        if let Some(h) = o.get_mut("history").and_then(Value::as_object_mut) {
            h.remove("since");
        }
    }
    v
}

/// The same keys at every level (values aside).
fn keys(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out.sort();
    out
}

fn walk(v: &Value, at: &str, out: &mut Vec<String>) {
    if let Some(o) = v.as_object() {
        for (k, x) in o {
            let path = format!("{at}.{k}");
            out.push(path.clone());
            walk(x, &path, out);
        }
    }
}

fn to_json<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap()
}

#[test]
fn the_command_line_and_the_server_answer_the_same_json() {
    let cli = Vault::seeded("same-cli");
    let srv = Vault::seeded("same-srv");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let server = srv.serve(port);
    let admin = HttpClient::new(&base).unwrap().with_admin_token(TOKEN);

    // Status before the start.
    let a = cli.json(&["status"]);
    let b = to_json(&block_on(admin.admin_status(false)).unwrap());
    assert_eq!(a, b, "status (legacy)");
    assert_eq!(a["phase"], "legacy");

    // Start.
    let a = cli.json(&["start", "--code-word", "Start"]);
    let b = to_json(&block_on(admin.start("Start")).unwrap());
    assert_eq!(keys(&a), keys(&b), "start: the same fields");
    assert_eq!(timeless(a.clone()), timeless(b), "start");
    assert_eq!(a["phase"], "user_phase");
    assert_eq!(a["server_phase"]["migrated"].as_array().unwrap().len(), 3);

    // Status in the user phase, with every name.
    let a = cli.json(&["status", "--all-pending"]);
    let b = to_json(&block_on(admin.admin_status(true)).unwrap());
    assert_eq!(keys(&a), keys(&b), "status: the same fields");
    assert_eq!(timeless(a.clone()), timeless(b), "status (user phase)");
    assert!(!a["pending"].as_array().unwrap().is_empty());

    // Every user logs in, one at a time in the same order (one vault
    // in-process, the other through the server), then finalize.
    cli.ok(&[
        "demo",
        "--concurrency",
        "1",
        "login-all",
        "--credentials",
        "c.json",
    ]);
    srv.ok(&[
        "demo",
        "--concurrency",
        "1",
        "login-all",
        "--server",
        &base,
        "--credentials",
        "c.json",
    ]);
    let a = cli.json(&["finalize"]);
    let b = to_json(&block_on(admin.finalize()).unwrap());
    assert_eq!(a, b, "finalize");
    assert!(a["deleted_legacy_rows"].as_u64().unwrap() > 0);

    // And the status once completed: the grants the migration wrote.
    let a = cli.json(&["status"]);
    let b = to_json(&block_on(admin.admin_status(false)).unwrap());
    assert_eq!(timeless(a.clone()), timeless(b), "status (completed)");
    assert!(
        a["progress"]["grants"]["migrated"].as_u64().unwrap() > 0,
        "{a}"
    );
    drop(server);
    for v in [cli, srv] {
        let _ = std::fs::remove_dir_all(Path::new(&v.dir));
    }
}
