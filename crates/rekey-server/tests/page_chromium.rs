//! The status page in headless Chromium (Debian's `chromium`): it loads
//! with no console errors, shows the phase and the right counts, shows
//! the new counts after a login, and refreshes itself. A screenshot is kept
//! in `target/rekey-server-artifacts/status-page.png`. The list of vaults of
//! a server of several, and a vault's page reached by its link, render too
//! (`vaults-page.png`). Ignored unless asked
//! for (`cargo xtask ci` installs Chromium and runs it); asked for without
//! a Chromium, it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rekey_core::bundle::BuildOptions;
use rekey_demo::password::master_secret;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{Harness, ServedVaults};

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        })
}

/// Loads `url` headless; answers the DOM after load and the console log
/// lines. `screenshot` also writes a PNG.
fn load(browser: &Path, url: &str, screenshot: Option<&Path>) -> (String, String) {
    let profile = std::env::temp_dir().join(format!("rekey-chromium-{}", uuid::Uuid::new_v4()));
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1100,900",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    match screenshot {
        Some(p) => cmd.arg(format!("--screenshot={}", p.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd.arg(url).output().expect("run chromium");
    std::fs::remove_dir_all(&profile).ok();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn console_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("CONSOLE") && (l.contains("ERROR") || l.contains("Uncaught")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium (cargo xtask ci installs and runs it)"]
async fn status_page_in_headless_chromium() {
    let browser = chromium().expect("no chromium on PATH (apt-get install chromium)");
    let h = Harness::new("chromium").await;
    h.admin.start("Start").await.unwrap();
    let url = format!("{}/", h.anon.base_url());
    let users = h.anon.status().await.unwrap().progress.users;
    let (migrated, total) = (users.migrated, users.migrated + users.remaining);

    let b = browser.clone();
    let u = url.clone();
    let (dom, log) = tokio::task::spawn_blocking(move || load(&b, &u, None))
        .await
        .unwrap();
    assert!(console_errors(&log).is_empty(), "{log}");
    assert!(dom.contains(r#"id="phase">user_phase<"#), "{dom}");
    assert!(
        dom.contains(&format!(
            r#"<b class="migrated">{migrated}</b> / <span class="total">{total}</span>"#
        )),
        "{dom}"
    );
    assert!(dom.contains(r#"http-equiv="refresh""#));
    let bundles_before: u64 = dom
        .split(r#"id="history-total">"#)
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no chart total: {dom}"));

    // One login; the page shows it.
    let (name, u) = h.creds.users.iter().next().unwrap();
    let master = master_secret(&u.password, h.creds.vault, u.id, &h.creds.kdf).unwrap();
    rekey_client::migrate(
        &h.users[name],
        u.id,
        master,
        BuildOptions::default(),
        std::sync::Arc::new(|_, _| {}),
    )
    .await
    .unwrap();
    let b = browser.clone();
    let uu = url.clone();
    let (dom, log) = tokio::task::spawn_blocking(move || load(&b, &uu, None))
        .await
        .unwrap();
    assert!(console_errors(&log).is_empty(), "{log}");
    assert!(
        dom.contains(&format!(
            r#"<b class="migrated">{}</b> / <span class="total">{total}</span>"#,
            migrated + 1
        )),
        "{dom}"
    );
    // The public page names nobody: not the user who migrated, not those
    // still pending. It says what comes next.
    for n in h.creds.users.keys() {
        assert!(
            !dom.contains(n.as_str()),
            "{n} named on the public page: {dom}"
        );
    }
    assert!(
        dom.contains(r#"id="pending">names are shown to the administrator only"#),
        "{dom}"
    );
    assert!(dom.contains(r#"<p id="next-step">wait for the"#), "{dom}");
    let _ = name;
    // The chart counts that login beside the server phase's bundles.
    assert!(dom.contains(r#"id="history""#), "{dom}");
    assert!(
        dom.contains(&format!(
            r#"id="history-total">{} since the start<"#,
            bundles_before + 1
        )),
        "{dom}"
    );
    assert!(dom.contains(r#"<rect data-count=""#), "{dom}");
    assert!(dom.contains(r#"id="pending-since""#), "{dom}");

    let artifacts =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/rekey-server-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("status-page.png");
    std::fs::remove_file(&shot).ok();
    let s = shot.clone();
    tokio::task::spawn_blocking(move || load(&browser, &url, Some(&s)))
        .await
        .unwrap();
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium (cargo xtask ci installs and runs it)"]
async fn list_of_vaults_in_headless_chromium() {
    let browser = chromium().expect("no chromium on PATH (apt-get install chromium)");
    let served = ServedVaults::new(&[("berlin", 11), ("paris", 12)]).await;
    let admin = rekey_client::HttpClient::for_vault(&served.base, "berlin")
        .unwrap()
        .with_admin_token(support::TOKEN);
    admin.start("Start").await.unwrap();

    let index = format!("{}/", served.base);
    let b = browser.clone();
    let u = index.clone();
    let (dom, log) = tokio::task::spawn_blocking(move || load(&b, &u, None))
        .await
        .unwrap();
    assert!(console_errors(&log).is_empty(), "{log}");
    for (vault, phase) in [("berlin", "user_phase"), ("paris", "legacy")] {
        let row = dom
            .split(&format!(r#"<tr id="vault-{vault}">"#))
            .nth(1)
            .and_then(|r| r.split("</tr>").next())
            .unwrap_or_else(|| panic!("no row for {vault}: {dom}"));
        assert!(
            row.contains(&format!(r#"<span class="phase">{phase}</span>"#)),
            "{row}"
        );
        // The page's link is relative to the list (so a proxy may serve
        // both under a path prefix); follow it from there.
        let href = row
            .split(r#"href=""#)
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap();
        assert_eq!(href, format!("vaults/{vault}"));
        let b = browser.clone();
        let u = format!("{index}{href}");
        let (page, log) = tokio::task::spawn_blocking(move || load(&b, &u, None))
            .await
            .unwrap();
        assert!(console_errors(&log).is_empty(), "{log}");
        assert!(page.contains(&format!(r#"id="vault">{vault}<"#)), "{page}");
        assert!(page.contains(&format!(r#"id="phase">{phase}<"#)), "{page}");
        assert!(page.contains(r#"id="all-vaults" href="../""#), "{page}");
    }

    let artifacts =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/rekey-server-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("vaults-page.png");
    std::fs::remove_file(&shot).ok();
    let s = shot.clone();
    tokio::task::spawn_blocking(move || load(&browser, &index, Some(&s)))
        .await
        .unwrap();
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    served.stop().await;
}
