//! The decoders of untrusted bytes on both sides of the API: every request
//! body the server takes (`rekey_server::routes::decode_*`, which the
//! handlers and the `request` fuzz target share) and the migration package
//! a client reads (`parse_package`, the `package` fuzz target).
//!
//! - Property tests: arbitrary bytes give a value or a 400 with a message
//!   and a hint (the package: a `PackageError`), never a panic; whatever
//!   decodes re-encodes to a body that decodes to the same value; mutated
//!   real bundles and packages never panic.
//! - The fuzz seeds of the `request`, `package`, `bundle` and `envelope`
//!   targets (`fuzz/seeds/<target>`) are real bodies taken from a demo
//!   vault served by rekey-server. `cargo xtask fuzz --write-seeds` writes
//!   them anew (the ignored test `write_fuzz_seeds`); every run checks that the
//!   committed ones still decode, so a format change cannot leave the
//!   fuzzer starting from stale bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a scenario test reads top to bottom; its steps are commented in place"
)]

mod support;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use hyper::Method;
use proptest::prelude::*;
use rekey_core::bundle::SignedBundle;
use rekey_core::bundle::package::{PackageError, PackageJson, parse_package};
use rekey_core::model::Resolution;
use rekey_core::{Envelope, PrincipalId};
use rekey_server::ServerError;
use rekey_server::routes::{
    RecordJson, RecordWrite, ResolveRequest, StartRequest, decode_bundle, decode_id,
    decode_record_write, decode_resolve, decode_session, decode_start,
};
use std::path::{Path, PathBuf};

/// The first byte of a `request` seed: which route's body follows (see
/// fuzz/fuzz_targets/request.rs).
const START: u8 = 0;
const RESOLVE: u8 = 1;
const RECORD: u8 = 2;
const BUNDLE: u8 = 3;
const ID: u8 = 4;
const SESSION: u8 = 5;

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target)
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(seeds_dir(target))
        .unwrap_or_else(|e| panic!("fuzz/seeds/{target}: {e}"))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A refusal as the client sees it: 400, a message, a hint, a JSON body.
fn assert_refused(e: ServerError) {
    assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e:?}");
    assert!(!e.to_string().is_empty());
    assert!(!e.hint().is_empty());
    assert_eq!(e.into_response().status(), StatusCode::BAD_REQUEST);
}

fn real_bundles() -> Vec<Vec<u8>> {
    seeds("bundle").into_iter().map(|(_, b)| b).collect()
}

fn real_packages() -> Vec<Vec<u8>> {
    seeds("package").into_iter().map(|(_, b)| b).collect()
}

#[test]
fn committed_fuzz_seeds_decode() {
    let request = seeds("request");
    let mut routes = std::collections::BTreeSet::new();
    for (name, bytes) in &request {
        let (&route, body) = bytes.split_first().expect(name);
        routes.insert(route);
        let ok = match route {
            START => decode_start(body).is_ok(),
            RESOLVE => decode_resolve(body).is_ok(),
            RECORD => decode_record_write(body).is_ok(),
            BUNDLE => decode_bundle(body).is_ok(),
            ID => decode_id::<PrincipalId>(std::str::from_utf8(body).unwrap(), "principal").is_ok(),
            SESSION => decode_session(body).is_ok(),
            other => panic!("{name}: no route {other}"),
        };
        assert!(ok, "fuzz/seeds/request/{name} no longer decodes");
    }
    assert_eq!(routes.len(), 6, "a request seed for every route");
    let bundles = seeds("bundle");
    assert!(!bundles.is_empty());
    for (name, bytes) in &bundles {
        let b = SignedBundle::parse(bytes).unwrap_or_else(|e| panic!("bundle/{name}: {e}"));
        assert!(!b.bundle().parts.is_empty(), "bundle/{name} has parts");
    }
    let envelopes = seeds("envelope");
    assert!(envelopes.len() >= 3);
    for (name, bytes) in &envelopes {
        Envelope::parse(bytes).unwrap_or_else(|e| panic!("envelope/{name}: {e}"));
    }
    let packages = seeds("package");
    assert!(!packages.is_empty());
    for (name, bytes) in &packages {
        let json: PackageJson = serde_json::from_slice(bytes).unwrap();
        parse_package(bytes, json.principal, Some(json.vault))
            .unwrap_or_else(|e| panic!("package/{name}: {e}"));
    }
}

