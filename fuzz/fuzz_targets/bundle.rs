//! Parse arbitrary bytes as a signed bundle; whatever parses must
//! re-encode to exactly the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekey_core::bundle::SignedBundle;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = SignedBundle::parse(data) {
        assert_eq!(bundle.encode(), data);
    }
});
