//! The manual's rule for several servers: one server runs the migration,
//! the others are stopped, and at the end the certificates are imported
//! on the others from a backup. Preflight warns about a server that lacks
//! a certificate key; finalize refuses until every server holds the new
//! ones; `rekey cert import --server-name` on the second server's key
//! directory, from the backup made after the start, lets it finish.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rekey_core::model::{Server, Timestamp};
use support::{Backend, PASSPHRASE, Rekey, VaultDb, block_on, temp};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn certificates_imported_on_a_second_server_from_the_backup_let_finalize_pass() {
    let dir = temp("second-server");
    let tdb = VaultDb::new(Backend::Sqlite, &dir);
    let rk = Rekey::new(&dir, &tdb.url);
    rk.seed(7);
    std::fs::write(dir.join("pass"), PASSPHRASE).unwrap();
    // A second server, `standby`, stopped ten minutes ago with an empty
    // key directory.
    block_on(async {
        let vault = rk.vault().await;
        vault
            .heartbeat(&Server {
                name: "standby".into(),
                heartbeat_at: Timestamp(Timestamp::now().0 - 10 * 60_000),
                certificate_fingerprints: Vec::new(),
            })
            .await
            .unwrap();
        vault.close().await.unwrap();
    });

    // Preflight names it and what it lacks (a warning: it is stopped).
    let out = rk.run(&["preflight", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == "server-certificates")
        .unwrap_or_else(|| panic!("no server-certificates check: {report}"));
    assert_eq!(check["outcome"], "warn", "{check}");
    let evidence = check["evidence"].to_string();
    assert!(evidence.contains("standby lacks 3 of 3"), "{evidence}");

    // The migration runs on this server; the new certificates are backed
    // up after the start.
    rk.ok(&["start", "--code-word", "Start"]);
    rk.ok(&["demo", "login-all", "--credentials", "c.json"]);
    rk.ok(&[
        "cert",
        "backup",
        "--out",
        "after.age",
        "--passphrase-file",
        "pass",
    ]);

    // Finalize refuses: standby lacks the new certificate keys.
    let out = rk.run(&["finalize"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("standby"), "{}", text(&out));

    // On standby: the same backup into its own key directory.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rekey"))
        .current_dir(&dir)
        .env_remove("REKEY_DATABASE_URL")
        .env_remove("REKEY_KEY_DIR")
        .env_remove("REKEY_SERVER_NAME")
        .args([
            "--db",
            &tdb.url,
            "--key-dir",
            "standby-keys",
            "cert",
            "import",
            "after.age",
            "--server-name",
            "standby",
            "--passphrase-file",
            "pass",
            "--format",
            "json",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["server"], "standby", "{r}");
    assert_eq!(r["server_recorded"], true, "{r}");
    assert!(!r["written"].as_array().unwrap().is_empty(), "{r}");
    // Its key directory now holds what this server's holds.
    let mut here = rk.key_dir().fingerprints();
    let mut there = rekey_keys::KeyDir::open(dir.join("standby-keys"))
        .unwrap()
        .fingerprints();
    here.sort();
    there.sort();
    assert_eq!(here, there);

    // Finalize passes, every user still reads what it should.
    rk.ok(&["finalize"]);
    rk.ok(&["verify", "--credentials", "c.json"]);
    std::fs::remove_dir_all(&dir).ok();
}