/// Writes the seeds from a demo vault served on loopback: what a real
/// server answers (packages, records) and what a real client sends
/// (bundles), before and after the first user migrated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes fuzz/seeds anew: cargo xtask fuzz --write-seeds"]
async fn write_fuzz_seeds() {
    let h = support::Harness::new("fuzz-seeds").await;
    h.admin.start("Start").await.unwrap();
    let mut request: Vec<(String, Vec<u8>)> = Vec::new();
    let mut packages: Vec<(String, Vec<u8>)> = Vec::new();
    let mut bundles: Vec<(String, Vec<u8>)> = Vec::new();
    let mut envelopes: Vec<(String, Vec<u8>)> = Vec::new();
    let with = |route: u8, body: &[u8]| {
        let mut v = vec![route];
        v.extend_from_slice(body);
        v
    };
    request.push((
        "start".into(),
        with(
            START,
            &serde_json::to_vec(&StartRequest {
                code_word: "Start".into(),
                target_scheme: None,
            })
            .unwrap(),
        ),
    ));
    for r in [Resolution::Reshared, Resolution::WrittenOff] {
        let body = serde_json::to_vec(&ResolveRequest {
            resolution: r.as_str().into(),
        })
        .unwrap();
        request.push((format!("resolve-{}", r.as_str()), with(RESOLVE, &body)));
    }

    // The users whose package carries a role to migrate along go first, so
    // that the first bundle has a role part with holder grants.
    let mut names: Vec<(String, PrincipalId)> = h
        .creds
        .users
        .iter()
        .map(|(n, u)| (n.clone(), u.id))
        .collect();
    let mut raw_packages = Vec::new();
    for (name, id) in &names {
        let path = format!("/v1/principals/{id}/package");
        let (s, bytes) = h.users[name]
            .raw(Method::GET, &path, None, false)
            .await
            .unwrap();
        assert_eq!(s, StatusCode::OK);
        raw_packages.push((*id, bytes.to_vec()));
    }
    let candidates = |id: PrincipalId| {
        let (_, b) = raw_packages.iter().find(|(p, _)| *p == id).unwrap();
        serde_json::from_slice::<PackageJson>(b)
            .unwrap()
            .candidates
            .len()
    };
    names.sort_by_key(|(_, id)| std::cmp::Reverse(candidates(*id)));
    let (first_name, first) = names[0].clone();
    assert!(candidates(first) > 0, "a demo user migrates a role along");

    let (_, package) = raw_packages.iter().find(|(p, _)| *p == first).unwrap();
    packages.push(("with-role".into(), package.clone()));
    let json: PackageJson = serde_json::from_slice(package).unwrap();
    request.push((
        "principal-id".into(),
        with(ID, json.principal.to_string().as_bytes()),
    ));
    for (i, g) in json.pending_grants.iter().take(3).enumerate() {
        envelopes.push((
            format!("legacy-grant-{i}"),
            hex::decode(&g.envelope).unwrap(),
        ));
    }
    if let Some(w) = &json.legacy_key.wrapped_private {
        envelopes.push(("legacy-wrapped-key".into(), hex::decode(w).unwrap()));
    }
    // A record, as the record API answers it, written back.
    let record = json
        .pending_grants
        .iter()
        .find_map(|g| match g.subject {
            rekey_core::Subject::RecordKey(r) => Some(r),
            rekey_core::Subject::PrivateKey(_) => None,
        })
        .expect("a record grant");
    let (s, bytes) = h
        .admin
        .raw(Method::GET, &format!("/v1/records/{record}"), None, true)
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    let rec: RecordJson = serde_json::from_slice(&bytes).unwrap();
    let body = serde_json::to_vec(&RecordWrite {
        ciphertext: rec.ciphertext,
    })
    .unwrap();
    request.push(("record-write".into(), with(RECORD, &body)));
    // A login as its client sends it (the authenticator is the demo
    // user's real one; the seed holds no password).
    let u = &h.creds.users[&first_name];
    let master =
        rekey_demo::password::master_secret(&u.password, h.creds.vault, u.id, &h.creds.kdf)
            .unwrap();
    let authenticator =
        rekey_core::auth::LoginAuthenticator::derive(&master, h.creds.vault, u.id).unwrap();
    let body = serde_json::json!({
        "principal": u.id,
        "authenticator": hex::encode(authenticator.dangerous_as_bytes()),
    });
    request.push(("session".into(), with(SESSION, body.to_string().as_bytes())));

    // The first user's bundle (own part and the role's), submitted; then a
    // second user's (own part only, the role's holders now migrated).
    let (_, bundle) = h.build(&first_name).await;
    let signed = SignedBundle::parse(&bundle).unwrap();
    let parts = &signed.bundle().parts;
    if let Some(env) = parts[0].new_key_pair.wrapped_private.as_ref() {
        envelopes.push(("kek-wrapped-key".into(), env.as_bytes().to_vec()));
    }
    if let Some(g) = parts.iter().flat_map(|p| &p.grants).next() {
        envelopes.push(("hpke-grant".into(), g.envelope.as_bytes().to_vec()));
    }
    if let Some(g) = parts.iter().flat_map(|p| &p.holder_grants).next() {
        envelopes.push(("holder-grant".into(), g.envelope.as_bytes().to_vec()));
    }
    bundles.push(("user-and-role".into(), bundle.clone()));
    request.push(("bundle-user-and-role".into(), with(BUNDLE, &bundle)));
    let (s, v) = h
        .raw(
            Method::POST,
            &format!("/v1/principals/{first}/bundle"),
            Some(("application/octet-stream", bundle)),
            support::Who::User(&first_name),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (second_name, second) = names[1].clone();
    let (s, package) = h.users[&second_name]
        .raw(
            Method::GET,
            &format!("/v1/principals/{second}/package"),
            None,
            false,
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    packages.push(("after-role-migrated".into(), package.to_vec()));
    let (_, bundle) = h.build(&second_name).await;
    bundles.push(("user-only".into(), bundle.clone()));
    request.push(("bundle-user-only".into(), with(BUNDLE, &bundle)));
    h.stop().await;

    for (target, files) in [
        ("request", request),
        ("package", packages),
        ("bundle", bundles),
        ("envelope", envelopes),
    ] {
        let dir = seeds_dir(target);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

fn json_strategy() -> impl Strategy<Value = Vec<u8>> {
    // Bytes that are often JSON of roughly the right shape.
    let key = prop_oneof![
        Just("code_word".to_owned()),
        Just("resolution".to_owned()),
        Just("ciphertext".to_owned()),
        Just("principal".to_owned()),
        Just("authenticator".to_owned()),
        "[a-z_]{0,12}",
    ];
    let value = prop_oneof![
        Just(serde_json::json!("Start")),
        Just(serde_json::json!("reshared")),
        Just(serde_json::json!("written_off")),
        "[0-9a-fA-F]{0,40}".prop_map(serde_json::Value::from),
        "[0-9a-f]{64}".prop_map(serde_json::Value::from),
        Just(serde_json::json!("00000000-0000-4000-8000-000000000000")),
        any::<String>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
        Just(serde_json::json!([])),
    ];
    prop_oneof![
        proptest::collection::btree_map(key, value, 0..3)
            .prop_map(|m| serde_json::to_vec(&m).unwrap()),
        proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn json_bodies_decode_or_are_refused(body in json_strategy()) {
        match decode_start(&body) {
            Ok(req) => {
                let again = serde_json::to_vec(&req).unwrap();
                prop_assert_eq!(decode_start(&again).unwrap().code_word, req.code_word);
            }
            Err(e) => assert_refused(e),
        }
        match decode_resolve(&body) {
            Ok(r) => {
                prop_assert!(matches!(r, Resolution::Reshared | Resolution::WrittenOff));
                let again = serde_json::json!({ "resolution": r.as_str() }).to_string();
                prop_assert_eq!(decode_resolve(again.as_bytes()).ok(), Some(r));
            }
            Err(e) => assert_refused(e),
        }
        match decode_record_write(&body) {
            Ok(ct) => {
                let again = serde_json::to_vec(&RecordWrite { ciphertext: hex::encode(&ct) }).unwrap();
                prop_assert_eq!(decode_record_write(&again).ok(), Some(ct));
            }
            Err(e) => assert_refused(e),
        }
        match decode_session(&body) {
            Ok((p, a)) => {
                let again = serde_json::json!({
                    "principal": p,
                    "authenticator": hex::encode(a.dangerous_as_bytes()),
                })
                .to_string();
                let (p2, a2) = decode_session(again.as_bytes()).unwrap();
                prop_assert_eq!(p2, p);
                prop_assert_eq!(a2.dangerous_as_bytes(), a.dangerous_as_bytes());
            }
            Err(e) => assert_refused(e),
        }
    }

    #[test]
    fn session_bodies_with_the_right_shape_decode_exactly(
        id in any::<[u8; 16]>(),
        authenticator in any::<[u8; 32]>(),
        short in proptest::collection::vec(any::<u8>(), 0..31),
    ) {
        let p = PrincipalId::from_bytes(id);
        let body = serde_json::json!({ "principal": p, "authenticator": hex::encode(authenticator) });
        let (p2, a) = decode_session(body.to_string().as_bytes()).unwrap();
        prop_assert_eq!(p2, p);
        prop_assert_eq!(a.dangerous_as_bytes(), &authenticator);
        let body = serde_json::json!({ "principal": p, "authenticator": hex::encode(&short) });
        prop_assert!(decode_session(body.to_string().as_bytes()).is_err());
    }

    #[test]
    fn valid_bodies_round_trip(code_word in any::<String>(), ciphertext in proptest::collection::vec(any::<u8>(), 0..256)) {
        let body = serde_json::to_vec(&StartRequest { code_word: code_word.clone(), target_scheme: None }).unwrap();
        prop_assert_eq!(decode_start(&body).unwrap().code_word, code_word.clone());
        for target in rekey_core::Target::ALL {
            let body = serde_json::to_vec(&StartRequest { code_word: code_word.clone(), target_scheme: Some(target) }).unwrap();
            prop_assert_eq!(decode_start(&body).unwrap().target_scheme, Some(target));
        }
        let unknown = serde_json::json!({ "code_word": code_word.clone(), "target_scheme": "hpke-x448" });
        prop_assert!(decode_start(unknown.to_string().as_bytes()).is_err());
        let body = serde_json::to_vec(&ResolveRequest { resolution: code_word.clone() }).unwrap();
        prop_assert_eq!(
            decode_resolve(&body).is_ok(),
            code_word == "reshared" || code_word == "written_off"
        );
        let body = serde_json::to_vec(&RecordWrite { ciphertext: hex::encode(&ciphertext) }).unwrap();
        prop_assert_eq!(decode_record_write(&body).unwrap(), ciphertext);
        let body = serde_json::to_vec(&RecordWrite { ciphertext: format!("{code_word}g") }).unwrap();
        prop_assert!(decode_record_write(&body).is_err());
    }

    #[test]
    fn ids_decode_or_are_refused(text in any::<String>(), bytes in any::<[u8; 16]>()) {
        match decode_id::<PrincipalId>(&text, "principal") {
            Ok(id) => prop_assert_eq!(decode_id::<PrincipalId>(&id.to_string(), "principal").ok(), Some(id)),
            Err(e) => assert_refused(e),
        }
        let id = PrincipalId::from_bytes(bytes);
        prop_assert_eq!(decode_id::<PrincipalId>(&id.to_string(), "principal").ok(), Some(id));
    }

    #[test]
    fn arbitrary_bundle_bodies_are_refused(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        match decode_bundle(&body) {
            Ok(b) => prop_assert_eq!(b.encode(), body),
            Err(e) => assert_refused(e),
        }
    }

    #[test]
    fn mutated_real_bundles_decode_or_are_refused(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let bundles = real_bundles();
        let mut body = bundles[which.index(bundles.len())].clone();
        // The untouched seed round-trips exactly.
        prop_assert_eq!(decode_bundle(&body).unwrap().encode(), body.clone());
        for (at, byte) in &edits {
            let i = at.index(body.len());
            body[i] ^= byte | 1;
        }
        if truncate {
            body.truncate(cut.index(body.len()));
        }
        match decode_bundle(&body) {
            Ok(b) => prop_assert_eq!(b.encode(), body),
            Err(e) => assert_refused(e),
        }
    }

    #[test]
    fn arbitrary_packages_are_refused(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let r = parse_package(&body, PrincipalId::from_bytes([0; 16]), None);
        prop_assert!(matches!(r, Err(PackageError::Json(_))), "{:?}", r);
    }

    #[test]
    fn mutated_real_packages_parse_or_are_refused(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let packages = real_packages();
        let mut body = packages[which.index(packages.len())].clone();
        let json: PackageJson = serde_json::from_slice(&body).unwrap();
        let (principal, vault) = (json.principal, json.vault);
        // The untouched seed round-trips through PackageJson.
        let p = parse_package(&body, principal, Some(vault)).unwrap();
        let again = serde_json::to_vec(&PackageJson::from(&p)).unwrap();
        prop_assert_eq!(parse_package(&again, principal, Some(vault)), Ok(p.clone()));
        for (at, byte) in &edits {
            let i = at.index(body.len());
            body[i] = *byte;
        }
        match parse_package(&body, principal, Some(vault)) {
            Ok(p) => {
                let again = serde_json::to_vec(&PackageJson::from(&p)).unwrap();
                prop_assert_eq!(parse_package(&again, principal, Some(vault)), Ok(p.clone()));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
