//! `/openapi.json` describes what the server really sends: a whole
//! migration runs over HTTP (status, preflight, start, client KDF, session,
//! every user's package, bundle, role checks and receipts, finalize, the
//! record API, refusals), and every JSON answer is validated against the
//! schema the document gives for its route and status. Each request body
//! sent is validated against the document's request schema too.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::too_many_lines, reason = "one migration, read top to bottom")]

mod support;

use hyper::{Method, StatusCode};
use rekey_core::confirm::{ReceiptJson, confirm_role, parse_role_checks};
use rekey_demo::password::master_secret;
use rekey_demo::reader::Reader;
use serde_json::{Value, json};
use support::{Harness, Who};

/// The document, and how many answers were checked against it.
struct Spec {
    doc: Value,
    checked: usize,
}

impl Spec {
    /// A validator for the schema at `pointer` in the document (its
    /// `$ref`s resolve against the document's components).
    fn validator(&self, pointer: &str) -> jsonschema::Validator {
        let schema = self
            .doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("the document has no {pointer}"));
        let wrapped = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [schema],
            "components": self.doc["components"],
        });
        jsonschema::draft202012::new(&wrapped)
            .unwrap_or_else(|e| panic!("{pointer} is not a valid schema: {e}"))
    }

    fn path_pointer(template: &str) -> String {
        template.replace('~', "~0").replace('/', "~1")
    }

    /// Asserts `body`, answered with `status` by `method template`, fits
    /// the document.
    fn answer(&mut self, method: &Method, template: &str, status: StatusCode, body: &Value) {
        let pointer = format!(
            "/paths/{}/{}/responses/{}/content/application~1json/schema",
            Self::path_pointer(template),
            method.as_str().to_ascii_lowercase(),
            status.as_u16()
        );
        let v = self.validator(&pointer);
        let errors: Vec<String> = v.iter_errors(body).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{method} {template} {status} does not fit the document: {errors:?}\n{body}"
        );
        self.checked += 1;
    }

    /// Asserts a JSON request body fits the route's request schema.
    fn request(&self, method: &Method, template: &str, body: &Value) {
        let pointer = format!(
            "/paths/{}/{}/requestBody/content/application~1json/schema",
            Self::path_pointer(template),
            method.as_str().to_ascii_lowercase(),
        );
        let v = self.validator(&pointer);
        assert!(v.is_valid(body), "{method} {template}: request {body}");
    }
}

/// Sends a request to route `template` (its one path parameter, if any,
/// set to `param`) and checks the answer against the document.
async fn call(
    h: &Harness,
    spec: &mut Spec,
    method: Method,
    (template, param): (&str, &str),
    body: Option<(&str, Vec<u8>)>,
    who: Who<'_>,
) -> (StatusCode, Value) {
    let path = template.replace("{id}", param).replace("{name}", param);
    let (status, v) = h.raw(method.clone(), &path, body, who).await;
    spec.answer(&method, template, status, &v);
    (status, v)
}

