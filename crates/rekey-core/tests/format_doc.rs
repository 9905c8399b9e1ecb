#![allow(clippy::unwrap_used, clippy::expect_used)]
//! docs/FORMAT.md's worked examples are what the code computes today, and
//! the sizes its prose states are those of the envelopes and keys the code
//! makes.

use rand_core::OsRng;
use rekey_core::{
    BatchSealer, Curve, EcPrivateKey, HybridPrivateKey, HybridPublicKey, PrincipalId, RecordId,
    Subject, VaultId, XWingPublicKey, worked_examples,
};

fn doc() -> String {
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md");
    std::fs::read_to_string(doc_path).expect("docs/FORMAT.md exists")
}

#[test]
fn worked_examples_match_the_code() {
    let doc = doc();
    let generated = worked_examples::markdown(
        include_bytes!("fixtures/rsa-2048-a.pk8"),
        include_bytes!("fixtures/worked-example-rsa-oaep-sha256.bin"),
    )
    .expect("every worked example round-trips");
    let expected = worked_examples::splice(&doc, &generated).expect("markers present");
    assert!(
        doc == expected,
        "docs/FORMAT.md is stale: run `cargo xtask format-doc` and commit the result"
    );
}

/// The hybrid key and `enc` sizes of §3.1 and §3.2, and what one
/// re-wrapped 32-byte secret costs per batch scheme (§4).
#[test]
fn stated_sizes_match_the_code() {
    let doc = doc();
    let (vault, recipient) = (VaultId::random(), PrincipalId::random());
    let subject = Subject::RecordKey(RecordId::random());
    let secret = [7u8; 32];

    let hybrid = HybridPrivateKey::generate(&mut OsRng).unwrap();
    assert_eq!(XWingPublicKey::LEN, 1216);
    assert_eq!(XWingPublicKey::ENC_LEN, 1120);
    assert_eq!(HybridPublicKey::LEN, 1281);
    assert_eq!(hybrid.public_key().to_bytes().len(), 1281);
    assert_eq!(hybrid.dangerous_to_bytes().len(), 64);
    for stated in [
        "public key    = ek_M (1184) ‖ pk_X (32)          # 1216 bytes",
        "enc           = ct_M (1088) ‖ ct_X (32)          # 1120 bytes",
        "‖ P-256 point, uncompressed SEC1 (65)   # 1281 bytes",
        "X-Wing seed (32) ‖ P-256 scalar, big-endian (32)                 # 64 bytes",
    ] {
        assert!(
            doc.contains(stated),
            "FORMAT.md no longer states {stated:?}"
        );
    }

    let sealers = [
        (
            BatchSealer::new(
                &mut OsRng,
                &EcPrivateKey::generate(Curve::P256, &mut OsRng).public_key(),
                vault,
                recipient,
            )
            .unwrap(),
            "4 + 65 + 12 + 32 + 16 = 129",
            129,
        ),
        (
            BatchSealer::new(
                &mut OsRng,
                &EcPrivateKey::generate(Curve::P521, &mut OsRng).public_key(),
                vault,
                recipient,
            )
            .unwrap(),
            "4 + 133 + 12 + 32 + 16 = 197",
            197,
        ),
        (
            BatchSealer::new_hybrid(
                &mut OsRng,
                hybrid.public_key_ref().kem_key(),
                vault,
                recipient,
            )
            .unwrap(),
            "4 + 1120 + 12 + 32 + 16 = 1,184",
            1184,
        ),
    ];
    let doc_flat = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    for (sealer, stated, len) in sealers {
        let env = sealer.seal(&mut OsRng, subject, &secret).unwrap();
        assert_eq!(env.as_bytes().len(), len, "{}", sealer.scheme());
        assert!(
            doc_flat.contains(stated),
            "FORMAT.md §4 no longer states {stated:?}"
        );
    }
}
