//! The fixed RSA test keys (made by `cargo xtask fixtures`), read from
//! `crates/rekey-core/tests/fixtures/`.

use rekey_core::LegacyRsaPrivateKey;
use std::path::PathBuf;

/// The fixture directory.
#[must_use]
pub fn dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rekey-core/tests/fixtures"
    ))
}

/// The eight fixture RSA-2048 keys, `a` to `h`.
#[must_use]
pub fn rsa_2048() -> Vec<LegacyRsaPrivateKey> {
    ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .map(|c| rsa(&format!("rsa-2048-{c}.pk8")))
        .collect()
}

/// One fixture key by file name.
#[must_use]
pub fn rsa(name: &str) -> LegacyRsaPrivateKey {
    let der = std::fs::read(dir().join(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e} (cargo xtask fixtures makes it)"));
    LegacyRsaPrivateKey::from_pkcs8_der(&der).expect("a fixture key parses")
}

/// The demo key cache of the command-line tests (16 RSA-2048 keys).
#[must_use]
pub fn demo_key_cache() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rekey-cli/tests/fixtures/demo-keys-2048.cache"
    ))
}
