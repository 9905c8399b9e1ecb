//! Several vaults named in a fleet file (`rekey.toml`): `--vault NAME…`
//! and `--all` on start, status, finalize, preflight; bad fleet files
//! refused with nothing started anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a scenario test reads top to bottom; its steps are commented in place"
)]

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use support::{Rekey, temp};

/// `rekey` in `dir` with the fleet file `rekey.toml` there (no --db).
fn fleet(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rekey"))
        .current_dir(dir)
        .args(args)
        .env_remove("REKEY_DATABASE_URL")
        .env_remove("REKEY_KEY_DIR")
        .env_remove("REKEY_FLEET")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn entry(name: &str, dir: &Path) -> String {
    format!(
        "[[vault]]\nname = \"{name}\"\ndb = \"sqlite://{}?mode=rwc\"\nkey_dir = \"{}\"\n\n",
        dir.join("vault.db").display(),
        dir.join("keys").display()
    )
}

/// One vault's phase, read through the fleet.
fn phase(dir: &Path, vault: &str) -> String {
    let out = fleet(dir, &["--vault", vault, "status", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    json(&out)["vaults"][0]["status"]["phase"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn outcome<'a>(report: &'a Value, vault: &str) -> &'a Value {
    report["vaults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["vault"] == vault)
        .unwrap_or_else(|| panic!("no {vault} in {report}"))
}

#[test]
fn a_fleet_starts_all_or_nothing_and_reports_each_vault() {
    let dir = temp("fleet");
    let (a, b) = (dir.join("a"), dir.join("b"));
    for (d, seed) in [(&a, 1), (&b, 2)] {
        std::fs::create_dir_all(d).unwrap();
        let url = format!("sqlite://{}?mode=rwc", d.join("vault.db").display());
        Rekey::new(d, &url).seed(seed);
    }
    std::fs::write(dir.join("rekey.toml"), entry("a", &a) + &entry("b", &b)).unwrap();

    // Status across vaults: one row each and the totals.
    let out = fleet(&dir, &["--all", "status", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let st = json(&out);
    let users = |v: &Value| {
        v["progress"]["users"]["migrated"].as_u64().unwrap()
            + v["progress"]["users"]["remaining"].as_u64().unwrap()
    };
    let (ua, ub) = (
        users(&outcome(&st, "a")["status"]),
        users(&outcome(&st, "b")["status"]),
    );
    assert!(ua > 0 && ub > 0);
    assert_eq!(users(&st["total"]), ua + ub, "{st}");
    assert_eq!(st["total"]["vaults"], 2);

    // A wrong code word is refused before preflight runs anywhere.
    let out = fleet(&dir, &["--all", "start", "--code-word", "start"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("Start"), "{}", text(&out));

    // b cannot start (its certificate keys are gone from its key
    // directory): nothing starts anywhere, and each vault says why.
    std::fs::rename(b.join("keys"), b.join("keys.away")).unwrap();
    let out = fleet(
        &dir,
        &["--all", "start", "--code-word", "Start", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let r = json(&out);
    assert_eq!(r["started_any"], false, "{r}");
    assert_eq!(outcome(&r, "a")["outcome"], "held_back", "{r}");
    assert_eq!(outcome(&r, "a")["by"], serde_json::json!(["b"]), "{r}");
    assert_eq!(outcome(&r, "b")["outcome"], "blocked", "{r}");
    assert!(
        outcome(&r, "b")["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "certificates"),
        "{r}"
    );
    assert_eq!(phase(&dir, "a"), "legacy");
    assert_eq!(phase(&dir, "b"), "legacy");
    // The text says the same, per vault.
    let out = fleet(&dir, &["--all", "start", "--code-word", "Start"]);
    let t = text(&out);
    assert!(
        t.contains("a: ready, not started: b must pass first"),
        "{t}"
    );
    assert!(
        t.contains("b: blocked by preflight: ") && t.contains("certificates"),
        "{t}"
    );
    assert!(t.contains("nothing was started"), "{t}");

    // An unreachable vault in the selection: one error naming it, nothing
    // started anywhere.
    std::fs::rename(b.join("keys.away"), b.join("keys")).unwrap();
    let with_c = entry("a", &a)
        + &entry("b", &b)
        + "[[vault]]\nname = \"c\"\ndb = \"postgres://rekey@127.0.0.1:1/nowhere\"\nkey_dir = \"c-keys\"\n";
    std::fs::write(dir.join("unreachable.toml"), with_c).unwrap();
    let out = fleet(
        &dir,
        &[
            "--fleet",
            "unreachable.toml",
            "--all",
            "start",
            "--code-word",
            "Start",
        ],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(text(&out).contains("vault c:"), "{}", text(&out));
    assert!(text(&out).contains("fleet file"), "{}", text(&out));
    assert_eq!(phase(&dir, "a"), "legacy");
    assert_eq!(phase(&dir, "b"), "legacy");

    // Both ready: both start, and the code word was asked once (given).
    let out = fleet(
        &dir,
        &["--all", "start", "--code-word", "Start", "--format", "json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let r = json(&out);
    assert_eq!(r["started_any"], true, "{r}");
    for v in ["a", "b"] {
        assert_eq!(outcome(&r, v)["outcome"], "started", "{r}");
        assert_eq!(outcome(&r, v)["report"]["target"], "hpke-p256", "{r}");
        assert_eq!(phase(&dir, v), "user_phase");
    }
    // The same command again changes nothing and says so (no code word
    // needed, none asked: stdin is closed).
    let out = fleet(&dir, &["--all", "start", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let r = json(&out);
    assert_eq!(outcome(&r, "a")["outcome"], "already_started", "{r}");
    assert_eq!(outcome(&r, "a")["phase"], "user_phase", "{r}");

    // One `rekey serve --all` serves both vaults; a's users log in through
    // a's paths (`/v1/vaults/a/…`), b's stay pending.
    let port = support::free_port();
    let server = Command::new(env!("CARGO_BIN_EXE_rekey"))
        .current_dir(&dir)
        .args(["--all", "serve", "--bind", &format!("127.0.0.1:{port}")])
        .env_remove("REKEY_DATABASE_URL")
        .env_remove("REKEY_FLEET")
        .env("REKEY_ADMIN_TOKEN", "fleet-test-admin-token-0123456789")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = support::Guard(server);
    support::wait_for_port(port);
    let out = fleet(
        &dir,
        &[
            "--vault",
            "a",
            "demo",
            "login-all",
            "--credentials",
            a.join("c.json").to_str().unwrap(),
            "--server",
            &format!("http://127.0.0.1:{port}/v1/vaults/a"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    drop(server);

    // Finalize on both: a finalizes, b refuses (its users are pending),
    // each reported; the exit code is b's refusal.
    let out = fleet(&dir, &["--all", "status"]);
    let t = text(&out);
    let row = |v: &str| {
        t.lines()
            .find(|l| l.starts_with(&format!("{v} ")))
            .unwrap_or_else(|| panic!("no row {v}: {t}"))
            .to_owned()
    };
    assert!(row("a").contains("user_phase"), "{t}");
    assert!(row("a").contains(&format!("{ua}/{ua}")), "{t}");
    // b's managed users migrated with its server keys; its e2ee users wait.
    assert!(row("b").contains(&format!("/{ub} ")), "{t}");
    assert!(!row("b").contains(&format!("{ub}/{ub}")), "{t}");
    assert!(row("total").contains(&format!("/{} ", ua + ub)), "{t}");
    assert!(t.contains("b: next: wait for the"), "{t}");

    let out = fleet(&dir, &["--all", "finalize", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let r = json(&out);
    assert!(
        outcome(&r, "a")["report"]["deleted_legacy_rows"]
            .as_u64()
            .unwrap()
            > 0,
        "{r}"
    );
    assert!(
        outcome(&r, "b")["error"]
            .as_str()
            .unwrap()
            .contains("pending"),
        "{r}"
    );
    assert_eq!(phase(&dir, "a"), "completed");
    assert_eq!(phase(&dir, "b"), "user_phase");
    let out = fleet(&dir, &["--all", "status", "--format", "json"]);
    assert_eq!(json(&out)["total"]["completed"], 1);

    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_fleet_files_and_selections_are_refused_naming_the_entry() {
    let dir = temp("fleet-bad");
    let (a, b) = (dir.join("a"), dir.join("b"));
    let write = |text: &str| std::fs::write(dir.join("rekey.toml"), text).unwrap();
    let refused = |args: &[&str], code: i32, needle: &str| {
        let out = fleet(&dir, args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(needle), "{args:?}: {}", text(&out));
    };

    // No fleet file.
    refused(&["--all", "status"], 2, "does not exist");
    // A duplicate name.
    write(&(entry("a", &a) + &entry("a", &b)));
    refused(&["--all", "init"], 2, "vault a is named twice");
    // Two names for one database.
    write(&(entry("a", &a) + &entry("b", &a)));
    refused(
        &["--all", "init"],
        2,
        "vaults a and b name the same database",
    );
    // A typo in a field.
    write(&entry("a", &a).replace("key_dir", "keydir"));
    refused(&["--all", "init"], 2, "unknown field");
    // Nothing was made by any of these.
    assert!(!a.join("vault.db").exists() && !b.join("vault.db").exists());

    write(&(entry("a", &a) + &entry("b", &b)));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    // An unknown name.
    refused(&["--vault", "z", "status"], 2, "no vault named \"z\"");
    // --db does not mix with --vault.
    refused(
        &["--vault", "a", "--db", "sqlite://x.db", "status"],
        2,
        "do not mix",
    );
    // A one-vault command needs exactly one vault.
    refused(
        &["--all", "user", "restore", "ada"],
        2,
        "this command works on one vault",
    );
    // A newer schema than this build knows: named, nothing done.
    let out = fleet(&dir, &["--all", "init"]);
    assert!(out.status.success(), "{}", text(&out));
    let conn = format!("sqlite://{}?mode=rw", b.join("vault.db").display());
    support::block_on(async {
        use sea_orm::{ConnectionTrait, Database};
        let db = Database::connect(&conn).await.unwrap();
        db.execute_unprepared(
            "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m20991231_000001_from_the_future', 0)",
        )
        .await
        .unwrap();
    });
    refused(&["--all", "start", "--code-word", "Start"], 5, "vault b:");
    refused(
        &["--all", "start", "--code-word", "Start"],
        5,
        "newer schema",
    );
    assert_eq!(phase(&dir, "a"), "legacy");
    std::fs::remove_dir_all(&dir).ok();
}
