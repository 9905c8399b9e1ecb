//! The OpenAPI 3.1 document, generated from [`ROUTES`] (the same table the
//! router is built from), with hand-written schemas for the bodies.

use crate::routes::{Auth, BodyKind, ROUTES, RouteSpec};
use serde_json::{Map, Value, json};

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

/// The operation object of route `r`.
fn operation(r: &RouteSpec) -> Map<String, Value> {
    let mut op = Map::new();
    op.insert("summary".into(), json!(r.summary));
    op.insert("tags".into(), json!([r.tag]));
    op.insert(
        "operationId".into(),
        json!(operation_id(r.method.as_str(), r.path)),
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
    let params: Vec<Value> = path_params(r.path)
        .into_iter()
        .map(|p| {
            json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } })
        })
        .collect();
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
            json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } })
        } else if r.path == "/" {
            json!({ "text/html": { "schema": { "type": "string" } } })
        } else if r.path == "/metrics" {
            json!({ "text/plain": { "schema": { "type": "string" } } })
        } else {
            json!({ "application/json": { "schema": { "type": "object" } } })
        };
        responses.insert(
            code.to_string(),
            json!({ "description": what, "content": content }),
        );
    }
    op.insert("responses".into(), Value::Object(responses));
    op
}

/// The document.
#[must_use]
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let op = operation(r);
        let entry = paths
            .entry(r.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(r.method.as_str().to_ascii_lowercase(), Value::Object(op));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "rekey-server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP API of a vault migrating from legacy RSA keys to P-256: status, admin operations, migration packages and bundles, and a minimal record API.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "adminToken": { "type": "http", "scheme": "bearer", "description": "The admin token given at server start-up." },
                "session": { "type": "http", "scheme": "bearer", "description": "A session token from POST /v1/session (15 minutes), naming one account." }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "hint"],
                    "properties": { "error": { "type": "string" }, "hint": { "type": "string" } }
                },
                "StartRequest": {
                    "type": "object",
                    "required": ["code_word"],
                    "additionalProperties": false,
                    "properties": { "code_word": { "type": "string", "description": "`Start`, exactly" } }
                },
                "ResolveRequest": {
                    "type": "object",
                    "required": ["resolution"],
                    "additionalProperties": false,
                    "properties": { "resolution": { "type": "string", "enum": ["reshared", "written_off"] } }
                },
                "SessionRequest": {
                    "type": "object",
                    "required": ["principal", "authenticator"],
                    "additionalProperties": false,
                    "properties": {
                        "principal": { "type": "string", "format": "uuid" },
                        "authenticator": { "type": "string", "description": "hex of the 32-byte login authenticator (docs/PROTOCOL.md)" }
                    }
                },
                "ReceiptRequest": {
                    "type": "object",
                    "required": ["role", "key_pair", "checked", "signature"],
                    "additionalProperties": false,
                    "properties": {
                        "role": { "type": "string", "format": "uuid" },
                        "key_pair": { "type": "string", "format": "uuid", "description": "the role's current key pair" },
                        "checked": { "type": "integer", "minimum": 0, "description": "the role's grants compared" },
                        "signature": { "type": "string", "description": "hex of the ECDSA signature by the role's new key (docs/PROTOCOL.md, role confirmations)" }
                    }
                },
                "RecordWrite": {
                    "type": "object",
                    "required": ["ciphertext"],
                    "additionalProperties": false,
                    "properties": { "ciphertext": { "type": "string", "description": "hex" } }
                }
            }
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
                // Declared parameters are exactly the template's.
                let declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| ps.iter().map(|p| p["name"].as_str().unwrap()).collect())
                    .unwrap_or_default();
                assert_eq!(declared, path_params(path), "{method} {path}");
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
