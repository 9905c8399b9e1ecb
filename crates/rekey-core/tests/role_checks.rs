//! The role checks parser (`rekey-role-checks/1`, PROTOCOL §15) takes what
//! a possibly hostile server sent: arbitrary bytes, and documents of the
//! right shape whose byte strings are arbitrary, give an error, never a
//! panic; the checks of a document that parses never panic either.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use rekey_core::MasterSecret;
use rekey_core::PrincipalId;
use rekey_core::confirm::{confirm_role, parse_role_checks};

const HOLDER: &str = "0cafcb15-e70b-4d77-bbb0-80de7fac163f";

fn key_pair(id: u8, state: &str, public_key: &str, wrapped: &str) -> serde_json::Value {
    serde_json::json!({
        "id": format!("00000000-0000-4000-8000-0000000000{id:02x}"),
        "owner": HOLDER,
        "state": state,
        "public_key": public_key,
        "wrapped_private": wrapped,
    })
}

fn document(public_key: &str, wrapped: &str, envelope: &str, ciphertext: &str) -> Vec<u8> {
    let grant = serde_json::json!({
        "id": "00000000-0000-4000-8000-0000000000aa",
        "recipient": HOLDER,
        "subject": { "kind": "private_key", "id": "00000000-0000-4000-8000-000000000002" },
        "envelope": envelope,
    });
    serde_json::to_vec(&serde_json::json!({
        "format": "rekey-role-checks/1",
        "vault": "9a374450-4560-439e-8670-b7a17d492b27",
        "run": "147ffc73-5150-4a5d-8700-5c4cf26120c8",
        "holder": HOLDER,
        "roles": [{
            "role": "00000000-0000-4000-8000-0000000000bb",
            "holder_keys": [key_pair(1, "current", public_key, wrapped)],
            "role_current": key_pair(2, "current", public_key, wrapped),
            "role_legacy": key_pair(3, "legacy", public_key, wrapped),
            "holder_grants": [grant.clone()],
            "role_grants": [grant.clone()],
            "records": [{ "id": "00000000-0000-4000-8000-0000000000cc", "ciphertext": ciphertext }],
            "subject_keys": [],
            "disowned": [grant],
        }],
    }))
    .unwrap()
}

fn holder() -> PrincipalId {
    HOLDER.parse().unwrap()
}

proptest! {
    #[test]
    fn arbitrary_bytes_are_refused_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        prop_assert!(parse_role_checks(&bytes, holder(), None).is_err());
    }

    #[test]
    fn arbitrary_byte_strings_in_a_well_formed_document_never_panic(
        public_key in "[0-9a-f]{0,140}",
        wrapped in "[0-9a-fA-Z]{0,160}",
        envelope in prop_oneof![Just("726b0111".to_owned()), "[0-9a-f]{0,300}"],
        ciphertext in "[0-9a-f]{0,120}",
    ) {
        let doc = document(&public_key, &wrapped, &envelope, &ciphertext);
        if let Ok(checks) = parse_role_checks(&doc, holder(), None) {
            let master = MasterSecret::from_slice(&[7; 32]).unwrap();
            for check in &checks {
                // Nothing here unlocks: the master secret is not the holder's.
                prop_assert!(confirm_role(check, &master).is_err());
            }
        }
    }
}

#[test]
fn checks_for_another_account_or_vault_are_refused() {
    let doc = document("04", "726b0120", "726b0111", "01");
    let other: PrincipalId = "00000000-0000-4000-8000-000000000099".parse().unwrap();
    assert!(parse_role_checks(&doc, other, None).is_err());
    let vault = "00000000-0000-4000-8000-000000000098".parse().unwrap();
    assert!(parse_role_checks(&doc, holder(), Some(vault)).is_err());
}
