//! Shared by the engine's integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use rekey_core::LegacyRsaPrivateKey;

/// The eight fixture RSA-2048 keys (tests never generate RSA keys):
/// exactly 4 users + 1 role + 3 services.
pub fn fixture_keys() -> Vec<LegacyRsaPrivateKey> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../rekey-core/tests/fixtures");
    ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .map(|c| {
            let der = std::fs::read(format!("{dir}/rsa-2048-{c}.pk8")).unwrap();
            LegacyRsaPrivateKey::from_pkcs8_der(&der).unwrap()
        })
        .collect()
}
