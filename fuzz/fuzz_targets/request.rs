//! Every request body rekey-server takes, decoded by the same functions
//! its handlers call (`rekey_server::routes::decode_*`). The first byte
//! picks the route:
//!
//! | byte % 6 | route | body |
//! |---|---|---|
//! | 0 | `POST /v1/admin/start` | `StartRequest` JSON |
//! | 1 | `POST /v1/admin/non-migratable/{grant}/resolve` | `ResolveRequest` JSON |
//! | 2 | `PUT /v1/records/{id}` | `RecordWrite` JSON |
//! | 3 | `POST /v1/principals/{id}/bundle` | binary `SignedBundle` |
//! | 4 | any `{id}` in a path | UTF-8 text |
//! | 5 | `POST /v1/session` | `SessionRequest` JSON |
//!
//! Any bytes give a value or a 400 with a message and a hint (rendered as
//! the JSON response the client would get), never a panic; whatever decodes
//! re-encodes to a body that decodes to the same value.
#![no_main]

use axum::http::StatusCode;
use axum::response::IntoResponse;
use libfuzzer_sys::fuzz_target;
use rekey_core::PrincipalId;
use rekey_server::ServerError;
use rekey_server::routes::{
    RecordWrite, StartRequest, decode_bundle, decode_id, decode_record_write, decode_resolve,
    decode_session, decode_start,
};

fn refused(e: ServerError) {
    assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e:?}");
    assert!(!e.to_string().is_empty() && !e.hint().is_empty());
    assert_eq!(e.into_response().status(), StatusCode::BAD_REQUEST);
}

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    match route % 6 {
        0 => match decode_start(body) {
            Ok(req) => {
                let again = serde_json::to_vec(&req).expect("serialises");
                let back: StartRequest = decode_start(&again).expect("re-decodes");
                assert_eq!(back.code_word, req.code_word);
            }
            Err(e) => refused(e),
        },
        1 => match decode_resolve(body) {
            Ok(resolution) => {
                let again = serde_json::json!({ "resolution": resolution.as_str() }).to_string();
                assert_eq!(decode_resolve(again.as_bytes()).ok(), Some(resolution));
            }
            Err(e) => refused(e),
        },
        2 => match decode_record_write(body) {
            Ok(ciphertext) => {
                let again = serde_json::to_vec(&RecordWrite {
                    ciphertext: hex::encode(&ciphertext),
                })
                .expect("serialises");
                assert_eq!(decode_record_write(&again).ok(), Some(ciphertext));
            }
            Err(e) => refused(e),
        },
        3 => match decode_bundle(body) {
            Ok(bundle) => assert_eq!(bundle.encode(), body),
            Err(e) => refused(e),
        },
        5 => match decode_session(body) {
            Ok((principal, authenticator)) => {
                let again = serde_json::json!({
                    "principal": principal,
                    "authenticator": hex::encode(authenticator.dangerous_as_bytes()),
                })
                .to_string();
                let (p, a) = decode_session(again.as_bytes()).expect("re-decodes");
                assert_eq!(p, principal);
                assert_eq!(a.dangerous_as_bytes(), authenticator.dangerous_as_bytes());
            }
            Err(e) => refused(e),
        },
        _ => {
            let text = String::from_utf8_lossy(body);
            match decode_id::<PrincipalId>(&text, "principal") {
                Ok(id) => {
                    assert_eq!(
                        decode_id::<PrincipalId>(&id.to_string(), "principal").ok(),
                        Some(id)
                    );
                }
                Err(e) => refused(e),
            }
        }
    }
});
