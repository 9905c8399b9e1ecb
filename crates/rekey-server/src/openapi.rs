//! The OpenAPI 3.1 document, generated from [`ROUTES`] (the same table the
//! router is built from). Every JSON body's schema is derived (utoipa) from
//! the Rust type the server serializes or parses, so the two cannot drift;
//! `tests/openapi.rs` checks real answers of a migration against it.

use crate::answers::{
    DeviceWrittenOff, ErrorBody, Health, ReceiptKept, RecordWritten, Resolved, UserRestored,
    VaultsReady,
};
use crate::fleet::{FLEET_ROUTES, MAX_VAULT_NAME};
use crate::routes::vault_path;
use crate::routes::{
    Answer, Auth, BodyKind, PurgeRequest, QuerySchema, ROUTES, RecordWrite, ResolveRequest,
    RouteSpec, SessionRequest, StartRequest,
};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

/// Adds `T`'s schema and every schema it refers to.
fn add<T: ToSchema>(out: &mut Map<String, Value>) {
    let mut all = vec![(T::name().into_owned(), T::schema())];
    T::schemas(&mut all);
    for (name, schema) in all {
        out.insert(name, serde_json::to_value(schema).unwrap_or(Value::Null));
    }
}

/// Every schema the routes name, derived from their types.
#[must_use]
pub fn schemas() -> Map<String, Value> {
    use rekey_core::bundle::package::PackageJson;
    use rekey_core::confirm::{ReceiptJson, RecordJson, RoleChecksJson};
    use rekey_core::report::{AbortReport, ApplyReport, FinalizeReport, StartReport, StatusReport};
    let mut out = Map::new();
    add::<Health>(&mut out);
    add::<crate::answers::Ready>(&mut out);
    add::<StatusReport>(&mut out);
    add::<rekey_preflight::JsonReport>(&mut out);
    add::<StartReport>(&mut out);
    add::<FinalizeReport>(&mut out);
    add::<AbortReport>(&mut out);
    add::<DeviceWrittenOff>(&mut out);
    add::<Resolved>(&mut out);
    add::<rekey_preflight::PurgeReport>(&mut out);
    add::<PurgeRequest>(&mut out);
    add::<UserRestored>(&mut out);
    add::<rekey_engine::Session>(&mut out);
    add::<PackageJson>(&mut out);
    add::<ApplyReport>(&mut out);
    add::<RoleChecksJson>(&mut out);
    add::<ReceiptKept>(&mut out);
    add::<RecordJson>(&mut out);
    add::<RecordWritten>(&mut out);
    add::<ErrorBody>(&mut out);
    add::<StartRequest>(&mut out);
    add::<ResolveRequest>(&mut out);
    add::<SessionRequest>(&mut out);
    add::<ReceiptJson>(&mut out);
    add::<RecordWrite>(&mut out);
    out
}

/// Path parameters of a route template, in order.
#[must_use]
pub fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(
            seg.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .map(|c| if c == '-' { '_' } else { c }),
        );
    }
    if path == "/" {
        id.push_str("_page");
    }
    id
}

