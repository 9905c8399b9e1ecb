//! The `rekey-server` binary itself: starts on a vault, registers,
//! answers, logs without the token, stops gracefully on SIGTERM; refuses
//! an unusable configuration with a hint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rekey_client::HttpClient;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "binary-test-admin-token-42";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_and_stops_on_sigterm_without_logging_the_token() {
    let dir = std::env::temp_dir().join(format!("rekey-server-bin-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("vault.db").display());
    rekey_storage::Vault::init(&url).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_rekey-server"))
        .args(["--db", &url, "--name", "smoke"])
        .env("RUST_LOG", "debug")
        .arg("--key-dir")
        .arg(dir.join("keys"))
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .env("REKEY_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = HttpClient::new(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .with_admin_token(TOKEN);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        match client.status().await {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the server did not come up: {e}"),
        }
    };
    assert_eq!(status.phase, rekey_core::model::Phase::Legacy);
    let report = client.preflight().await.unwrap();
    assert_eq!(report["format"], "rekey-preflight/1");
    let servers = rekey_storage::Vault::open(&url)
        .await
        .unwrap()
        .servers()
        .await
        .unwrap();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].name, "smoke");

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{:?}\n{log}", out.status);
    assert!(log.contains("serving"), "{log}");
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(log.contains("/v1/admin/preflight"), "{log}");
    assert!(
        !log.contains(TOKEN),
        "the token leaked into the log:\n{log}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn refuses_a_short_token_with_a_hint() {
    let out = Command::new(env!("CARGO_BIN_EXE_rekey-server"))
        .args(["--db", "sqlite:///nonexistent/vault.db"])
        .env("REKEY_ADMIN_TOKEN", "short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 16"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn an_unreachable_vault_is_one_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_rekey-server"))
        .args(["--db", "sqlite:///nonexistent-dir/for/sure/vault.db"])
        .env("REKEY_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("could not open the vault"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}
