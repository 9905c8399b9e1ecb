//! The migration package JSON (`rekey-package/2`) as a client parses what
//! a (possibly hostile) server sent. Total: any bytes give a package or a
//! `PackageError`, never a panic; a package that parses re-encodes to JSON
//! that parses to the same package.
//!
//! The expected account and vault are the ones the JSON names (when it
//! names them), so the fuzzer is not stopped at the check that the package
//! is for the account asked for; the unit tests cover that check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekey_core::bundle::package::{PackageError, PackageJson, parse_package};

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<PackageJson>(data) else {
        // Not the JSON shape: the parser says so.
        let r = parse_package(data, rekey_core::PrincipalId::from_bytes([0; 16]), None);
        assert!(matches!(r, Err(PackageError::Json(_))), "{r:?}");
        return;
    };
    let (principal, vault) = (json.principal, json.vault);
    match parse_package(data, principal, Some(vault)) {
        Ok(package) => {
            let again = serde_json::to_vec(&PackageJson::from(&package)).expect("serialises");
            assert_eq!(
                parse_package(&again, principal, Some(vault)).as_ref(),
                Ok(&package)
            );
        }
        Err(e) => {
            assert!(!matches!(e, PackageError::Json(_)), "{e:?}");
            assert!(!e.to_string().is_empty());
        }
    }
});
