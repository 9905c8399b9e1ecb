//! Shared helpers for rekey's criterion benchmarks (see `crypto.rs`).

use rekey_core::{LegacyRsaPrivateKey, PrivateKey};

/// The fixed RSA test keys (made by `cargo xtask fixtures`).
pub fn rsa_fixture(bits: usize) -> PrivateKey {
    let der: &[u8] = match bits {
        4096 => include_bytes!("../crates/rekey-core/tests/fixtures/rsa-4096-a.pk8"),
        _ => include_bytes!("../crates/rekey-core/tests/fixtures/rsa-2048-a.pk8"),
    };
    match LegacyRsaPrivateKey::from_pkcs8_der(der) {
        Ok(key) => PrivateKey::Rsa(key),
        Err(e) => panic!("fixture key does not parse: {e}"),
    }
}
