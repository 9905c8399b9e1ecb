//! Parse arbitrary bytes as an envelope; whatever parses must re-encode to
//! exactly the same bytes and re-parse to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekey_core::Envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::parse(data) {
        assert_eq!(env.as_bytes(), data);
        let rebuilt = {
            let mut prefix = env.enc().to_vec();
            prefix.extend_from_slice(env.nonce());
            Envelope::from_parts(env.scheme(), &prefix, env.ciphertext())
        };
        assert_eq!(rebuilt.as_ref(), Ok(&env));
        assert_eq!(Envelope::parse(env.as_bytes()).as_ref(), Ok(&env));
    }
});
