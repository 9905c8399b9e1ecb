//! Attacks on the `rekey-server` binary (debug logging on, its output
//! captured): a bundle signed with another user's legacy key, a replayed
//! bundle (same run, and from an aborted run), admin requests without the
//! token or with a wrong one, the code word in another
//! case, bodies over the limits. Each is refused with nothing written.
//! Sessions: a package without one, with another account's, with a
//! forged or renamed token; a wrong authenticator answered like an
//! unknown account; a sixth failed login refused with 429. Then the log
//! is searched for every secret of the vault: the demo passwords, the
//! users' key-encryption keys, login authenticators and session tokens,
//! legacy and new private keys (hex and base64), the admin token and the
//! wrong tokens presented.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a scenario test reads top to bottom; its steps are commented in place"
)]

mod support;

use hyper::{Method, StatusCode};
use rekey_client::{HttpClient, MigrationApi};
use rekey_core::bundle::{
    BuildOptions, SignatureKind, SignedBundle, Unlock, build_bundle, wire::signed_message,
};
use rekey_core::kek::unwrap_private_key;
use rekey_core::model::{KeyState, Progress};
use rekey_core::{Kek, KeyBinding, LegacyRsaPrivateKey, PrincipalId};
use rekey_demo::password::master_secret;
use rekey_demo::reader::Reader;
use rekey_demo::{DemoSpec, KeySource, generate};
use rekey_engine::{Engine, KeyDir};
use rekey_keys::{BackupOptions, Passphrase};
use rekey_storage::Vault;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::fixture_keys;

const TOKEN: &str = "security-test-admin-token-7f3a9c";
const WRONG_TOKENS: [&str; 2] = [
    "an-attacker-guess-of-the-admin-token",
    "SECURITY-TEST-ADMIN-TOKEN-7F3A9C",
];
const MAX_BUNDLE: usize = 128 * 1024;
const MAX_BODY: usize = 16 * 1024;
const OCTETS: &str = "application/octet-stream";

fn b64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            }
        }
    }
    out
}

/// Text forms in which `secret` could leak: hex (both cases), base64
/// (standard and URL-safe, unpadded); long secrets as 24-byte windows
/// (aligned so base64 windows are substrings of the whole's base64).
fn forms(secret: &[u8], from: usize) -> Vec<String> {
    let mut out = Vec::new();
    let windows: Vec<&[u8]> = if secret.len() <= 48 {
        vec![secret]
    } else {
        let start = from.div_ceil(3) * 3;
        (start..secret.len().saturating_sub(24))
            .step_by(24)
            .map(|i| &secret[i..i + 24])
            .collect()
    };
    for w in windows {
        let h = hex::encode(w);
        out.push(h.to_uppercase());
        out.push(h);
        let b = b64(w);
        out.push(b.replace('+', "-").replace('/', "_"));
        out.push(b);
    }
    out
}

/// What must not change when a request is refused.
async fn snapshot(v: &Vault) -> (Progress, usize, i64, usize) {
    let mut key_pairs = 0;
    for kind in [
        rekey_core::model::PrincipalKind::User,
        rekey_core::model::PrincipalKind::Role,
        rekey_core::model::PrincipalKind::Service,
    ] {
        for p in v.principals_of_kind(kind).await.unwrap() {
            key_pairs += v.key_pairs(p.id).await.unwrap().len();
        }
    }
    (
        v.progress().await.unwrap(),
        v.audit_events(0, 1_000_000).await.unwrap().len(),
        v.migration().await.unwrap().version,
        key_pairs,
    )
}

