//! The conformance vectors in `vectors/protocol/` (written by `cargo xtask
//! protocol-vectors`) hold what PROTOCOL.md says of them: the package
//! parses and checks; the bundle parses and re-encodes to the same bytes;
//! the body digest and every signed message are as listed and every
//! signature verifies with the key PROTOCOL §8 names; every re-wrapped
//! grant opens, with the part's new private key, to the listed secret, and
//! that secret is the one the legacy grant it replaces carries; every
//! malformed bundle fails to parse.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "PROTOCOL §16's steps, checked in their order, read top to bottom"
)]

use rekey_core::bundle::package::PackageJson;
use rekey_core::bundle::wire::{body_digest, signed_message};
use rekey_core::bundle::{SignatureKind, SignedBundle};
use rekey_core::{GrantBinding, GrantOpener, Kek, KeyBinding, MasterSecret, PrivateKey, Subject};
use serde_json::Value;
use std::path::Path;

fn read(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../vectors/protocol")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (cargo xtask protocol-vectors)", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn unhex(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("a hex string");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn the_reference_bundle_is_what_protocol_md_says() {
    let v = read("reference-bundle.json");
    let package_json: PackageJson = serde_json::from_value(v["package"].clone()).unwrap();
    let principal = package_json.principal;
    let package = package_json
        .into_package(principal, None)
        .expect("the package passes every client check");
    let bytes = unhex(&v["bundle"]);
    let signed = SignedBundle::parse(&bytes).unwrap();
    assert_eq!(signed.encode(), bytes, "decode then encode changes nothing");
    let bundle = signed.bundle();
    assert_eq!(bundle.vault, package.vault);
    assert_eq!(bundle.run, package.run);
    assert_eq!(bundle.submitter, principal);
    assert_eq!(bundle.parts[0].principal, principal);
    assert_eq!(
        bundle.parts.len(),
        1 + package.candidates.len(),
        "the account and every candidate it can open"
    );

    // §8: the digest, the messages, the signatures.
    let body = signed.body();
    assert_eq!(body_digest(body).to_vec(), unhex(&v["body_sha256"]));
    let listed = v["signed_messages"].as_array().unwrap();
    assert_eq!(listed.len(), signed.signatures().len());
    assert_eq!(listed.len(), 2 * bundle.parts.len());
    for (m, s) in listed.iter().zip(signed.signatures()) {
        assert_eq!(m["kind"].as_u64(), Some(u64::from(s.kind.to_byte())));
        assert_eq!(
            unhex(&m["message"]),
            signed_message(body, s.kind, s.principal)
        );
        assert_eq!(unhex(&m["message"]).len(), 74);
        let message = signed_message(body, s.kind, s.principal);
        let part = bundle
            .parts
            .iter()
            .find(|p| p.principal == s.principal)
            .unwrap();
        match s.kind {
            SignatureKind::LegacyKey => {
                let legacy = if s.principal == principal {
                    &package.legacy_key
                } else {
                    &package
                        .candidates
                        .iter()
                        .find(|c| c.principal == s.principal)
                        .unwrap()
                        .legacy_key
                };
                legacy.public_key.verify_legacy(&message, &s.bytes).unwrap();
            }
            SignatureKind::NewKeyEcdsa => {
                part.new_key_pair
                    .public_key
                    .verify(&message, &s.bytes)
                    .unwrap();
            }
        }
    }

    // §6: every re-wrapped grant opens to the listed secret, which is the
    // legacy grant's.
    let master = MasterSecret::from_slice(&unhex(&v["master_secret"])).unwrap();
    let own_kek = Kek::derive(&master, package.vault, principal).unwrap();
    let legacy_key = {
        let env = package.legacy_key.wrapped_private.as_ref().unwrap();
        let der = rekey_core::kek::unwrap_private_key(
            &own_kek,
            &KeyBinding {
                vault: package.vault,
                owner: principal,
                key_pair: package.legacy_key.id,
            },
            env,
        )
        .unwrap();
        PrivateKey::Rsa(
            rekey_core::LegacyRsaPrivateKey::from_pkcs8_der(der.dangerous_as_bytes()).unwrap(),
        )
    };
    let mut legacy_opener = GrantOpener::new(&legacy_key);
    let mut keks = vec![own_kek];
    let listed_parts = v["parts"].as_array().unwrap();
    for (i, (part, listed)) in bundle.parts.iter().zip(listed_parts).enumerate() {
        let binding = KeyBinding {
            vault: package.vault,
            owner: part.principal,
            key_pair: part.new_key_pair.id,
        };
        let scalar = rekey_core::kek::unwrap_private_key(
            &keks[i],
            &binding,
            part.new_key_pair.wrapped_private.as_ref().unwrap(),
        )
        .expect("the new private key opens under the part's KEK");
        let key = PrivateKey::from(
            rekey_core::NewPrivateKey::from_bytes(
                part.new_key_pair.public_key.target(),
                scalar.dangerous_as_bytes(),
            )
            .unwrap(),
        );
        assert_eq!(key.public_key().to_bytes(), unhex(&listed["public_key"]));
        let mut opener = GrantOpener::new(&key);
        let grants = listed["grants"].as_array().unwrap();
        assert_eq!(grants.len(), part.grants.len());
        for (g, lg) in part.grants.iter().zip(grants) {
            let secret = opener
                .open(
                    &GrantBinding {
                        vault: package.vault,
                        recipient: part.principal,
                        subject: g.subject,
                    },
                    &g.envelope,
                )
                .unwrap();
            assert_eq!(secret.dangerous_as_bytes(), unhex(&lg["secret"]).as_slice());
            if i == 0 {
                let pending = package
                    .pending_grants
                    .iter()
                    .find(|p| p.id == g.replaces)
                    .expect("a re-wrapped grant replaces a pending one");
                assert_eq!(pending.subject, g.subject);
                let env = rekey_core::Envelope::parse(&pending.envelope_bytes).unwrap();
                let old = legacy_opener
                    .open(
                        &GrantBinding {
                            vault: package.vault,
                            recipient: principal,
                            subject: g.subject,
                        },
                        &env,
                    )
                    .unwrap();
                assert_eq!(old.dangerous_as_bytes(), secret.dangerous_as_bytes());
            }
        }
        // A later part's KEK: the holder grant to the account, sealed to
        // the account's new key.
        if i == 0 {
            for later in &bundle.parts[1..] {
                let hg = later
                    .holder_grants
                    .iter()
                    .find(|h| h.holder == principal)
                    .expect("the account holds every later part");
                assert_eq!(hg.holder_key_pair, part.new_key_pair.id);
                let kek = opener
                    .open(
                        &GrantBinding {
                            vault: package.vault,
                            recipient: principal,
                            subject: Subject::PrivateKey(later.new_key_pair.id),
                        },
                        &hg.envelope,
                    )
                    .unwrap();
                keks.push(kek.into_kek().expect("a KEK is 32 bytes"));
            }
        }
    }
}

#[test]
fn every_malformed_bundle_fails_to_parse() {
    let v = read("malformed-bundles.json");
    let cases = v.as_array().unwrap();
    assert!(cases.len() >= 15, "{} cases", cases.len());
    for c in cases {
        assert_eq!(c["status"], 400);
        assert_eq!(c["code"], "bundle_malformed");
        assert!(
            SignedBundle::parse(&unhex(&c["bundle"])).is_err(),
            "{}",
            c["case"]
        );
    }
}