/// The operation object of route `r`, served at `path` (its own path, or
/// where a server of several vaults serves it).
fn operation<S>(r: &RouteSpec<S>, path: &str) -> Map<String, Value> {
    let mut op = Map::new();
    op.insert("summary".into(), json!(r.summary));
    op.insert("tags".into(), json!([r.tag]));
    op.insert(
        "operationId".into(),
        json!(operation_id(r.method.as_str(), path)),
    );
    match r.auth {
        Auth::Admin => {
            op.insert("security".into(), json!([{ "adminToken": [] }]));
        }
        Auth::Session => {
            op.insert("security".into(), json!([{ "session": [] }]));
            op.insert(
                "description".into(),
                json!("The account's session (POST /v1/session, or the vault's own login). A bundle is also signed by the account's legacy key (RSA-PSS) and by its new key (ECDSA); the server never sees a password."),
            );
        }
        Auth::Public => {}
    }
    let params: Vec<Value> = path_params(path)
        .into_iter()
        .map(|p| {
            if p == "vault" {
                json!({ "name": p, "in": "path", "required": true, "description": "the vault's name", "schema": { "type": "string", "pattern": format!("^[a-z0-9_-]{{1,{MAX_VAULT_NAME}}}$") } })
            } else {
                json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } })
            }
        })
        .collect();
    let mut params = params;
    for q in r.query {
        let schema = match q.schema {
            QuerySchema::Boolean => json!({ "type": "boolean" }),
            QuerySchema::OneOf(values) => json!({ "type": "string", "enum": values }),
        };
        params.push(json!({ "name": q.name, "in": "query", "required": false, "description": q.description, "schema": schema }));
    }
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    match r.body {
        BodyKind::None => {}
        BodyKind::Json(schema) => {
            op.insert(
                "requestBody".into(),
                json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } }),
            );
        }
        BodyKind::Binary => {
            op.insert(
                "requestBody".into(),
                json!({ "required": true, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } }),
            );
        }
    }
    let mut responses = Map::new();
    for (code, what) in r.responses {
        let content = if *code >= 400 {
            json!({ "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } })
        } else {
            match r.answer {
                Answer::Json(name) => {
                    json!({ "application/json": { "schema": { "$ref": format!("#/components/schemas/{name}") } } })
                }
                Answer::OpaqueJson(what) => {
                    json!({ "application/json": { "schema": { "type": "object", "description": what } } })
                }
                Answer::Html => json!({ "text/html": { "schema": { "type": "string" } } }),
                Answer::Text => json!({ "text/plain": { "schema": { "type": "string" } } }),
            }
        };
        responses.insert(
            code.to_string(),
            json!({ "description": what, "content": content }),
        );
    }
    op.insert("responses".into(), Value::Object(responses));
    op
}

fn add_operation<S>(paths: &mut Map<String, Value>, r: &RouteSpec<S>, path: &str) {
    let op = operation(r, path);
    let entry = paths
        .entry(path.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(m) = entry {
        m.insert(r.method.as_str().to_ascii_lowercase(), Value::Object(op));
    }
}

const DESCRIPTION: &str = "The HTTP API of a vault migrating from legacy RSA keys to P-256: status, admin operations, migration packages and bundles, and a minimal record API.";

/// The document.
#[must_use]
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        add_operation(&mut paths, r, r.path);
    }
    wrap(paths, DESCRIPTION, schemas())
}

/// The document of a server of several vaults ([`crate::VaultSet`]): every
/// vault route of [`ROUTES`] at its [`vault_path`] (with the `vault`
/// parameter), and the process's own routes ([`FLEET_ROUTES`]).
#[must_use]
pub fn fleet_document() -> Value {
    let mut paths = Map::new();
    for r in FLEET_ROUTES {
        add_operation(&mut paths, r, r.path);
    }
    for r in ROUTES {
        if let Some(path) = vault_path(r.path) {
            add_operation(&mut paths, r, &path);
        }
    }
    let mut schemas = schemas();
    add::<VaultsReady>(&mut schemas);
    let description = format!(
        "{DESCRIPTION} This server serves several vaults: each vault's API is under /v1/vaults/{{vault}} (what /v1 is on a server of one vault), its status page at /vaults/{{vault}}."
    );
    wrap(paths, &description, schemas)
}

