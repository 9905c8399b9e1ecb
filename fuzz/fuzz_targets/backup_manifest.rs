//! The manifest inside a decrypted certificate backup (magic, version,
//! vault, time, keys with their fingerprints), parsed directly: behind age's
//! authentication the fuzzer could never change a byte of it. Total: any
//! bytes give contents or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekey_keys::{Error, parse_manifest};

fuzz_target!(|data: &[u8]| {
    match parse_manifest(data) {
        Ok(contents) => {
            assert!(contents.fingerprints.len() * 36 <= data.len());
            for fp in &contents.fingerprints {
                assert!(rekey_keys::is_fingerprint(fp), "{fp}");
            }
        }
        Err(e) => {
            assert!(
                matches!(e, Error::NotABackup { .. } | Error::UnusableKey { .. }),
                "unexpected error kind: {e:?}"
            );
            assert!(!e.to_string().is_empty());
        }
    }
});
