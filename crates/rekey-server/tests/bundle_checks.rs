//! PROTOCOL.md §9, row by row: for every check the server makes on a
//! bundle, a bundle that fails exactly that check, built the honest way
//! (`build_unsigned`), changed, then signed with the right keys (so the
//! signatures pass unless the row is about them), posted over HTTP. Each
//! answer must carry the row's status and code, and nothing may be written
//! (progress, audit log, migration version). The honest bundle is accepted
//! at the end, so every refusal came from the change. The malformed
//! bundles of PROTOCOL §16 are refused before start and during the user
//! phase alike.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "one table of cases, read top to bottom"
)]

mod support;

use hyper::{Method, StatusCode};
use rekey_client::MigrationApi;
use rekey_core::bundle::wire::signed_message;
use rekey_core::bundle::{
    BuildOutput, Bundle, HolderGrant, NewKeyPair, PrincipalPart, SignatureKind, SignedBundle,
    Unlock, build_unsigned,
};
use rekey_core::kek::unlock_key_pair;
use rekey_core::model::{AuditEvent, KeyState, MigrationState, PrincipalKind, Timestamp};
use rekey_core::{
    Curve, EcPrivateKey, GrantId, Kek, KeyPairId, LegacyRsaPrivateKey, PrincipalId, PrivateKey,
    RecordId, RunId, Subject, VaultId,
};
use rekey_demo::password::master_secret;
use support::{Harness, Who, with_signatures};

const OCTETS: &str = "application/octet-stream";

/// One change to an honest bundle.
type Change = Box<dyn FnOnce(&mut Bundle) + Send>;

/// The malformed bundles of PROTOCOL §16 (`vectors/protocol/`).
fn malformed_vectors() -> Vec<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../vectors/protocol/malformed-bundles.json");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    cases
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = c["bundle"].as_str().unwrap();
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

fn audit(action: &str) -> AuditEvent {
    AuditEvent {
        at: Timestamp::now(),
        actor: "test".to_owned(),
        action: action.to_owned(),
        details: "{}".to_owned(),
    }
}

/// The demo user who is a member of the role (so its bundle has two
/// parts: its own and the role's), and another member if there is one.
async fn role_member(h: &Harness) -> (String, PrincipalId, Vec<String>) {
    for role in h
        .vault
        .principals_of_kind(PrincipalKind::Role)
        .await
        .unwrap()
    {
        let members = h.vault.members_of(role.id).await.unwrap();
        let names: Vec<String> = h
            .creds
            .users
            .iter()
            .filter(|(_, u)| members.contains(&u.id))
            .map(|(n, _)| n.clone())
            .collect();
        if let Some(first) = names.first() {
            return (first.clone(), role.id, names[1..].to_vec());
        }
    }
    panic!("the test vault has a role with an e2ee member");
}

/// A part for `name` (an e2ee user) with nothing to migrate, and the keys
/// that sign it: its legacy key (unwrapped with its password) and a fixed
/// new P-256 key. The wrapped private key is left for the caller.
struct StrangerPart {
    part: PrincipalPart,
    legacy: LegacyRsaPrivateKey,
    new: EcPrivateKey,
}

async fn not_held_part(h: &Harness, name: &str) -> StrangerPart {
    let u = &h.creds.users[name];
    let master = master_secret(&u.password, h.creds.vault, u.id, &h.creds.kdf).unwrap();
    let kek = Kek::derive(&master, h.creds.vault, u.id).unwrap();
    let kp = h
        .vault
        .key_pairs_of(&[u.id])
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.state == KeyState::Legacy)
        .unwrap();
    let Some(PrivateKey::Rsa(legacy)) = unlock_key_pair(&kp, h.creds.vault, &kek) else {
        panic!("{name}'s legacy key unlocks with its password");
    };
    let new = EcPrivateKey::from_scalar_bytes(Curve::P256, &[7; 32]).unwrap();
    let id = KeyPairId::random();
    StrangerPart {
        part: PrincipalPart {
            principal: u.id,
            legacy_key_pair: kp.id,
            new_key_pair: NewKeyPair {
                id,
                public_key: rekey_core::NewPublicKey::Ec(new.public_key()),
                // Filled in with a well-formed envelope by the caller.
                wrapped_private: None,
            },
            grants: Vec::new(),
            non_migratable: Vec::new(),
            holder_grants: Vec::new(),
        },
        legacy,
        new,
    }
}

/// The signed bundle `name` builds, after `change` edited it.
async fn bundle(h: &Harness, name: &str, change: impl FnOnce(&mut Bundle)) -> Vec<u8> {
    let u = &h.creds.users[name];
    let package = h.users[name].package(u.id).await.unwrap();
    let master = master_secret(&u.password, h.creds.vault, u.id, &h.creds.kdf).unwrap();
    let mut unsigned =
        build_unsigned(&package, Unlock::MasterSecret(&master), Default::default()).unwrap();
    change(&mut unsigned.bundle);
    let BuildOutput { bundle, .. } = unsigned.sign().unwrap();
    bundle.encode()
}

