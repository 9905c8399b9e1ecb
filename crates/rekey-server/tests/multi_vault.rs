//! One process, two vaults (issue #30): two SQLite demo vaults served by
//! one `run_vaults` on loopback. A user of vault `a` logs in and migrates
//! through `/v1/vaults/a/…` while vault `b`, started too, is untouched; a
//! session of `a` is refused on `b`'s paths; an unknown vault is a JSON
//! 404; `/metrics` labels each vault's series; `/` lists both vaults and
//! each vault's page shows its own counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a scenario test reads top to bottom; its steps are commented in place"
)]

mod support;

use hyper::{Method, StatusCode};
use rekey_client::{HttpClient, MigrationApi};
use rekey_core::bundle::BuildOptions;
use rekey_core::model::Phase;
use rekey_demo::password::master_secret;
use rekey_server::{ServerConfig, ServerError, VaultSet, VaultSite};
use rekey_storage::Vault;
use support::{ServedVaults, TOKEN, login};

/// What must not change in a vault nobody migrates.
async fn snapshot(v: &Vault) -> (rekey_core::model::Progress, usize, i64) {
    (
        v.progress().await.unwrap(),
        v.audit_events(0, 1_000_000).await.unwrap().len(),
        v.migration().await.unwrap().version,
    )
}

async fn get(root: &HttpClient, path: &str) -> (StatusCode, String) {
    let (s, body) = root.raw(Method::GET, path, None, false).await.unwrap();
    (s, String::from_utf8_lossy(&body).into_owned())
}

