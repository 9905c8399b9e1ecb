//! End to end on loopback: a demo vault (fixture RSA keys, SQLite in a
//! temporary file) migrated entirely through the HTTP API with a real
//! HTTP client, then verified; every error status provoked with nothing
//! written; the status page, metrics and the OpenAPI document checked
//! against the route table.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a scenario test reads top to bottom; its steps are commented in place"
)]

mod support;

use hyper::{Method, StatusCode};
use rekey_client::{HttpClient, MigrationApi};
use rekey_core::bundle::{BuildOptions, MigrationPackage, PackageLegacyKey, Unlock, build_bundle};
use rekey_core::model::Phase;
use rekey_core::{KeyPairId, PrincipalId, RunId, VaultId};
use rekey_demo::password::master_secret;
use rekey_demo::reader::Reader;
use std::collections::BTreeSet;
use std::sync::Arc;
use support::{Harness, MAX_BUNDLE, Who, fixture_keys};

/// A well-formed bundle that belongs to no run: built from a made-up
/// package with a fixture key.
fn stray_bundle(principal: PrincipalId) -> Vec<u8> {
    let key = rekey_core::PrivateKey::Rsa(
        rekey_core::LegacyRsaPrivateKey::from_pkcs8_der(fixture_keys()[0].dangerous_pkcs8_der())
            .unwrap(),
    );
    let package = MigrationPackage {
        vault: VaultId::random(),
        run: RunId::random(),
        principal,
        target: rekey_core::Target::default(),
        legacy_key: PackageLegacyKey {
            id: KeyPairId::random(),
            public_key: key.public_key(),
            wrapped_private: None,
        },
        pending_grants: Vec::new(),
        candidates: Vec::new(),
    };
    build_bundle(&package, Unlock::ServerKey(&key), BuildOptions::default())
        .unwrap()
        .bundle
        .encode()
}

fn bundle_path(p: PrincipalId) -> String {
    format!("/v1/principals/{p}/bundle")
}

