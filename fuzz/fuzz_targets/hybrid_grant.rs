//! Arbitrary bytes against the post-quantum hybrid code: as an envelope
//! opened with a fixed hybrid key (every outcome is a value or an error,
//! and a refusal of a parsed X-Wing envelope is the opaque `Decrypt`), and
//! as X-Wing and hybrid public keys (whatever parses re-encodes to the
//! same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekey_core::*;
use std::sync::LazyLock;

static KEY: LazyLock<PrivateKey> = LazyLock::new(|| {
    let mut bytes = [7u8; HybridPrivateKey::LEN];
    bytes[63] = 1; // a P-256 scalar below the group order
    PrivateKey::Hybrid(HybridPrivateKey::from_bytes(&bytes).expect("fixed key"))
});

fuzz_target!(|data: &[u8]| {
    let binding = GrantBinding {
        vault: VaultId::from_bytes([1; 16]),
        recipient: PrincipalId::from_bytes([2; 16]),
        subject: Subject::RecordKey(RecordId::from_bytes([3; 16])),
    };
    if let Ok(env) = Envelope::parse(data) {
        let opened = open_grant(&KEY, &binding, &env);
        if matches!(
            env.scheme(),
            Scheme::HpkeMlKem768X25519 | Scheme::HpkeMlKem768X25519Export
        ) {
            // Nobody sealed these bytes to KEY: they must not open, and the
            // refusal says no more than "could not decrypt".
            assert_eq!(opened.err(), Some(CryptoError::Decrypt));
        }
    }
    if let Ok(pk) = XWingPublicKey::from_bytes(data) {
        assert_eq!(pk.as_bytes(), data);
    }
    if let Ok(pk) = HybridPublicKey::from_bytes(data) {
        assert_eq!(pk.to_bytes(), data);
    }
});