/// A signed bundle with its legacy-key signature for `principal` replaced
/// by one made with `key`.
fn resigned(bytes: &[u8], principal: PrincipalId, key: &LegacyRsaPrivateKey) -> Vec<u8> {
    let body = SignedBundle::parse(bytes).unwrap().body().to_vec();
    let legacy = SignatureKind::LegacyKey.to_byte();
    let mut replaced = 0;
    let out = support::with_signatures(bytes, |sigs| {
        for s in sigs
            .iter_mut()
            .filter(|s| s.0 == principal && s.1 == legacy)
        {
            s.2 = key
                .sign_pss(&signed_message(&body, SignatureKind::LegacyKey, principal))
                .unwrap();
            replaced += 1;
        }
    });
    assert_eq!(replaced, 1);
    assert!(SignedBundle::parse(&out).is_ok());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_are_refused_write_nothing_and_no_secret_reaches_the_log() {
    let dir = std::env::temp_dir().join(format!("rekey-security-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("vault.db").display());
    let keys = dir.join("keys");
    let engine = Engine::init(&url, Some(KeyDir::open(&keys).unwrap()), "test")
        .await
        .unwrap();
    engine.begin_preparation().await.unwrap();
    let spec = DemoSpec {
        users: 4,
        roles: 1,
        records: 40,
        rsa_bits: 2048,
        seed: 13,
        with_problems: false,
        kdf: rekey_demo::KdfParams::LIGHT,
    };
    let demo = generate(&spec, &mut KeySource::preset(fixture_keys()), &|_, _, _| {}).unwrap();
    demo.install(&engine).await.unwrap();
    engine
        .backup_certificates_with(
            &dir.join("certificates.age"),
            &Passphrase::new("security test passphrase".into()),
            &BackupOptions {
                work_factor: Some(10),
                ..BackupOptions::default()
            },
        )
        .await
        .unwrap();
    let creds = demo.credentials.clone();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rekey-server"))
        .args(["--db", &url])
        .env("RUST_LOG", "debug")
        .arg("--key-dir")
        .arg(&keys)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .args(["--name", &rekey_engine::host_name()])
        .args(["--max-bundle-bytes", &MAX_BUNDLE.to_string()])
        .args(["--max-body-bytes", &MAX_BODY.to_string()])
        .env("REKEY_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let anon = HttpClient::new(&base).unwrap().expect_vault(creds.vault);
    let admin = anon.clone().with_admin_token(TOKEN);
    let deadline = Instant::now() + Duration::from_secs(30);
    while anon.status().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let vault = Vault::open(&url).await.unwrap();
    let v = &vault;
    let mut refusals = Vec::new();
    // One request that must be refused with `expected` and change nothing.
    macro_rules! refused {
        ($what:expr, $expected:expr, $client:expr, $method:expr, $path:expr, $body:expr, $admin:expr) => {{
            let before = snapshot(v).await;
            let (status, bytes) = $client.raw($method, $path, $body, $admin).await.unwrap();
            assert_eq!(
                status,
                $expected,
                "{}: {}",
                $what,
                String::from_utf8_lossy(&bytes)
            );
            assert_eq!(snapshot(v).await, before, "{} wrote something", $what);
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            support::assert_documented(status, &body);
            refusals.push(format!("{} -> {}", $what, status.as_u16()));
        }};
    }
    let start_body = |w: &str| {
        Some((
            "application/json",
            serde_json::json!({ "code_word": w })
                .to_string()
                .into_bytes(),
        ))
    };

    // Admin requests: no token, wrong tokens, another scheme.
    refused!(
        "start without a token",
        StatusCode::UNAUTHORIZED,
        anon,
        Method::POST,
        "/v1/admin/start",
        start_body("Start"),
        false
    );
    for wrong in WRONG_TOKENS {
        let c = anon.clone().with_admin_token(wrong);
        refused!(
            "start with a wrong token",
            StatusCode::UNAUTHORIZED,
            c,
            Method::POST,
            "/v1/admin/start",
            start_body("Start"),
            true
        );
        refused!(
            "abort with a wrong token",
            StatusCode::UNAUTHORIZED,
            c,
            Method::POST,
            "/v1/admin/abort",
            None,
            true
        );
    }
    // The code word in another case, or with spaces.
    for w in [
        "start", "START", "sTART", " Start", "Start ", "Start\n", "Starť",
    ] {
        refused!(
            format!("code word {w:?}"),
            StatusCode::BAD_REQUEST,
            admin,
            Method::POST,
            "/v1/admin/start",
            start_body(w),
            true
        );
    }
    // Over the body limit, with and without the token.
    let huge = format!(
        "{{\"code_word\":\"Start\",\"pad\":\"{}\"}}",
        "x".repeat(MAX_BODY)
    );
    refused!(
        "start body over the limit",
        StatusCode::PAYLOAD_TOO_LARGE,
        admin,
        Method::POST,
        "/v1/admin/start",
        Some(("application/json", huge.clone().into_bytes())),
        true
    );
    let first_status = anon
        .raw(
            Method::POST,
            "/v1/admin/start",
            Some(("application/json", huge.into_bytes())),
            false,
        )
        .await
        .unwrap()
        .0;
    assert!(
        first_status == StatusCode::UNAUTHORIZED || first_status == StatusCode::PAYLOAD_TOO_LARGE
    );

    // Start for real.
    let started = admin.start("Start").await.unwrap();
    assert_eq!(
        started.phase,
        rekey_core::model::Phase::UserPhase,
        "{started:?}"
    );

    let names: Vec<String> = creds.users.keys().cloned().collect();
    let (a, b) = (&creds.users[&names[0]], &creds.users[&names[1]]);
    let opts = BuildOptions { threads: Some(1) };
    // Each user's client logs in; the session tokens are secrets too.
    let mut sessions = std::collections::BTreeMap::new();
    for n in &names {
        sessions.insert(creds.users[n].id, support::login(&anon, &creds, n).await);
    }
    let (a_session, b_session) = (sessions[&a.id].clone(), sessions[&b.id].clone());
    let kdf = creds.kdf;
    let build = |id: PrincipalId, pw: String| {
        let client = sessions[&id].clone();
        async move {
            let package = client.package(id).await.unwrap();
            let master = master_secret(&pw, creds.vault, id, &kdf).unwrap();
            build_bundle(&package, Unlock::MasterSecret(&master), opts)
                .unwrap()
                .bundle
                .encode()
        }
    };
    // B's legacy private key, as B's own client unlocks it.
    let b_package = b_session.package(b.id).await.unwrap();
    let b_master = master_secret(&b.password, creds.vault, b.id, &kdf).unwrap();
    let b_kek = Kek::derive(&b_master, creds.vault, b.id).unwrap();
    let b_der = unwrap_private_key(
        &b_kek,
        &KeyBinding {
            vault: creds.vault,
            owner: b.id,
            key_pair: b_package.legacy_key.id,
        },
        b_package.legacy_key.wrapped_private.as_ref().unwrap(),
    )
    .unwrap();
    let b_key = LegacyRsaPrivateKey::from_pkcs8_der(b_der.dangerous_as_bytes()).unwrap();

    // The package holds the password-wrapped legacy key: no session, a
    // forged or another account's session get nothing.
    let a_package = format!("/v1/principals/{}/package", a.id);
    refused!(
        "A's package without a session",
        StatusCode::UNAUTHORIZED,
        anon,
        Method::GET,
        &a_package,
        None,
        false
    );
    refused!(
        "A's package with B's session",
        StatusCode::FORBIDDEN,
        b_session,
        Method::GET,
        &a_package,
        None,
        false
    );
    let a_token = a_session.session_token().unwrap().to_owned();
    let mut forged_token = hex::decode(&a_token).unwrap();
    forged_token[20] ^= 1; // a later expiry
    let forged_session = anon.clone().with_session(&hex::encode(&forged_token));
    refused!(
        "A's package with a forged session",
        StatusCode::UNAUTHORIZED,
        forged_session,
        Method::GET,
        &a_package,
        None,
        false
    );
    // B's token with A's id written in: the MAC binds the account.
    let mut swapped = hex::decode(b_session.session_token().unwrap()).unwrap();
    swapped[..16].copy_from_slice(&a.id.to_bytes());
    let swapped = anon.clone().with_session(&hex::encode(&swapped));
    refused!(
        "A's package with B's token renamed",
        StatusCode::UNAUTHORIZED,
        swapped,
        Method::GET,
        &a_package,
        None,
        false
    );
    // A wrong authenticator, and an account that does not exist: the same
    // answer.
    let login_body = |p: PrincipalId, authenticator: [u8; 32]| {
        Some((
            "application/json",
            serde_json::json!({ "principal": p, "authenticator": hex::encode(authenticator) })
                .to_string()
                .into_bytes(),
        ))
    };
    let (s1, wrong_login) = anon
        .raw(
            Method::POST,
            "/v1/session",
            login_body(a.id, [9; 32]),
            false,
        )
        .await
        .unwrap();
    let (s2, nobody_login) = anon
        .raw(
            Method::POST,
            "/v1/session",
            login_body(PrincipalId::random(), [9; 32]),
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        (s1, s2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        wrong_login, nobody_login,
        "an unknown account is not told apart"
    );
    refusals.push("a wrong authenticator, an unknown account -> 401 (same body)".to_owned());

    // A's bundle, its legacy signature made with B's key.
    let a_bundle = build(a.id, a.password.clone()).await;
    let forged = resigned(&a_bundle, a.id, &b_key);
    refused!(
        "A's bundle signed with B's legacy key",
        StatusCode::FORBIDDEN,
        a_session,
        Method::POST,
        &format!("/v1/principals/{}/bundle", a.id),
        Some((OCTETS, forged.clone())),
        false
    );
    // ... and posted as B.
    refused!(
        "A's bundle signed with B's key, posted at B",
        StatusCode::FORBIDDEN,
        b_session,
        Method::POST,
        &format!("/v1/principals/{}/bundle", b.id),
        Some((OCTETS, forged)),
        false
    );
    // Over the bundle limit.
    refused!(
        "bundle over the limit",
        StatusCode::PAYLOAD_TOO_LARGE,
        a_session,
        Method::POST,
        &format!("/v1/principals/{}/bundle", a.id),
        Some((OCTETS, vec![7u8; MAX_BUNDLE + 1])),
        false
    );
    // The genuine bundle applies once; replayed, it conflicts.
    a_session.submit(a.id, a_bundle.clone()).await.unwrap();
    refused!(
        "A's bundle replayed",
        StatusCode::CONFLICT,
        a_session,
        Method::POST,
        &format!("/v1/principals/{}/bundle", a.id),
        Some((OCTETS, a_bundle.clone())),
        false
    );
    // Abort, start a new run: the old run's bundle is refused.
    admin.abort().await.unwrap();
    admin.start("Start").await.unwrap();
    refused!(
        "A's bundle of an aborted run replayed",
        StatusCode::CONFLICT,
        a_session,
        Method::POST,
        &format!("/v1/principals/{}/bundle", a.id),
        Some((OCTETS, a_bundle)),
        false
    );

    // Everyone migrates normally; a wrong password cannot open the
    // legacy key (refused client-side, even with a session).
    for n in &names {
        let u = &creds.users[n];
        let wrong = master_secret("not the password", creds.vault, u.id, &kdf).unwrap();
        let quiet = || std::sync::Arc::new(|_, _| {});
        assert!(
            rekey_client::migrate(&sessions[&u.id], u.id, wrong, opts, quiet())
                .await
                .is_err()
        );
        let master = master_secret(&u.password, creds.vault, u.id, &kdf).unwrap();
        match rekey_client::migrate(&sessions[&u.id], u.id, master, opts, quiet()).await {
            Ok(_) => {}
            Err(e) if e.code() == Some("already_migrated") => {}
            Err(e) => panic!("{n}: {e}"),
        }
    }
    admin.finalize().await.unwrap();
    assert!(
        Reader::new(&engine)
            .verify(&creds, &|_, _| {})
            .await
            .unwrap()
            .passed()
    );

    // Guessing a password online: after 5 failures the account is refused
    // with 429 and Retry-After before any password work, even with the
    // right authenticator; other accounts still log in.
    let d = &creds.users[&names[2]];
    for _ in 0..5 {
        let (s, _) = anon
            .raw(
                Method::POST,
                "/v1/session",
                login_body(d.id, [1; 32]),
                false,
            )
            .await
            .unwrap();
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let d_master = master_secret(&d.password, creds.vault, d.id, &kdf).unwrap();
    let d_auth =
        rekey_core::auth::LoginAuthenticator::derive(&d_master, creds.vault, d.id).unwrap();
    let err = anon.open_session(d.id, &d_auth).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(429), Some("too_many_attempts")),
        "{err}"
    );
    let (s, answer) = anon
        .raw(
            Method::POST,
            "/v1/session",
            login_body(d.id, *d_auth.dangerous_as_bytes()),
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    support::login(&anon, &creds, &names[0]).await;
    refusals.push("a sixth login of an account within 15 minutes -> 429".to_owned());

    // Stop the server and read everything it wrote.
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("bundle refused"), "the refusals are logged");
    assert!(text.contains("admin request with a wrong token"), "{text}");

    // Every secret, in every form.
    let mut secrets: Vec<(String, Vec<String>)> = vec![
        ("admin token".into(), vec![TOKEN.to_owned()]),
        (
            "wrong tokens".into(),
            WRONG_TOKENS.iter().map(|t| (*t).to_owned()).collect(),
        ),
    ];
    let mut new_keys = 0;
    for (n, u) in &creds.users {
        secrets.push((format!("{n}'s password"), vec![u.password.clone()]));
        // (The master secret's bytes are not reachable from outside
        // rekey-core; the KEK derived from it stands for it.)
        let master = master_secret(&u.password, creds.vault, u.id, &kdf).unwrap();
        let kek = Kek::derive(&master, creds.vault, u.id).unwrap();
        secrets.push((format!("{n}'s KEK"), forms(kek.dangerous_as_bytes(), 0)));
        let authenticator =
            rekey_core::auth::LoginAuthenticator::derive(&master, creds.vault, u.id).unwrap();
        secrets.push((
            format!("{n}'s login authenticator"),
            forms(authenticator.dangerous_as_bytes(), 0),
        ));
        let token = sessions[&u.id].session_token().unwrap();
        secrets.push((
            format!("{n}'s session token"),
            vec![token.to_owned(), token[48..].to_owned()],
        ));
        for kp in v.key_pairs(u.id).await.unwrap() {
            assert_eq!(kp.state, KeyState::Current);
            let scalar = unwrap_private_key(
                &kek,
                &KeyBinding {
                    vault: creds.vault,
                    owner: u.id,
                    key_pair: kp.id,
                },
                kp.wrapped_private_key.as_ref().unwrap(),
            )
            .unwrap();
            secrets.push((
                format!("{n}'s new private key"),
                forms(scalar.dangerous_as_bytes(), 0),
            ));
            new_keys += 1;
        }
    }
    // Legacy RSA keys (the private part of the DER, past the modulus) and
    // the server's key files.
    for (i, k) in fixture_keys().iter().enumerate() {
        secrets.push((
            format!("legacy RSA key {i}"),
            forms(k.dangerous_pkcs8_der(), 320),
        ));
    }
    for entry in std::fs::read_dir(&keys).unwrap() {
        let p = entry.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let f = if bytes.len() > 300 {
            forms(&bytes, 320)
        } else {
            forms(&bytes[1..], 0)
        };
        secrets.push((format!("key file {}", p.display()), f));
    }
    // The search itself finds what it looks for.
    assert_eq!(b64(b"foobar"), "Zm9vYmFy");
    assert_eq!(b64(b"fooba"), "Zm9vYmE");
    assert!(forms(b"\x01\x02", 0).contains(&"0102".to_owned()));
    let mut forms_checked = 0;
    for (what, fs) in &secrets {
        for f in fs {
            forms_checked += 1;
            assert!(
                !text.contains(f.as_str()),
                "{what} appears in the server log"
            );
        }
    }
    println!(
        "security: {} attacks refused with nothing written ({}); server log {} bytes, {} lines: \
         none of {} secret forms ({} secrets: passwords, KEKs, {new_keys} new and {} legacy private keys, key files, tokens) in it",
        refusals.len(),
        refusals.join("; "),
        text.len(),
        text.lines().count(),
        forms_checked,
        secrets.len(),
        fixture_keys().len()
    );
    std::fs::remove_dir_all(&dir).ok();
}