/// Asserts a JSON `{error, code, hint}` refusal; answers the body.
fn refusal(status: StatusCode, body: &str, expected: StatusCode, code: &str) -> serde_json::Value {
    assert_eq!(status, expected, "{body}");
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON error body");
    assert_eq!(v["code"], code, "{v}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    assert!(v["hint"].as_str().is_some_and(|h| !h.is_empty()), "{v}");
    v
}

/// The row of vault `name` on the index page.
fn row<'a>(html: &'a str, name: &str) -> &'a str {
    html.split(&format!(r#"<tr id="vault-{name}">"#))
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap_or_else(|| panic!("no row for {name}: {html}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_vaults_in_one_process() {
    let served = ServedVaults::new(&[("a", 11), ("b", 12)]).await;
    let (a, b) = (&served.vaults[0], &served.vaults[1]);
    let base = served.base.clone();
    let vault_a = Vault::open(&a.url).await.unwrap();
    let vault_b = Vault::open(&b.url).await.unwrap();

    // A client of the server itself (for raw paths), and one per vault:
    // by name, and by the vault's URL.
    let root = HttpClient::new(&base).unwrap();
    let anon_a = HttpClient::for_vault(&base, "a")
        .unwrap()
        .expect_vault(a.creds.vault);
    let anon_b = HttpClient::new(&format!("{base}/v1/vaults/b"))
        .unwrap()
        .expect_vault(b.creds.vault);
    assert_eq!(anon_b.vault_name(), Some("b"));
    let admin_a = anon_a.clone().with_admin_token(TOKEN);
    let admin_b = anon_b.clone().with_admin_token(TOKEN);

    // The process is alive and ready; each vault has this server in its
    // own server list, with its own keys.
    let (s, body) = get(&root, "/health").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = get(&root, "/ready").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ready["vaults"],
        serde_json::json!([{"name": "a", "phase": "legacy"}, {"name": "b", "phase": "legacy"}])
    );
    for v in [&vault_a, &vault_b] {
        let servers = v.servers().await.unwrap();
        assert_eq!(servers.len(), 1, "{servers:?}");
        assert_eq!(servers[0].certificate_fingerprints.len(), 3);
    }

    // The admin API of one vault starts that vault only.
    admin_a.start("Start").await.unwrap();
    assert_eq!(anon_a.status().await.unwrap().phase, Phase::UserPhase);
    assert_eq!(anon_b.status().await.unwrap().phase, Phase::Legacy);
    admin_b.start("Start").await.unwrap();
    assert_eq!(anon_b.status().await.unwrap().phase, Phase::UserPhase);
    let b_before = snapshot(&vault_b).await;
    let b_users = b_before.0.users;
    let a_users = anon_a.status().await.unwrap().progress.users;
    assert!(a_users.remaining > 0 && b_users.remaining > 0);

    // A user of vault a logs in and migrates through /v1/vaults/a/…
    let (name, user) = a.creds.users.iter().next().unwrap();
    let user_a = login(&anon_a, &a.creds, name).await;
    let master = master_secret(&user.password, a.creds.vault, user.id, &a.creds.kdf).unwrap();
    rekey_client::migrate(
        &user_a,
        user.id,
        master,
        BuildOptions { threads: Some(1) },
        std::sync::Arc::new(|_, _| {}),
    )
    .await
    .unwrap();
    let a_after = anon_a.status().await.unwrap().progress.users;
    assert_eq!(a_after.migrated, a_users.migrated + 1);
    assert_eq!(vault_a.progress().await.unwrap().users, a_after);
    // ... and vault b did not move.
    assert_eq!(snapshot(&vault_b).await, b_before);
    assert_eq!(anon_b.status().await.unwrap().progress.users, b_users);

    // A session of vault a is nothing on vault b's paths: not for the
    // account of a, not for an account of b; nothing is written to b.
    let token = user_a.session_token().unwrap().to_owned();
    let a_on_b = HttpClient::for_vault(&base, "b")
        .unwrap()
        .with_session(&token);
    let b_user = b.creds.users.values().next().unwrap().id;
    for principal in [user.id, b_user] {
        let e = a_on_b.package(principal).await.unwrap_err();
        assert_eq!(
            (e.status(), e.code()),
            (Some(401), Some("session_invalid")),
            "{e}"
        );
    }
    let e = a_on_b.submit(b_user, vec![1, 2, 3]).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(401), Some("session_invalid")));
    assert_eq!(snapshot(&vault_b).await, b_before);
    // The same session on its own vault's paths is the account's.
    let e = user_a.package(user.id).await.unwrap_err();
    assert_eq!(e.code(), Some("already_migrated"), "{e}");

    // The single-vault paths are not served; an unknown vault is a JSON
    // 404 that names it; so is a known vault's unknown route.
    let (s, body) = get(&root, "/v1/migration/status").await;
    refusal(s, &body, StatusCode::NOT_FOUND, "not_found");
    for path in [
        "/v1/vaults/nope/migration/status",
        "/v1/vaults/nope",
        "/vaults/nope",
        "/vaults/A",
    ] {
        let (s, body) = get(&root, path).await;
        let v = refusal(s, &body, StatusCode::NOT_FOUND, "not_found");
        assert!(
            v["error"].as_str().unwrap().contains("no vault named"),
            "{path}: {v}"
        );
    }
    let (s, body) = root
        .raw(
            Method::POST,
            "/v1/vaults/nope/session",
            Some(("application/json", b"{}".to_vec())),
            false,
        )
        .await
        .unwrap();
    refusal(
        s,
        &String::from_utf8_lossy(&body),
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (s, body) = get(&root, "/v1/vaults/a/nothing-here").await;
    let v = refusal(s, &body, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(v["error"], "no such route");
    let (s, body) = get(&root, "/v1/vaults/a/session").await;
    refusal(
        s,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );

    // Metrics: every vault's series with its label, each family once.
    let (s, text) = get(&root, "/metrics").await;
    assert_eq!(s, StatusCode::OK);
    for line in [
        &format!(
            r#"rekey_principals{{vault="a",kind="user",state="migrated"}} {}"#,
            a_after.migrated
        ),
        &format!(
            r#"rekey_principals{{vault="b",kind="user",state="migrated"}} {}"#,
            b_users.migrated
        ),
        &format!(
            r#"rekey_principals{{vault="b",kind="user",state="remaining"}} {}"#,
            b_users.remaining
        ),
        r#"rekey_bundles_applied_total{vault="a"} 1"#,
        r#"rekey_bundles_applied_total{vault="b"} 0"#,
        r#"rekey_logins_total{vault="a",outcome="opened"} 1"#,
        r#"rekey_logins_total{vault="b",outcome="opened"} 0"#,
        r#"rekey_bundles_refused_total{vault="a",reason="unauthorized"} 0"#,
        r#"rekey_bundles_refused_total{vault="b",reason="unauthorized"} 1"#,
        r#"rekey_migration_phase{vault="a",phase="user_phase"} 1"#,
        r#"rekey_migration_phase{vault="b",phase="user_phase"} 1"#,
        r#"rekey_http_request_duration_seconds_count{vault="a",method="POST",route="/v1/vaults/{vault}/principals/{id}/bundle"} 1"#,
        r#"rekey_http_request_duration_seconds_count{vault="b",method="POST",route="/v1/vaults/{vault}/principals/{id}/bundle"} 1"#,
        r#"rekey_http_request_duration_seconds_count{method="GET",route="/ready"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line} in:\n{text}"
        );
    }
    let mut families = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let family = help.split(' ').next().unwrap();
            assert!(families.insert(family.to_owned()), "{family} twice");
        } else if !line.starts_with('#') {
            // A vault's series, or the latency of the process's own routes.
            let process = ["/", "/health", "/ready", "/metrics", "/openapi.json"]
                .iter()
                .any(|r| line.contains(&format!("route=\"{r}\"")));
            assert!(
                line.contains(r#"{vault="a""#) || line.contains(r#"{vault="b""#) || process,
                "{line}"
            );
        }
    }
    assert!(families.contains("rekey_principals"), "{families:?}");

    // The index lists both vaults with their own counts and links to
    // their pages; each page is that vault's.
    let (s, html) = get(&root, "/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains(r#"id="vault-count">2<"#), "{html}");
    let ra = row(&html, "a");
    assert!(ra.contains(r#"href="vaults/a""#), "{ra}");
    assert!(
        ra.contains(r#"<span class="phase">user_phase</span>"#),
        "{ra}"
    );
    assert!(ra.contains(r#"<td class="target">hpke-p256</td>"#), "{ra}");
    let cell = |c: rekey_core::model::Counts| {
        format!(
            r#"<td class="users"><b class="migrated">{}</b> / <span class="total">{}</span> migrated, <span class="remaining">{}</span> remaining</td>"#,
            c.migrated,
            c.migrated + c.remaining,
            c.remaining
        )
    };
    assert!(ra.contains(&cell(a_after)), "{ra}");
    let rb = row(&html, "b");
    assert!(rb.contains(r#"href="vaults/b""#), "{rb}");
    assert!(rb.contains(&cell(b_users)), "{rb}");
    for n in a.creds.users.keys().chain(b.creds.users.keys()) {
        assert!(!html.contains(n.as_str()), "{n} named on the index");
    }
    for (vault, users) in [("a", a_after), ("b", b_users)] {
        let (s, page) = get(&root, &format!("/vaults/{vault}")).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert!(page.contains(&format!(r#"id="vault">{vault}<"#)), "{page}");
        assert!(page.contains(r#"id="all-vaults" href="../""#), "{page}");
        assert!(page.contains(r#"id="phase">user_phase<"#), "{page}");
        assert!(
            page.contains(&format!(
                r#"<b class="migrated">{}</b> / <span class="total">{}</span>"#,
                users.migrated,
                users.migrated + users.remaining
            )),
            "{vault}: {page}"
        );
    }

    // The document describes this layout.
    let (s, body) = get(&root, "/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(doc["paths"]["/v1/vaults/{vault}/session"]["post"].is_object());
    assert!(doc["paths"].get("/v1/session").is_none());

    served.stop().await;
}

#[tokio::test]
async fn names_are_checked_before_anything_is_opened() {
    // No such databases: a name refused first proves nothing was opened.
    let nowhere = |name: &str| {
        VaultSite::new(
            name,
            "sqlite:///nonexistent-rekey-dir/vault.db",
            "/nonexistent-rekey-dir/keys",
        )
    };
    let config = ServerConfig::new("sqlite://unused.db", "unused-keys", TOKEN).unwrap();
    for (sites, says) in [
        (
            vec![nowhere("a"), nowhere("a")],
            r#"two vaults are named "a""#,
        ),
        (vec![nowhere("Berlin")], "a-z, 0-9, _ and -"),
        (vec![nowhere("a/b")], "a-z, 0-9, _ and -"),
        (vec![], "no vault"),
    ] {
        let e = VaultSet::open(sites.clone(), &config).await.unwrap_err();
        assert!(matches!(e, ServerError::Config(_)), "{e}");
        assert!(e.to_string().contains(says), "{e}");
        let e = rekey_server::serve_vaults(sites, config.clone())
            .await
            .unwrap_err();
        assert!(e.to_string().contains(says), "{e}");
    }
    // A vault that cannot be opened is named.
    let e = VaultSet::open(vec![nowhere("paris")], &config)
        .await
        .unwrap_err();
    assert!(matches!(e, ServerError::OpenVault { .. }), "{e}");
    assert!(e.is_startup());
    assert!(e.to_string().contains("vault paris"), "{e}");
}
