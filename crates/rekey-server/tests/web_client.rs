//! The browser client (`clients/web`) against a real server: headless
//! Chromium, driven by `clients/web/test/e2e.mjs` through playwright-core,
//! logs every e2ee demo user in through the demo page and migrates it; the
//! engine then shows every user migrated, the migration finalizes, and every
//! record is read back through the grants the browser wrote; once to the
//! default target, once to the post-quantum hybrid one, and once on a vault
//! that migrated to P-256 before and now migrates again to the hybrid one
//! (its legacy keys, grants and signatures are P-256 ones). Another test
//! runs the client's unit tests (`npm test`, i.e. `node --test`).
//!
//! Both are ignored unless asked for: they need Node.js, Chromium and
//! `npm ci` in clients/web (`cargo xtask ci` runs `npm ci` first, then them).
//! Asked for without those, they fail and say what is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rekey_core::model::{MigrationState, PrincipalKind};
use rekey_core::{Scheme, Subject, Target};
use rekey_demo::reader::Reader;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::Harness;

/// `clients/web` in this checkout.
fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../clients/web")
        .canonicalize()
        .expect("clients/web exists in the checkout")
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Node.js, and the installed packages the tests need; panics with what to
/// do when something is missing.
fn node_with_modules(web: &Path, modules: &[&str]) -> PathBuf {
    let node = on_path("node").expect(
        "no `node` on PATH: these tests need Node.js 20.19 or later (apt-get install nodejs)",
    );
    for m in modules {
        let dir = web.join("node_modules").join(m);
        assert!(
            dir.join("package.json").is_file(),
            "{} is missing: run `npm ci` in {} first (cargo xtask ci does)",
            dir.display(),
            web.display()
        );
    }
    node
}

/// The Chromium the e2e test drives: `$CHROMIUM`, else Debian's.
fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            let debian = PathBuf::from("/usr/bin/chromium");
            if debian.is_file() {
                Some(debian)
            } else {
                on_path("chromium")
            }
        })
        .expect("no Chromium: apt-get install chromium, or set CHROMIUM to a Chromium binary");
    assert!(path.is_file(), "CHROMIUM={} is not a file", path.display());
    path
}

fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js, Chromium and `npm ci` in clients/web (cargo xtask ci runs it)"]
async fn browser_client_migrates_every_demo_user() {
    let summary = browser_migration("web-client", None).await;
    compare_with_the_rust_client(&summary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js, Chromium and `npm ci` in clients/web (cargo xtask ci runs it)"]
async fn browser_client_migrates_to_the_post_quantum_target() {
    browser_migration("web-client-pq", Some(Target::HpkeMlKem768X25519)).await;
}

/// A vault migrated RSA -> P-256 (rekey's Rust client logs everyone in),
/// finalized, its certificates backed up again, then started to the hybrid
/// target: the browser migrates every user from its P-256 keys (P-256
/// legacy grants, ECDSA legacy signatures, role KEKs sealed single-shot to
/// members still pending on P-256).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js, Chromium and `npm ci` in clients/web (cargo xtask ci runs it)"]
async fn browser_client_migrates_a_migrated_vault_again() {
    browser_migration_after(
        "web-client-again",
        Some(Target::HpkeP256),
        Some(Target::HpkeMlKem768X25519),
    )
    .await;
}

/// The same from P-256 to P-521 (the new keys sign with P-521, the legacy
/// ones with P-256).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js, Chromium and `npm ci` in clients/web (cargo xtask ci runs it)"]
async fn browser_client_migrates_again_from_p256_to_p521() {
    browser_migration_after(
        "web-client-again-p521",
        Some(Target::HpkeP256),
        Some(Target::HpkeP521),
    )
    .await;
}

/// The same from the hybrid keys back to P-256 (legacy grants opened with
/// X-Wing, pending members' KEKs sealed single-shot with X-Wing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js, Chromium and `npm ci` in clients/web (cargo xtask ci runs it)"]
async fn browser_client_migrates_again_from_the_hybrid_keys_to_p256() {
    browser_migration_after(
        "web-client-again-hybrid",
        Some(Target::HpkeMlKem768X25519),
        Some(Target::HpkeP256),
    )
    .await;
}

/// A demo vault started to `target` over HTTP, every e2ee user migrated by
/// the browser client in Chromium, finalized and verified; answers the
/// browser's JSON summary.
async fn browser_migration(tag: &str, target: Option<Target>) -> serde_json::Value {
    browser_migration_after(tag, None, target).await
}

/// Every principal of the vault (users, roles, services).
async fn every_principal(h: &Harness) -> Vec<rekey_core::PrincipalId> {
    let mut ids = Vec::new();
    for kind in PrincipalKind::ALL {
        ids.extend(
            h.vault
                .principals_of_kind(*kind)
                .await
                .unwrap()
                .into_iter()
                .map(|p| p.id),
        );
    }
    ids
}

/// [`browser_migration`], on a vault that first migrated to `earlier`
/// (when given) with rekey's Rust client and was finalized: the browser
/// then migrates it again, from the keys of `earlier`.
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn browser_migration_after(
    tag: &str,
    earlier: Option<Target>,
    target: Option<Target>,
) -> serde_json::Value {
    let web = web_dir();
    let node = node_with_modules(
        &web,
        &[
            "@noble/hashes",
            "@noble/curves",
            "@noble/post-quantum",
            "playwright-core",
        ],
    );
    let browser = chromium();

    let h = Harness::new(tag).await;
    if let Some(first) = earlier {
        support::migrate_once_with_the_rust_client(&h, first).await;
    }
    let started = h.admin.start_to("Start", target).await.unwrap();
    assert_eq!(started.target, target.unwrap_or_default());

    // What the e2e script needs of the demo's credentials.
    let users: serde_json::Map<String, serde_json::Value> = h
        .creds
        .users
        .iter()
        .map(|(name, u)| {
            (
                name.clone(),
                serde_json::json!({ "id": u.id.to_string(), "password": u.password }),
            )
        })
        .collect();
    assert!(users.len() >= 3, "the harness seeds at least 3 e2ee users");
    let credentials = h.dir.join("web-credentials.json");
    std::fs::write(
        &credentials,
        serde_json::to_vec(&serde_json::json!({
            "vault": h.creds.vault.to_string(),
            "users": users,
        }))
        .unwrap(),
    )
    .unwrap();

    let server = h.anon.base_url().trim_end_matches('/').to_owned();
    let script = web.join("test/e2e.mjs");
    let (w, c) = (web.clone(), credentials.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(node)
            .arg(script)
            .args(["--server", &server, "--credentials"])
            .arg(&c)
            .env("CHROMIUM", &browser)
            .current_dir(&w)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "e2e.mjs failed:\n{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary line:\n{}", show(&out)));
    println!("{summary}");
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(
        summary["users"].as_array().map(Vec::len),
        Some(h.creds.users.len()),
        "{summary}"
    );
    assert_eq!(summary["wrong_password"]["status"], 401, "{summary}");

    // Every e2ee user migrated, through the browser's bundles.
    for (name, u) in &h.creds.users {
        let p = h.vault.principal(u.id).await.unwrap().unwrap();
        assert_eq!(p.migration, MigrationState::Migrated, "{name}");
    }
    let status = h.admin.admin_status(true).await.unwrap();
    assert_eq!(status.progress.users.remaining, 0, "{status:?}");
    assert_eq!(status.progress.roles.remaining, 0, "{status:?}");
    assert_eq!(status.progress.blocked, 0, "{status:?}");
    // Every member of a role another member migrated confirmed it from the
    // browser (PROTOCOL §15): finalize would refuse otherwise.
    assert_eq!(status.progress.unconfirmed_role_members, 0, "{status:?}");
    let confirmed: u64 = summary["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["roles_confirmed"].as_u64())
        .sum();
    assert!(
        confirmed > 0,
        "no browser login confirmed a role: {summary}"
    );
    assert!(
        h.creds.users.keys().all(|n| !status.pending.contains(n)),
        "{status:?}"
    );
    if let Some(first) = earlier {
        // The members still pending when the browser migrated a role got
        // its new KEK sealed single-shot to their `first` keys, and the
        // server took it (PROTOCOL D16).
        let single = match first {
            Target::HpkeP256 => Scheme::HpkeP256,
            Target::HpkeP521 => Scheme::HpkeP521,
            _ => Scheme::HpkeMlKem768X25519,
        };
        let mut to_pending = 0;
        for u in h.creds.users.values() {
            to_pending += h
                .vault
                .grants_to(u.id)
                .await
                .unwrap()
                .iter()
                .filter(|g| {
                    g.envelope.scheme() == single && matches!(g.subject, Subject::PrivateKey(_))
                })
                .count();
        }
        assert!(
            to_pending > 0,
            "no role KEK was sealed to a pending member's {first:?} key"
        );
    }

    // Finalize (deletes every legacy key and grant), then read every record
    // through the new grants only.
    h.admin.finalize().await.unwrap();
    let report = Reader::new(&h.engine)
        .verify(&h.creds, &|_, _| {})
        .await
        .unwrap();
    assert!(report.passed(), "{report:?}");
    assert_eq!(report.users, h.creds.users.len());
    assert!(report.records_read > 0);
    // What is left is of the target only: the browser's keys and grants
    // and the server's.
    let ids: Vec<_> = h.creds.users.values().map(|u| u.id).collect();
    let scheme = target.unwrap_or_default().batch_scheme();
    for kp in h.vault.key_pairs_of(&ids).await.unwrap() {
        assert_eq!(kp.scheme, scheme, "{kp:?}");
    }
    if earlier.is_some() {
        // Nothing of either earlier run is left: every principal's key
        // pairs are of the target, every grant is sealed to such a key.
        let everyone = every_principal(&h).await;
        let pairs = h.vault.key_pairs_of(&everyone).await.unwrap();
        assert!(!pairs.is_empty());
        for kp in &pairs {
            assert_eq!(kp.scheme, scheme, "{kp:?}");
        }
        let mut grants = 0;
        for p in &everyone {
            for g in h.vault.grants_to(*p).await.unwrap() {
                assert_eq!(
                    Target::of_scheme(g.envelope.scheme()),
                    Some(target.unwrap_or_default()),
                    "{g:?}"
                );
                grants += 1;
            }
        }
        assert!(grants > 0);
    }
    h.stop().await;
    summary
}

/// Measures, never asserts: the same logins on an identical vault (same
/// seed, same fixture keys) through rekey's Rust client over HTTP, one
/// after another as the browser did, and prints grants per second for both
/// (the figure README cites). Each login is KDF, session, package, build,
/// submit and role confirmations in both clients.
async fn compare_with_the_rust_client(browser: &serde_json::Value) {
    let users = browser["users"].as_array().cloned().unwrap_or_default();
    let browser_grants: u64 = users.iter().filter_map(|u| u["grants"].as_u64()).sum();
    let browser_ms: u64 = users.iter().filter_map(|u| u["ms"].as_u64()).sum();
    let h = Harness::new("web-client-rust").await;
    h.admin.start("Start").await.unwrap();
    let base = h.anon.base_url().to_owned();
    let quiet: rekey_demo::login::Progress = std::sync::Arc::new(|_, _| {});
    let (mut grants, started) = (0u64, std::time::Instant::now());
    for name in users.iter().filter_map(|u| u["name"].as_str()) {
        let u = &h.creds.users[name];
        let r = rekey_demo::login::login_over_http(
            &base,
            h.creds.vault,
            u.id,
            &u.password,
            Some(1),
            quiet.clone(),
        )
        .await
        .unwrap();
        grants += r.applied.grants as u64;
    }
    let rust_ms = started.elapsed().as_millis().max(1);
    let per_s = |g: u64, ms: u128| g as f64 * 1000.0 / ms.max(1) as f64;
    println!(
        "logins one after another, same vault: browser {browser_grants} grants in {browser_ms} ms \
         ({:.0} grants/s), Rust client {grants} grants in {rust_ms} ms ({:.0} grants/s), \
         browser/Rust {:.2}",
        per_s(browser_grants, u128::from(browser_ms)),
        per_s(grants, rust_ms),
        per_s(browser_grants, u128::from(browser_ms)) / per_s(grants, rust_ms)
    );
    h.stop().await;
}

#[test]
#[ignore = "needs Node.js and `npm ci` in clients/web (cargo xtask ci runs it)"]
fn web_client_unit_tests_pass() {
    let web = web_dir();
    let node = node_with_modules(&web, &["@noble/hashes"]);
    // What `npm test` runs, without needing npm itself.
    let out = Command::new(node)
        .args(["--test", "test/unit.mjs"])
        .current_dir(&web)
        .output()
        .expect("run node --test");
    assert!(out.status.success(), "npm test failed:\n{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("# fail 0"), "{}", show(&out));
}
