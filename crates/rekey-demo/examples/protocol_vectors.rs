//! Writes PROTOCOL.md's conformance vectors (`vectors/protocol/`): a real
//! migration package and the bundle rekey's client built from it (accepted
//! by the engine before anything is written), with what a second
//! implementation needs to check its own code against them, and a set of
//! malformed bundles the server must refuse. Run through
//! `cargo xtask protocol-vectors`; `tests/protocol_vectors.rs` and the web
//! client's unit tests check the files.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use rekey_core::bundle::package::PackageJson;
use rekey_core::bundle::wire::{body_digest, signed_message};
use rekey_core::bundle::{BuildOptions, SignedBundle, Unlock, build_bundle};
use rekey_core::{GrantBinding, GrantOpener, Kek, PrivateKey, Subject};
use rekey_demo::password::master_secret;
use serde_json::{Value, json};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn subject(s: Subject) -> Value {
    serde_json::to_value(s).unwrap()
}

#[path = "../tests/support/mod.rs"]
mod support;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = support::temp("protocol-vectors");
    let url = format!("sqlite://{}", dir.join("vault.db").display());
    let keys = dir.join("keys");
    // The demo tests' vault: 4 users, 1 role, 40 records, the fixture
    // keys, certificates backed up.
    let (engine, _, credentials) = support::seeded(&url, &keys).await;
    engine.start("Start", &|_, _, _| {}).await.unwrap();
    let creds = &credentials;

    // The first user whose package carries a candidate (the role).
    let mut chosen = None;
    for (name, u) in &creds.users {
        let package = engine.package(u.id).await.unwrap();
        if !package.candidates.is_empty() {
            chosen = Some((name.clone(), u.clone(), package));
            break;
        }
    }
    let (name, user, package) = chosen.expect("a demo user holds the role");
    let master = master_secret(&user.password, creds.vault, user.id, &creds.kdf).unwrap();
    let built = build_bundle(
        &package,
        Unlock::MasterSecret(&master),
        BuildOptions { threads: Some(1) },
    )
    .unwrap();
    let bytes = built.bundle.encode();
    // Only what the engine accepts becomes a vector.
    let applied = engine.submit(user.id, &bytes).await.unwrap();
    println!(
        "{name}: bundle of {} bytes accepted ({} grants)",
        bytes.len(),
        applied.grants
    );

    let signed = SignedBundle::parse(&bytes).unwrap();
    let body = signed.body();
    let messages: Vec<Value> = signed
        .signatures()
        .iter()
        .map(|s| {
            json!({
                "principal": s.principal,
                "kind": s.kind.to_byte(),
                "message": hex(&signed_message(body, s.kind, s.principal)),
            })
        })
        .collect();

    let parts = parts_json(&signed, &package, &master, user.id);
    let reference = json!({
        "about": "A real migration package and the bundle rekey's client built from it, accepted by the server. PROTOCOL.md §16 says how to use it.",
        "master_secret": hex(master.dangerous_as_bytes()),
        "package": PackageJson::from(&package),
        "bundle": hex(&bytes),
        "body_sha256": hex(&body_digest(body)),
        "signed_messages": messages,
        "parts": parts,
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vectors/protocol");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("reference-bundle.json"),
        serde_json::to_string_pretty(&reference).unwrap() + "\n",
    )
    .unwrap();
    let malformed = malformed_bundles(&bytes);
    std::fs::write(
        out.join("malformed-bundles.json"),
        serde_json::to_string_pretty(&malformed).unwrap() + "\n",
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    println!("wrote {}", out.display());
}

/// Bundles that break one parsing rule of PROTOCOL §7.7 each, made from the
/// reference bundle; every one must fail to parse (checked here).
fn malformed_bundles(good: &[u8]) -> Vec<Value> {
    let u32_at =
        |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    let body_len = u32_at(good, 13);
    let sigs = 17 + body_len;
    // The first part: principal, legacy and new key pair ids at 69, the
    // key kind byte at 117, the public key at 118, the wrapped-key flag at
    // 183 (the reference bundle's keys are P-256).
    let wrapped_len = u32_at(good, 184);
    let grant_count = 188 + wrapped_len;
    let first_grant = grant_count + 4;
    let first_envelope = first_grant + 16 + 1 + 16 + 4;
    let set = |at: usize, bytes: &[u8]| {
        let mut b = good.to_vec();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    };
    let xor = |at: usize, mask: u8| {
        let mut b = good.to_vec();
        b[at] ^= mask;
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("wrong magic", xor(0, 0x01)),
        ("version 02", set(12, &[0x02])),
        (
            "body length one more than the body",
            set(13, &u32::try_from(body_len + 1).unwrap().to_be_bytes()),
        ),
        ("cut inside the body", good[..100].to_vec()),
        ("cut inside the signatures", good[..good.len() - 1].to_vec()),
        (
            "part count larger than the bytes can hold",
            set(65, &[0xff, 0xff, 0xff, 0xff]),
        ),
        ("key kind byte 04", set(117, &[0x04])),
        (
            "key kind byte 03 (hybrid) before a P-256 key",
            set(117, &[0x03]),
        ),
        ("public key not on the curve", xor(118 + 64, 0x01)),
        ("public key not uncompressed", set(118, &[0x02])),
        ("wrapped-key flag 02", set(183, &[0x02])),
        ("wrapped private key not an envelope", xor(188, 0xff)),
        (
            "grant count larger than the bytes can hold",
            set(grant_count, &[0xff, 0xff, 0xff, 0xff]),
        ),
        ("subject kind 03", set(first_grant + 16, &[0x03])),
        (
            "grant envelope of version 02",
            set(first_envelope + 2, &[0x02]),
        ),
        (
            "grant envelope of an unknown scheme",
            set(first_envelope + 3, &[0x7f]),
        ),
        (
            "signature count larger than the bytes can hold",
            set(sigs, &[0xff, 0xff]),
        ),
        ("signature kind 03", set(sigs + 2 + 16, &[0x03])),
        ("a byte after the last signature", [good, &[0]].concat()),
    ];
    cases
        .into_iter()
        .map(|(why, bytes)| {
            assert!(
                SignedBundle::parse(&bytes).is_err(),
                "the malformed case `{why}` parses"
            );
            json!({ "case": why, "bundle": hex(&bytes), "status": 400, "code": "bundle_malformed" })
        })
        .collect()
}

/// Each part of the reference bundle as the vector lists it, with every
/// re-wrapped grant's secret opened with the part's new private key (the
/// account's under its KEK, a role's under the KEK its holder grant to
/// the account carries).
fn parts_json(
    signed: &SignedBundle,
    package: &rekey_core::bundle::MigrationPackage,
    master: &rekey_core::MasterSecret,
    account: rekey_core::PrincipalId,
) -> Vec<Value> {
    let vault = package.vault;
    let own_kek = Kek::derive(master, vault, account).unwrap();
    let mut parts = Vec::new();
    let mut part_keks = vec![own_kek];
    for (i, part) in signed.bundle().parts.iter().enumerate() {
        let kek = &part_keks[i.min(part_keks.len() - 1)];
        let binding = rekey_core::KeyBinding {
            vault,
            owner: part.principal,
            key_pair: part.new_key_pair.id,
        };
        let scalar = rekey_core::kek::unwrap_private_key(
            kek,
            &binding,
            part.new_key_pair.wrapped_private.as_ref().unwrap(),
        )
        .unwrap();
        let key = PrivateKey::from(
            rekey_core::NewPrivateKey::from_bytes(
                part.new_key_pair.public_key.target(),
                scalar.dangerous_as_bytes(),
            )
            .unwrap(),
        );
        let mut opener = GrantOpener::new(&key);
        let grants: Vec<Value> = part
            .grants
            .iter()
            .map(|g| {
                let secret = opener
                    .open(
                        &GrantBinding {
                            vault,
                            recipient: part.principal,
                            subject: g.subject,
                        },
                        &g.envelope,
                    )
                    .unwrap();
                json!({
                    "replaces": g.replaces,
                    "subject": subject(g.subject),
                    "secret": hex(secret.dangerous_as_bytes()),
                })
            })
            .collect();
        // The KEK of a later part, from the holder grant to the account
        // (sealed to the account's new key: part 0's).
        if i == 0 {
            for later in signed.bundle().parts.iter().skip(1) {
                let hg = later
                    .holder_grants
                    .iter()
                    .find(|h| h.holder == account)
                    .unwrap();
                let secret = opener
                    .open(
                        &GrantBinding {
                            vault,
                            recipient: account,
                            subject: Subject::PrivateKey(later.new_key_pair.id),
                        },
                        &hg.envelope,
                    )
                    .unwrap();
                part_keks.push(secret.into_kek().unwrap());
            }
        }
        parts.push(json!({
            "principal": part.principal,
            "new_key_pair": part.new_key_pair.id,
            "public_key": hex(&part.new_key_pair.public_key.to_bytes()),
            "grants": grants,
            "non_migratable": part.non_migratable.len(),
            "holders": part.holder_grants.iter().map(|h| json!({
                "holder": h.holder,
                "holder_key_pair": h.holder_key_pair,
                "scheme": h.envelope.scheme().id(),
            })).collect::<Vec<_>>(),
        }));
    }

    parts
}