fn wrap(paths: Map<String, Value>, description: &str, schemas: Map<String, Value>) -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "rekey-server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": description,
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "adminToken": { "type": "http", "scheme": "bearer", "description": "The admin token given at server start-up." },
                "session": { "type": "http", "scheme": "bearer", "description": "A session token from POST /v1/session (15 minutes), naming one account." }
            },
            "schemas": schemas,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_once_with_its_parameters() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let ops: usize = paths.values().map(|v| v.as_object().unwrap().len()).sum();
        assert_eq!(ops, ROUTES.len());
        let op = &doc["paths"]["/v1/admin/non-migratable/{grant}/resolve"]["post"];
        assert_eq!(op["parameters"][0]["name"], "grant");
        assert_eq!(op["security"][0]["adminToken"], json!([]));
        let mut ids: Vec<String> = paths
            .values()
            .flat_map(|v| v.as_object().unwrap().values())
            .map(|o| o["operationId"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), ROUTES.len(), "operation ids are unique");
    }

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("$ref", Value::String(s)) => out.push(s),
                        _ => refs(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn document_is_consistent() {
        let doc = document();
        consistent(&doc);
        // The query parameters the handlers read are documented.
        let preflight = &doc["paths"]["/v1/admin/preflight"]["post"]["parameters"][0];
        assert_eq!(preflight["name"], "target_scheme");
        assert_eq!(preflight["schema"]["enum"][2], "hpke-mlkem768-x25519");
        assert_eq!(
            doc["paths"]["/v1/admin/status"]["get"]["parameters"][0]["name"],
            "all"
        );
    }

    #[test]
    fn the_fleet_document_is_consistent_and_puts_the_api_under_each_vault() {
        let doc = fleet_document();
        consistent(&doc);
        let paths = doc["paths"].as_object().unwrap();
        let ops: usize = paths.values().map(|v| v.as_object().unwrap().len()).sum();
        assert_eq!(
            ops,
            ROUTES.len() + 1,
            "every route, plus the list of vaults"
        );
        assert!(
            paths
                .keys()
                .all(|p| !p.starts_with("/v1/") || p.starts_with("/v1/vaults/{vault}/"))
        );
        let op = &doc["paths"]["/v1/vaults/{vault}/principals/{id}/bundle"]["post"];
        assert_eq!(op["parameters"][0]["name"], "vault");
        assert_eq!(op["parameters"][1]["name"], "id");
        assert!(doc["paths"]["/vaults/{vault}"]["get"].is_object());
        assert_eq!(
            doc["paths"]["/ready"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
                ["$ref"],
            "#/components/schemas/VaultsReady"
        );
        // The single-vault document is unchanged by it.
        let single = document();
        assert!(single["paths"].get("/v1/session").is_some());
        assert!(
            single["paths"]
                .as_object()
                .unwrap()
                .keys()
                .all(|p| !p.contains("{vault}"))
        );
        assert!(single["components"]["schemas"].get("VaultsReady").is_none());
    }

    fn consistent(doc: &Value) {
        let doc = doc.clone();
        // Every reference resolves.
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let pointer = r.strip_prefix('#').unwrap();
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
        for (path, ops) in doc["paths"].as_object().unwrap() {
            assert!(path.starts_with('/'));
            for (method, op) in ops.as_object().unwrap() {
                assert!(["get", "post", "put"].contains(&method.as_str()));
                // Declared path parameters are exactly the template's;
                // any other parameter is an optional query parameter.
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                let declared: Vec<&str> = params
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                assert_eq!(declared, path_params(path), "{method} {path}");
                for p in params.iter().filter(|p| p["in"] != "path") {
                    assert_eq!(p["in"], "query", "{method} {path}: {p}");
                    assert_eq!(p["required"], false, "{method} {path}: {p}");
                    assert!(p["schema"]["type"].is_string(), "{method} {path}: {p}");
                }
                let responses = op["responses"].as_object().unwrap();
                assert!(!responses.is_empty());
                for (code, r) in responses {
                    let c: u16 = code.parse().unwrap();
                    assert!((100..600).contains(&c));
                    assert!(r["description"].is_string());
                }
                let admin = op
                    .get("security")
                    .is_some_and(|s| s[0].get("adminToken").is_some());
                if admin {
                    assert!(responses.contains_key("401"), "{method} {path} lists 401");
                }
            }
        }
    }
}
