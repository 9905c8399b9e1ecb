//! Parse arbitrary bytes as a signed bundle; whatever parses must
//! re-encode to exactly the same bytes.
//!
//! The seeds (seeds/bundle, written by rekey-server's request_bodies test)
//! are real bundles with parts, grants and holder grants. Without them the
//! fuzzer never gets past the magic bytes, and from a bundle without parts
//! it cannot make a part of its own: each needs a public key that is a
//! point on its curve.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekey_core::bundle::SignedBundle;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = SignedBundle::parse(data) {
        assert_eq!(bundle.encode(), data);
    }
});