fn json_body(v: &Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", serde_json::to_vec(v).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_a_migration_fits_the_openapi_document() {
    let h = Harness::new("openapi").await;
    let (status, doc) = h.raw(Method::GET, "/openapi.json", None, Who::Anon).await;
    assert_eq!(status, StatusCode::OK);
    let mut spec = Spec { doc, checked: 0 };
    let get = Method::GET;
    let post = Method::POST;

    for p in ["/health", "/ready", "/v1/migration/status"] {
        let (s, _) = call(&h, &mut spec, get.clone(), (p, ""), None, Who::Anon).await;
        assert_eq!(s, StatusCode::OK, "{p}");
    }
    let p = "/v1/admin/status";
    call(&h, &mut spec, get.clone(), (p, ""), None, Who::Admin).await;
    let (s, _) = call(&h, &mut spec, get.clone(), (p, ""), None, Who::Anon).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let p = "/v1/admin/preflight";
    let (s, _) = call(&h, &mut spec, post.clone(), (p, ""), None, Who::Admin).await;
    assert_eq!(s, StatusCode::OK);
    let (s, kdf) = h.raw(get.clone(), "/v1/client-kdf", None, Who::Anon).await;
    assert_eq!(s, StatusCode::OK);
    assert!(kdf.is_object(), "{kdf}");

    // A refused start (wrong code word), then the start.
    let p = "/v1/admin/start";
    let wrong = json!({ "code_word": "start" });
    spec.request(&post, p, &wrong);
    let (s, _) = call(
        &h,
        &mut spec,
        post.clone(),
        (p, ""),
        json_body(&wrong),
        Who::Admin,
    )
    .await;
    assert_eq!(s.as_u16() / 100, 4);
    let start = json!({ "code_word": "Start" });
    spec.request(&post, p, &start);
    let (s, _) = call(
        &h,
        &mut spec,
        post.clone(),
        (p, ""),
        json_body(&start),
        Who::Admin,
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    // Sessions: a wrong authenticator, then a right one.
    let (name, u) = h.creds.users.iter().next().unwrap();
    let kdf = rekey_demo::KdfParams::from_json(&kdf.to_string()).unwrap();
    let master = master_secret(&u.password, h.creds.vault, u.id, &kdf).unwrap();
    let authenticator =
        rekey_core::auth::LoginAuthenticator::derive(&master, h.creds.vault, u.id).unwrap();
    let p = "/v1/session";
    let bad = json!({ "principal": u.id, "authenticator": "00".repeat(32) });
    spec.request(&post, p, &bad);
    let (s, _) = call(
        &h,
        &mut spec,
        post.clone(),
        (p, ""),
        json_body(&bad),
        Who::Anon,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{name}");
    let good = json!({
        "principal": u.id,
        "authenticator": hex::encode(authenticator.dangerous_as_bytes()),
    });
    spec.request(&post, p, &good);
    let (s, _) = call(
        &h,
        &mut spec,
        post.clone(),
        (p, ""),
        json_body(&good),
        Who::Anon,
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    // Every user: package, bundle, role checks and, where there are any,
    // the receipts.
    let mut receipts = 0;
    // The package's published JSON Schema (docs/schemas/) holds too.
    let published: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/schemas/package.schema.json")).unwrap();
    let published = jsonschema::draft202012::new(&published).unwrap();
    for (name, u) in &h.creds.users {
        let id = u.id.to_string();
        let t = "/v1/principals/{id}/package";
        let (s, package) = call(&h, &mut spec, get.clone(), (t, &id), None, Who::User(name)).await;
        assert_eq!(s, StatusCode::OK, "{name}");
        let errors: Vec<String> = published
            .iter_errors(&package)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "package.schema.json: {errors:?}");
        let (_, bytes) = h.build(name).await;
        let t = "/v1/principals/{id}/bundle";
        let body = Some(("application/octet-stream", bytes));
        let (s, _) = call(&h, &mut spec, post.clone(), (t, &id), body, Who::User(name)).await;
        assert_eq!(s, StatusCode::OK, "{name}");
        let t = "/v1/principals/{id}/role-checks";
        let (s, checks) = call(&h, &mut spec, get.clone(), (t, &id), None, Who::User(name)).await;
        assert_eq!(s, StatusCode::OK, "{name}");
        let master = master_secret(&u.password, h.creds.vault, u.id, &kdf).unwrap();
        let bytes = serde_json::to_vec(&checks).unwrap();
        for check in parse_role_checks(&bytes, u.id, Some(h.creds.vault)).unwrap() {
            let receipt = ReceiptJson::from(&confirm_role(&check, &master).unwrap());
            let body = serde_json::to_value(&receipt).unwrap();
            let t = "/v1/principals/{id}/role-receipts";
            spec.request(&post, t, &body);
            let (s, _) = call(
                &h,
                &mut spec,
                post.clone(),
                (t, &id),
                json_body(&body),
                Who::User(name),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{name}");
            receipts += 1;
        }
        // Refusals: a migrated account's package, another account's.
        let t = "/v1/principals/{id}/package";
        let (s, _) = call(&h, &mut spec, get.clone(), (t, &id), None, Who::User(name)).await;
        assert_eq!(s, StatusCode::CONFLICT, "{name}");
    }
    assert!(receipts > 0, "no member confirmed a role");
    let p = "/v1/migration/status";
    let (_, status) = call(&h, &mut spec, get.clone(), (p, ""), None, Who::Anon).await;
    assert_eq!(
        status["progress"]["unconfirmed_role_members"], 0,
        "{status}"
    );

    // The record API, an unknown route's refusal, finalize.
    let record = h.vault.records_page(None, 1).await.unwrap().remove(0);
    let t = "/v1/records/{id}";
    let path = record.id.to_string();
    let (s, _) = call(&h, &mut spec, get.clone(), (t, &path), None, Who::Admin).await;
    assert_eq!(s, StatusCode::OK);
    let p = "/v1/admin/finalize";
    let (s, _) = call(&h, &mut spec, post.clone(), (p, ""), None, Who::Admin).await;
    assert_eq!(s, StatusCode::OK);
    let write = json!({ "ciphertext": hex::encode(&record.ciphertext) });
    spec.request(&Method::PUT, t, &write);
    let (s, _) = call(
        &h,
        &mut spec,
        Method::PUT,
        (t, &path),
        json_body(&write),
        Who::Admin,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let p = "/v1/admin/abort";
    let (s, _) = call(&h, &mut spec, post.clone(), (p, ""), None, Who::Admin).await;
    assert_eq!(s.as_u16() / 100, 4, "abort after completion is refused");
    assert!(spec.checked >= 20, "{} answers checked", spec.checked);
    h.stop().await;
}

/// The administrator's remedies for users that can never log in, over
/// HTTP: each answer as documented (schema, status, code), refusals
/// writing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_and_restore_over_http_answer_as_documented() {
    use rekey_core::model::{AuditEvent, Timestamp, UserStatus};
    let h = Harness::new("openapi-users").await;
    let (_, doc) = h.raw(Method::GET, "/openapi.json", None, Who::Anon).await;
    let mut spec = Spec { doc, checked: 0 };
    let post = Method::POST;
    let (name, u) = h.creds.users.iter().next().unwrap();
    let deactivate = || async {
        h.vault
            .set_user_status(
                u.id,
                UserStatus::Deactivated,
                &AuditEvent {
                    at: Timestamp::now(),
                    actor: "vault".to_owned(),
                    action: "deactivated".to_owned(),
                    details: "{}".to_owned(),
                },
            )
            .await
            .unwrap();
    };
    let restore_t = "/v1/admin/users/{name}/restore";
    let purge_t = "/v1/admin/users/{name}/purge";
    let (restore, purge) = (
        restore_t.replace("{name}", name),
        purge_t.replace("{name}", name),
    );

    let nobody = "/v1/admin/users/nobody.0000/restore";
    h.refused(
        StatusCode::NOT_FOUND,
        post.clone(),
        nobody,
        None,
        Who::Admin,
    )
    .await;
    h.refused(
        StatusCode::UNAUTHORIZED,
        post.clone(),
        &restore,
        None,
        Who::Anon,
    )
    .await;
    // An active user is neither restored nor purged.
    let (s, body) = call(
        &h,
        &mut spec,
        post.clone(),
        (purge_t, name),
        None,
        Who::Admin,
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("wrong_user_status"))
    );
    deactivate().await;
    let (s, body) = call(
        &h,
        &mut spec,
        post.clone(),
        (restore_t, name),
        None,
        Who::Admin,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        h.vault.principal(u.id).await.unwrap().unwrap().status,
        UserStatus::Active
    );
    deactivate().await;
    let orphans = h.vault.sole_reader_records(u.id).await.unwrap();
    if !orphans.is_empty() {
        let msg = h
            .refused(StatusCode::CONFLICT, post.clone(), &purge, None, Who::Admin)
            .await;
        assert!(msg.contains("nobody else can read"), "{msg}");
    }
    let force = json!({ "force": true });
    spec.request(&post, purge_t, &force);
    let (s, report) = call(
        &h,
        &mut spec,
        post.clone(),
        (purge_t, name),
        json_body(&force),
        Who::Admin,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(
        report["orphaned_records"].as_array().unwrap().len(),
        orphans.len()
    );
    assert!(h.vault.grants_to(u.id).await.unwrap().is_empty());

    assert!(spec.checked >= 3);
    h.stop().await;

    // Once a migration has started: 423, nothing written.
    let h = Harness::new("openapi-users-started").await;
    h.admin.start("Start").await.unwrap();
    let (other, _) = h.creds.users.iter().next().unwrap();
    for what in ["purge", "restore"] {
        let path = format!("/v1/admin/users/{other}/{what}");
        h.refused(StatusCode::LOCKED, post.clone(), &path, None, Who::Admin)
            .await;
    }
    h.stop().await;
}

/// A migrated vault migrating again, over HTTP with rekey's Rust client:
/// every package of the second run fits the published JSON Schema and
/// names the first run's keys (`target` and `public_key`, no
/// `public_key_spki`), the logins migrate everyone (role checks
/// included), and after finalize only the second target's keys and grants
/// are left and every user still reads its records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_serves_packages_of_the_published_schema_and_completes() {
    use rekey_core::Target;
    let h = Harness::new("again").await;
    let before = Reader::new(&h.engine)
        .verify(&h.creds, &|_, _| {})
        .await
        .unwrap();
    assert!(before.passed());
    support::migrate_once_with_the_rust_client(&h, Target::HpkeP256).await;
    let started = h
        .admin
        .start_to("Start", Some(Target::HpkeMlKem768X25519))
        .await
        .unwrap();
    assert_eq!(started.target, Target::HpkeMlKem768X25519);

    let published: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/schemas/package.schema.json")).unwrap();
    let published = jsonschema::draft202012::new(&published).unwrap();
    let mut pending_holders = 0;
    for (name, u) in &h.creds.users {
        let path = format!("/v1/principals/{}/package", u.id);
        let (s, package) = h.raw(Method::GET, &path, None, Who::User(name)).await;
        assert_eq!(s, StatusCode::OK, "{name}");
        let errors: Vec<String> = published
            .iter_errors(&package)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "package.schema.json: {errors:?}");
        let key = &package["legacy_key"];
        assert_eq!(key["target"], "hpke-p256", "{key}");
        assert_eq!(key["public_key"].as_str().map(str::len), Some(130), "{key}");
        assert!(key.get("public_key_spki").is_none(), "{key}");
        for c in package["candidates"].as_array().unwrap() {
            assert_eq!(c["legacy_key"]["target"], "hpke-p256");
            for holder in c["holders"].as_array().unwrap() {
                if holder["state"] == "pending" {
                    assert_eq!(holder["target"], "hpke-p256", "{holder}");
                    pending_holders += 1;
                }
            }
        }
    }
    assert!(pending_holders > 0, "a role lists a pending member");
    let summary = support::everyone_logs_in(&h).await;
    assert!(summary.roles_confirmed > 0, "{summary:?}");
    h.admin.finalize().await.unwrap();
    let after = Reader::new(&h.engine)
        .verify(&h.creds, &|_, _| {})
        .await
        .unwrap();
    assert!(after.passed(), "{after:?}");
    assert_eq!(after.records_read, before.records_read);
    let users: Vec<_> = h.creds.users.values().map(|u| u.id).collect();
    for kp in h.vault.key_pairs_of(&users).await.unwrap() {
        assert_eq!(
            kp.scheme,
            Target::HpkeMlKem768X25519.batch_scheme(),
            "{kp:?}"
        );
    }
    h.stop().await;
}