/// Posts `bytes` as `name`'s bundle; asserts the status, the code, a
/// documented answer and that nothing was written.
async fn refused(h: &Harness, name: &str, bytes: Vec<u8>, status: StatusCode, code: &str) {
    let id = h.creds.users[name].id;
    let path = format!("/v1/principals/{id}/bundle");
    let before = h.snapshot().await;
    let (got, body) = h
        .raw(Method::POST, &path, Some((OCTETS, bytes)), Who::User(name))
        .await;
    assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
    support::assert_documented(got, &body);
    assert_eq!(h.snapshot().await, before, "{code}: something was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bundle_check_refuses_with_its_status_and_code_and_writes_nothing() {
    let h = Harness::new("bundle-checks").await;
    let (name, role, _) = role_member(&h).await;
    let me = h.creds.users[&name].id;
    let other_user = h
        .creds
        .users
        .iter()
        .find(|(n, _)| **n != name)
        .map(|(n, u)| (n.clone(), u.id))
        .unwrap();

    // B1 comes before the phase check: refused before start and after.
    let malformed = malformed_vectors();
    for bytes in &malformed {
        refused(
            &h,
            &name,
            bytes.clone(),
            StatusCode::BAD_REQUEST,
            "bundle_malformed",
        )
        .await;
    }
    h.admin.start("Start").await.unwrap();
    for bytes in malformed {
        refused(
            &h,
            &name,
            bytes,
            StatusCode::BAD_REQUEST,
            "bundle_malformed",
        )
        .await;
    }
    let honest = bundle(&h, &name, |_| {}).await;
    assert_eq!(
        SignedBundle::parse(&honest).unwrap().bundle().parts.len(),
        2
    );

    use StatusCode as S;
    let cases: Vec<(&str, S, Change)> = vec![
        (
            "wrong_vault",
            S::BAD_REQUEST,
            Box::new(|b| b.vault = VaultId::random()),
        ),
        (
            "stale_run",
            S::CONFLICT,
            Box::new(|b| b.run = RunId::random()),
        ),
        (
            "not_submitter",
            S::FORBIDDEN,
            Box::new(move |b| b.submitter = other_user.1),
        ),
        (
            "duplicate_part",
            S::BAD_REQUEST,
            Box::new(|b| b.parts[1] = b.parts[0].clone()),
        ),
        (
            // The run moves to P-256; the role's new key is a hybrid one.
            "wrong_target",
            S::BAD_REQUEST,
            Box::new(|b| {
                b.parts[1].new_key_pair.public_key = rekey_core::NewPublicKey::Hybrid(
                    rekey_core::HybridPrivateKey::from_bytes(&[7; 64])
                        .unwrap()
                        .public_key(),
                );
            }),
        ),
        (
            "key_pair_id_taken",
            S::BAD_REQUEST,
            Box::new(|b| b.parts[1].new_key_pair.id = b.parts[0].new_key_pair.id),
        ),
        (
            "unknown_principal",
            S::BAD_REQUEST,
            Box::new(|b| b.parts[1].principal = PrincipalId::random()),
        ),
        (
            "key_pair_id_taken",
            S::BAD_REQUEST,
            Box::new(|b| b.parts[0].new_key_pair.id = b.parts[0].legacy_key_pair),
        ),
        (
            "legacy_key_changed",
            S::CONFLICT,
            Box::new(|b| b.parts[0].legacy_key_pair = KeyPairId::random()),
        ),
        (
            "wrapped_key_misplaced",
            S::BAD_REQUEST,
            Box::new(|b| b.parts[0].new_key_pair.wrapped_private = None),
        ),
        (
            "duplicate_grant",
            S::BAD_REQUEST,
            Box::new(|b| {
                let g = b.parts[0].grants[0].clone();
                b.parts[0].grants.push(g);
            }),
        ),
        (
            "subject_changed",
            S::BAD_REQUEST,
            Box::new(|b| b.parts[0].grants[0].subject = Subject::RecordKey(RecordId::random())),
        ),
        (
            "wrong_grant_scheme",
            S::BAD_REQUEST,
            Box::new(|b| {
                let kek_envelope = b.parts[0].new_key_pair.wrapped_private.clone().unwrap();
                b.parts[0].grants[0].envelope = kek_envelope;
            }),
        ),
        (
            "coverage_changed",
            S::CONFLICT,
            Box::new(|b| {
                b.parts[0].grants.pop();
            }),
        ),
        (
            "coverage_changed",
            S::CONFLICT,
            Box::new(|b| b.parts[0].grants[0].replaces = GrantId::random()),
        ),
        (
            "holders_changed",
            S::CONFLICT,
            Box::new(|b| {
                b.parts[1].holder_grants.pop();
            }),
        ),
        (
            "holders_changed",
            S::CONFLICT,
            Box::new(|b| {
                let g = b.parts[1].holder_grants[0].clone();
                b.parts[1].holder_grants.push(HolderGrant {
                    holder: PrincipalId::random(),
                    ..g
                });
            }),
        ),
        (
            "holder_grant_invalid",
            S::BAD_REQUEST,
            Box::new(move |b| {
                let legacy = b.parts[0].legacy_key_pair;
                let g = b.parts[1]
                    .holder_grants
                    .iter_mut()
                    .find(|g| g.holder == me)
                    .unwrap();
                g.holder_key_pair = legacy;
            }),
        ),
    ];
    for (code, status, change) in cases {
        let bytes = bundle(&h, &name, change).await;
        refused(&h, &name, bytes, status, code).await;
    }

    // The signatures (D6, D8, D9), on the honest body.
    let ecdsa = SignatureKind::NewKeyEcdsa.to_byte();
    let twice = with_signatures(&honest, |s| {
        let first = s[0].clone();
        s.push(first);
    });
    refused(&h, &name, twice, S::FORBIDDEN, "signature_unexpected").await;
    let stranger = with_signatures(&honest, |s| {
        let mut extra = s[0].clone();
        extra.0 = PrincipalId::random();
        s.push(extra);
    });
    refused(&h, &name, stranger, S::FORBIDDEN, "signature_unexpected").await;
    let missing = with_signatures(&honest, |s| s.retain(|x| !(x.0 == role && x.1 == ecdsa)));
    refused(&h, &name, missing, S::FORBIDDEN, "signature_missing").await;
    let flipped = with_signatures(&honest, |s| {
        let last = s.last_mut().unwrap();
        last.2[10] ^= 1;
    });
    refused(&h, &name, flipped, S::FORBIDDEN, "signature_invalid").await;

    // D10: a part for another user, whom the account does not hold, signed
    // with that user's own keys (so the signatures pass).
    let stranger_part = not_held_part(&h, &other_user.0).await;
    let (stranger_id, stranger_legacy, stranger_new) = (
        stranger_part.part.principal,
        stranger_part.legacy,
        stranger_part.new,
    );
    let mut part = stranger_part.part;
    let unsigned_bytes = bundle(&h, &name, move |b| {
        part.new_key_pair.wrapped_private = b.parts[1].new_key_pair.wrapped_private.clone();
        b.parts[1] = part;
    })
    .await;
    let body = SignedBundle::parse(&unsigned_bytes)
        .unwrap()
        .body()
        .to_vec();
    let resigned = with_signatures(&unsigned_bytes, |s| {
        for sig in s.iter_mut().filter(|x| x.0 == stranger_id) {
            sig.2 = if sig.1 == ecdsa {
                stranger_new.sign(&signed_message(
                    &body,
                    SignatureKind::NewKeyEcdsa,
                    stranger_id,
                ))
            } else {
                stranger_legacy
                    .sign_pss(&signed_message(
                        &body,
                        SignatureKind::LegacyKey,
                        stranger_id,
                    ))
                    .unwrap()
            };
        }
    });
    refused(&h, &name, resigned, S::FORBIDDEN, "not_a_holder").await;

    // D13: the role was written off (exempt) meanwhile.
    h.vault
        .set_migration_state(&[role], MigrationState::Exempt, &audit("test_exempt"))
        .await
        .unwrap();
    refused(&h, &name, honest.clone(), S::CONFLICT, "not_pending").await;
    h.vault
        .set_migration_state(&[role], MigrationState::Pending, &audit("test_pending"))
        .await
        .unwrap();

    // The honest bundle goes through: the refusals above came from the
    // changes. Sent again, it is D11.
    let (status, body) = h
        .raw(
            Method::POST,
            &format!("/v1/principals/{me}/bundle"),
            Some((OCTETS, honest.clone())),
            Who::User(&name),
        )
        .await;
    assert_eq!(status, S::OK, "{body}");
    refused(&h, &name, honest, S::CONFLICT, "already_migrated").await;
    h.stop().await;
}

/// Two members build bundles for the same role; the second to arrive must
/// rebuild. Migrating the role gave the second member a new grant (of the
/// role's new KEK, under its legacy key), so the check of its own part
/// (D20, `coverage_changed`) answers before the role part's D12 would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_migrated_by_another_member_meanwhile_means_rebuild() {
    let h = Harness::new("bundle-checks-race").await;
    let (first, _, others) = role_member(&h).await;
    let Some(second) = others.first() else {
        panic!("the test vault's role has two e2ee members");
    };
    h.admin.start("Start").await.unwrap();
    let late = bundle(&h, second, |_| {}).await;
    let early = bundle(&h, &first, |_| {}).await;
    let id = h.creds.users[&first].id;
    let (status, body) = h
        .raw(
            Method::POST,
            &format!("/v1/principals/{id}/bundle"),
            Some((OCTETS, early)),
            Who::User(&first),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    refused(&h, second, late, StatusCode::CONFLICT, "coverage_changed").await;
    // The rebuilt bundle (without the role, now migrated) goes through.
    let rebuilt = bundle(&h, second, |b| assert_eq!(b.parts.len(), 1)).await;
    let id = h.creds.users[second].id;
    let (status, body) = h
        .raw(
            Method::POST,
            &format!("/v1/principals/{id}/bundle"),
            Some((OCTETS, rebuilt)),
            Who::User(second),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.stop().await;
}