const OCTETS: &str = "application/octet-stream";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_migration_over_http_with_every_refusal() {
    let h = Harness::new("e2e").await;
    let before = Reader::new(&h.engine)
        .verify(&h.creds, &|_, _| {})
        .await
        .unwrap();
    assert!(before.passed(), "{before:?}");

    // Liveness, readiness; the server registered itself with its keys.
    let (s, v) = h.raw(Method::GET, "/health", None, Who::Anon).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, v) = h.raw(Method::GET, "/ready", None, Who::Anon).await;
    assert_eq!((s, v["phase"].as_str()), (StatusCode::OK, Some("legacy")));
    let servers = h.vault.servers().await.unwrap();
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(servers[0].certificate_fingerprints.len(), 3);

    let names: Vec<String> = h.creds.users.keys().cloned().collect();
    let first = h.creds.users[&names[0]].id;
    let second = h.creds.users[&names[1]].id;

    // 423 before the start: packages and bundles, nothing written.
    h.refused(
        StatusCode::LOCKED,
        Method::GET,
        &format!("/v1/principals/{first}/package"),
        None,
        Who::User(&names[0]),
    )
    .await;
    let e = h
        .refused(
            StatusCode::LOCKED,
            Method::POST,
            &bundle_path(first),
            Some((OCTETS, stray_bundle(first))),
            Who::User(&names[0]),
        )
        .await;
    assert!(e.contains("legacy"), "{e}");

    // Records are writable before the start.
    let record = h.vault.records_page(None, 1).await.unwrap()[0].id;
    let record_path = format!("/v1/records/{record}");
    h.refused(
        StatusCode::UNAUTHORIZED,
        Method::GET,
        &record_path,
        None,
        Who::Anon,
    )
    .await;
    let (s, v) = h.raw(Method::GET, &record_path, None, Who::Admin).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let ciphertext = v["ciphertext"].as_str().unwrap().to_owned();
    let put = || {
        Some((
            "application/json",
            serde_json::json!({ "ciphertext": ciphertext })
                .to_string()
                .into_bytes(),
        ))
    };
    let (s, v) = h.raw(Method::PUT, &record_path, put(), Who::Admin).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // 401: no token, a wrong token; nothing changes.
    h.refused(
        StatusCode::UNAUTHORIZED,
        Method::POST,
        "/v1/admin/start",
        Some(("application/json", br#"{"code_word":"Start"}"#.to_vec())),
        Who::Anon,
    )
    .await;
    let wrong = HttpClient::new(h.admin.base_url())
        .unwrap()
        .with_admin_token("not-the-admin-token-at-all");
    let err = wrong.start("Start").await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    h.refused(
        StatusCode::UNAUTHORIZED,
        Method::PUT,
        &record_path,
        put(),
        Who::Anon,
    )
    .await;
    // 400: a wrong code word, a malformed body.
    let e = h
        .refused(
            StatusCode::BAD_REQUEST,
            Method::POST,
            "/v1/admin/start",
            Some(("application/json", br#"{"code_word":"start"}"#.to_vec())),
            Who::Admin,
        )
        .await;
    assert!(e.contains("Start"), "{e}");
    h.refused(
        StatusCode::BAD_REQUEST,
        Method::POST,
        "/v1/admin/start",
        Some(("application/json", b"{not json".to_vec())),
        Who::Admin,
    )
    .await;

    // Admin actions on devices and non-migratable grants.
    let devices = h.vault.devices().await.unwrap();
    h.refused(
        StatusCode::NOT_FOUND,
        Method::POST,
        "/v1/admin/devices/no-such-device/write-off",
        None,
        Who::Admin,
    )
    .await;
    if let Some(d) = devices.iter().find(|d| !d.written_off) {
        let path = format!("/v1/admin/devices/{}/write-off", d.id);
        h.refused(
            StatusCode::UNAUTHORIZED,
            Method::POST,
            &path,
            None,
            Who::Anon,
        )
        .await;
        let (s, v) = h.raw(Method::POST, &path, None, Who::Admin).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let after = h.vault.devices().await.unwrap();
        assert!(after.iter().any(|x| x.id == d.id && x.written_off));
    }
    let resolve = |r: &str| {
        Some((
            "application/json",
            serde_json::json!({ "resolution": r })
                .to_string()
                .into_bytes(),
        ))
    };
    let grant = rekey_core::GrantId::random();
    let path = format!("/v1/admin/non-migratable/{grant}/resolve");
    h.refused(
        StatusCode::NOT_FOUND,
        Method::POST,
        &path,
        resolve("reshared"),
        Who::Admin,
    )
    .await;
    h.refused(
        StatusCode::BAD_REQUEST,
        Method::POST,
        &path,
        resolve("unresolved"),
        Who::Admin,
    )
    .await;
    h.refused(
        StatusCode::BAD_REQUEST,
        Method::POST,
        "/v1/admin/non-migratable/not-a-uuid/resolve",
        resolve("reshared"),
        Who::Admin,
    )
    .await;

    // Preflight passes, the start runs the server phase.
    let report = h.admin.preflight().await.unwrap();
    assert_eq!(report["format"], "rekey-preflight/1");
    assert_eq!(report["blocking"], serde_json::json!([]), "{report}");
    // Preflight for the hybrid target sizes the disk-space estimate for
    // its grants; an unknown target is refused and changes nothing.
    let growth = |r: &serde_json::Value| {
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "disk-space")
            .unwrap()["evidence"][0]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let hybrid = h
        .admin
        .preflight_for(rekey_core::Target::HpkeMlKem768X25519)
        .await
        .unwrap();
    assert!(growth(&report).contains("(hpke-p256)"), "{report}");
    assert!(
        growth(&hybrid).contains("(hpke-mlkem768-x25519)"),
        "{hybrid}"
    );
    assert_eq!(hybrid["blocking"], serde_json::json!([]), "{hybrid}");
    h.refused(
        StatusCode::BAD_REQUEST,
        Method::POST,
        "/v1/admin/preflight?target_scheme=rsa",
        None,
        Who::Admin,
    )
    .await;
    let started = h.admin.start("Start").await.unwrap();
    assert_eq!(started.phase, Phase::UserPhase, "{started:?}");
    assert!(!started.resumed);
    assert_eq!(started.server_phase.unwrap().migrated.len(), 3);
    // Twice: 409.
    assert_eq!(
        h.admin.start("Start").await.unwrap_err().status(),
        Some(409)
    );

    // Anyone sees the counts; only the administrator sees who is pending.
    let public = h.anon.status().await.unwrap();
    assert_eq!(public.phase, Phase::UserPhase);
    assert_eq!(public.progress.users.remaining, names.len() as u64);
    assert!(
        public.names_withheld && public.pending.is_empty(),
        "{public:?}"
    );
    let status = h.admin.admin_status(false).await.unwrap();
    assert_eq!(status.progress.services.migrated, 3);
    assert!(status.run.is_some());
    assert!(!status.names_withheld);
    for n in &names {
        assert!(
            status.pending.contains(n),
            "{n} pending: {:?}",
            status.pending
        );
    }

    // The status page shows the phase and the counts.
    let (s, bytes) = h.anon.raw(Method::GET, "/", None, false).await.unwrap();
    let html = String::from_utf8(bytes.to_vec()).unwrap();
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains(r#"id="phase">user_phase<"#), "{html}");
    assert!(html.contains(&format!(
        r#"<span class="remaining">{}</span> remaining"#,
        names.len()
    )));
    assert!(html.contains(r#"http-equiv="refresh""#));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );

    // 423: record writes during the migration.
    let e = h
        .refused(
            StatusCode::LOCKED,
            Method::PUT,
            &record_path,
            put(),
            Who::Admin,
        )
        .await;
    assert!(e.contains("read-only"), "{e}");

    // Bundle refusals, each with nothing written.
    let (id0, bundle0) = h.build(&names[0]).await;
    assert_eq!(id0, first);
    h.refused(
        StatusCode::BAD_REQUEST,
        Method::POST,
        &bundle_path(first),
        Some((OCTETS, b"garbage, not a bundle".to_vec())),
        Who::User(&names[0]),
    )
    .await;
    h.refused(
        StatusCode::BAD_REQUEST,
        Method::POST,
        "/v1/principals/not-a-uuid/bundle",
        Some((OCTETS, bundle0.clone())),
        Who::User(&names[0]),
    )
    .await;
    let mut truncated = bundle0.clone();
    truncated.truncate(bundle0.len() / 2);
    let e = h
        .refused(
            StatusCode::BAD_REQUEST,
            Method::POST,
            &bundle_path(first),
            Some((OCTETS, truncated)),
            Who::User(&names[0]),
        )
        .await;
    assert!(e.contains("malformed"), "{e}");
    h.refused(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Method::POST,
        &bundle_path(first),
        Some(("application/json", bundle0.clone())),
        Who::User(&names[0]),
    )
    .await;
    h.refused(
        StatusCode::PAYLOAD_TOO_LARGE,
        Method::POST,
        &bundle_path(first),
        Some((OCTETS, vec![0u8; MAX_BUNDLE + 1])),
        Who::User(&names[0]),
    )
    .await;
    // No session, or another account's session: refused before the body
    // is read.
    let e = h
        .refused(
            StatusCode::UNAUTHORIZED,
            Method::POST,
            &bundle_path(first),
            Some((OCTETS, bundle0.clone())),
            Who::Anon,
        )
        .await;
    assert!(e.contains("session"), "{e}");
    h.refused(
        StatusCode::FORBIDDEN,
        Method::POST,
        &bundle_path(first),
        Some((OCTETS, bundle0.clone())),
        Who::User(&names[1]),
    )
    .await;
    // The same for the package, which holds the password-wrapped legacy key.
    h.refused(
        StatusCode::UNAUTHORIZED,
        Method::GET,
        &format!("/v1/principals/{first}/package"),
        None,
        Who::Anon,
    )
    .await;
    h.refused(
        StatusCode::FORBIDDEN,
        Method::GET,
        &format!("/v1/principals/{first}/package"),
        None,
        Who::User(&names[1]),
    )
    .await;
    // Another account's bundle posted at this account's URL, with this
    // account's session: the signatures are not this account's.
    h.refused(
        StatusCode::FORBIDDEN,
        Method::POST,
        &bundle_path(second),
        Some((OCTETS, bundle0.clone())),
        Who::User(&names[1]),
    )
    .await;
    // A signature that does not verify (the last byte is inside the last
    // signature).
    let mut forged = bundle0.clone();
    *forged.last_mut().unwrap() ^= 1;
    h.refused(
        StatusCode::FORBIDDEN,
        Method::POST,
        &bundle_path(first),
        Some((OCTETS, forged)),
        Who::User(&names[0]),
    )
    .await;

    // The genuine bundle applies; replayed, it conflicts.
    let applied = h.users[&names[0]]
        .submit(first, bundle0.clone())
        .await
        .unwrap();
    assert_eq!(applied.principals[0], first);
    assert!(applied.grants > 0);
    let e = h
        .refused(
            StatusCode::CONFLICT,
            Method::POST,
            &bundle_path(first),
            Some((OCTETS, bundle0.clone())),
            Who::User(&names[0]),
        )
        .await;
    assert!(e.contains("already migrated"), "{e}");
    let err = h.users[&names[0]]
        .submit(first, bundle0.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("already_migrated"), "{err}");
    assert!(
        !err.is_conflict(),
        "rebuilding cannot help a migrated account"
    );
    // A migrated account gets no package either.
    let err = h.users[&names[0]].package(first).await.unwrap_err();
    assert_eq!(err.code(), Some("already_migrated"), "{err}");

    // Everyone else migrates through the client.
    for n in &names[1..] {
        let u = &h.creds.users[n];
        let master = master_secret(&u.password, h.creds.vault, u.id, &h.creds.kdf).unwrap();
        let options = BuildOptions { threads: Some(1) };
        let r = rekey_client::migrate(&h.users[n], u.id, master, options, Arc::new(|_, _| {}))
            .await
            .unwrap();
        assert_eq!(r.applied.principals[0], u.id);
    }
    let status = h.admin.admin_status(true).await.unwrap();
    assert_eq!(status.progress.users.remaining, 0, "{status:?}");
    assert_eq!(status.progress.roles.remaining, 0);
    assert!(status.pending.is_empty());
    assert!(status.rate_principals_per_minute.unwrap() > 0.0);

    // Metrics: principals and grants by state, bundles by outcome, latency.
    let (s, bytes) = h
        .anon
        .raw(Method::GET, "/metrics", None, false)
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    let m = String::from_utf8(bytes.to_vec()).unwrap();
    for line in [
        format!("rekey_bundles_applied_total {}", names.len()),
        "rekey_bundles_refused_total{reason=\"signature\"} 2".to_owned(),
        // The replay, posted twice (raw, and through the client).
        "rekey_bundles_refused_total{reason=\"conflict\"} 2".to_owned(),
        "rekey_bundles_refused_total{reason=\"too_large\"} 1".to_owned(),
        "rekey_bundles_refused_total{reason=\"wrong_phase\"} 1".to_owned(),
        "rekey_bundles_refused_total{reason=\"unauthorized\"} 2".to_owned(),
        "rekey_bundles_refused_total{reason=\"malformed\"} 4".to_owned(),
        "rekey_principals{kind=\"user\",state=\"remaining\"} 0".to_owned(),
        "rekey_grants{state=\"remaining\"} 0".to_owned(),
        "rekey_migration_phase{phase=\"user_phase\"} 1".to_owned(),
        format!(
            "rekey_http_request_duration_seconds_count{{method=\"POST\",route=\"/v1/principals/{{id}}/bundle\"}} {}",
            13 + names.len() - 1
        ),
    ] {
        assert!(m.contains(&line), "missing {line:?} in\n{m}");
    }

    // Finalize through the admin API; the vault verifies, records are
    // writable again, and bundles are refused as out of phase.
    let fin = h.admin.finalize().await.unwrap();
    assert_eq!(fin.phase, Phase::Completed);
    assert!(fin.deleted_legacy_rows > 0);
    let after = Reader::new(&h.engine)
        .verify(&h.creds, &|_, _| {})
        .await
        .unwrap();
    assert!(after.passed(), "{after:?}");
    assert_eq!(after.records_read, before.records_read);
    assert_eq!(h.anon.status().await.unwrap().phase, Phase::Completed);
    let (s, v) = h.raw(Method::PUT, &record_path, put(), Who::Admin).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    h.refused(
        StatusCode::LOCKED,
        Method::POST,
        &bundle_path(first),
        Some((OCTETS, bundle0)),
        Who::User(&names[0]),
    )
    .await;
    assert_eq!(h.admin.abort().await.unwrap_err().status(), Some(409));

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_exactly_the_routes_served() {
    let h = Harness::new("openapi").await;
    let (s, doc) = h.raw(Method::GET, "/openapi.json", None, Who::Anon).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let listed: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    // Written out here, not read from the route table the document is made
    // from: a route added or dropped must show up in this list too.
    let expected: BTreeSet<(String, String)> = [
        ("GET", "/"),
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/v1/migration/status"),
        ("GET", "/v1/admin/status"),
        ("POST", "/v1/admin/preflight"),
        ("POST", "/v1/admin/start"),
        ("POST", "/v1/admin/finalize"),
        ("POST", "/v1/admin/abort"),
        ("POST", "/v1/admin/devices/{id}/write-off"),
        ("POST", "/v1/admin/non-migratable/{grant}/resolve"),
        ("POST", "/v1/admin/users/{name}/purge"),
        ("POST", "/v1/admin/users/{name}/restore"),
        ("GET", "/v1/client-kdf"),
        ("POST", "/v1/session"),
        ("GET", "/v1/principals/{id}/package"),
        ("POST", "/v1/principals/{id}/bundle"),
        ("GET", "/v1/principals/{id}/role-checks"),
        ("POST", "/v1/principals/{id}/role-receipts"),
        ("GET", "/v1/records/{id}"),
        ("PUT", "/v1/records/{id}"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(listed, expected);
    // Every listed operation is served (no fallback 404/405), without a
    // token so that no admin operation runs.
    for (method, path) in &listed {
        let concrete = path
            .replace("{id}", &uuid::Uuid::new_v4().to_string())
            .replace("{grant}", &uuid::Uuid::new_v4().to_string())
            .replace("{name}", "nobody.0000");
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, v) = h.raw(m, &concrete, None, Who::Anon).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_ne!(v["error"], "no such route", "{method} {path}");
        // Whatever the document says needs credentials refuses a request
        // without them, and lists 401 among its answers.
        let op = &doc["paths"][path.as_str()][method.to_lowercase()];
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        assert_eq!(
            secured,
            path.starts_with("/v1/admin")
                || path.contains("/principals/")
                || path.starts_with("/v1/records"),
            "{method} {path}: {op}"
        );
        if secured {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {v}");
            assert!(op["responses"]["401"].is_object(), "{method} {path}");
        }
    }
    // And nothing else is.
    let (s, v) = h
        .raw(Method::GET, "/v1/nothing-here", None, Who::Anon)
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("no such route"))
    );
    assert!(v["hint"].is_string());
    let (s, v) = h
        .raw(Method::DELETE, "/v1/migration/status", None, Who::Anon)
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert!(v["error"].is_string());
    // The vault is untouched by the probes.
    assert_eq!(h.vault.migration().await.unwrap().phase, Phase::Legacy);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_a_request_in_flight() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut h = Harness::new("shutdown").await;
    let addr = h.anon.base_url().trim_start_matches("http://").to_owned();
    let body = b"not a bundle, but a request all the same".to_vec();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (name, u) = h.creds.users.iter().next().unwrap();
    let head = format!(
        "POST /v1/principals/{}/bundle HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        u.id,
        h.users[name].session_token().unwrap(),
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // Shutdown begins while the request's body is still arriving.
    let _ = h.stop.take().unwrap().send(());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    conn.write_all(&body[5..]).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut answer),
    )
    .await
    .expect("the server answers and closes")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"hint\""), "{answer}");
    // New connections are no longer accepted once the server stopped.
    h.stop().await;
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
}

/// Sends `head` (and nothing more) on a new connection and answers what
/// the server says within `wait` (empty if it closed without a word).
async fn answer_to(addr: &str, head: &str, wait: std::time::Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    match tokio::time::timeout(wait, conn.read_to_end(&mut answer)).await {
        Ok(_) => Some(String::from_utf8_lossy(&answer).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_oversized_requests_are_cut_off_and_health_keeps_answering() {
    use std::time::{Duration, Instant};
    let h = Harness::with_config("dos", |c| {
        c.header_timeout = Duration::from_millis(800);
        c.body_timeout = Duration::from_millis(800);
        c.max_connections = 8;
        c.max_concurrent_bundles = 1;
    })
    .await;
    h.admin.start("Start").await.unwrap();
    let addr = h.anon.base_url().trim_start_matches("http://").to_owned();
    let (name, u) = h.creds.users.iter().next().unwrap();
    let token = h.users[name].session_token().unwrap().to_owned();
    let bundle_head = |length: &str| {
        format!(
            "POST /v1/principals/{}/bundle HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n",
            u.id
        )
    };
    let before = h.snapshot().await;

    // 60 MiB announced: refused from the header, no body read.
    let t = Instant::now();
    let answer = answer_to(&addr, &bundle_head("62914560"), Duration::from_secs(5))
        .await
        .expect("an answer without the body");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"too_large\""), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(5));

    // A body that never arrives: 408 once the body timeout passes.
    let answer = answer_to(&addr, &bundle_head("1000"), Duration::from_secs(5))
        .await
        .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"body_timeout\""), "{answer}");

    // While one slow body holds the only bundle slot, another bundle is
    // told to come back (503, Retry-After).
    let (_, bundle) = h.build(name).await;
    let slow = tokio::spawn({
        let (addr, head) = (addr.clone(), bundle_head("1000"));
        async move { answer_to(&addr, &head, Duration::from_secs(5)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = h.users[name].submit(u.id, bundle).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(503), Some("busy")),
        "{err}"
    );
    assert!(slow.await.unwrap().unwrap().starts_with("HTTP/1.1 408"));

    // Headers that never end: the connection is closed.
    let t = Instant::now();
    let partial = answer_to(
        &addr,
        "GET /health HTTP/1.1\r\nHost: x\r\n",
        Duration::from_secs(5),
    )
    .await
    .expect("closed within the header timeout");
    assert!(!partial.contains("200 OK"), "{partial}");
    assert!(t.elapsed() < Duration::from_secs(3));

    // Every connection slot held by an idle client: /health still
    // answers once the header timeout frees them.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let t = Instant::now();
    let (s, _) = h.raw(Method::GET, "/health", None, Who::Anon).await;
    assert_eq!(s, StatusCode::OK);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    drop(idle);

    assert_eq!(h.snapshot().await, before, "nothing was written");
    h.stop().await;
}
