//! The role checks JSON (`rekey-role-checks/1`, PROTOCOL §15) as a member's
//! client parses what a (possibly hostile) server sent, then checks each
//! role with a fixed master secret. Total: any bytes give checks or a
//! `RoleChecksError`, and checking gives a receipt or a `ConfirmError`,
//! never a panic.
//!
//! The expected account is the one the JSON names (when it names one), so
//! the fuzzer is not stopped at the check that the checks are for the
//! account asked for; the unit tests cover that check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekey_core::MasterSecret;
use rekey_core::confirm::{RoleChecksError, RoleChecksJson, confirm_role, parse_role_checks};

fuzz_target!(|data: &[u8]| {
    let holder = match serde_json::from_slice::<RoleChecksJson>(data) {
        Ok(json) => json.holder,
        Err(_) => {
            let r = parse_role_checks(data, rekey_core::PrincipalId::from_bytes([0; 16]), None);
            assert!(matches!(r, Err(RoleChecksError::Json(_))), "{r:?}");
            return;
        }
    };
    match parse_role_checks(data, holder, None) {
        Ok(checks) => {
            let master = MasterSecret::from_slice(&[7; 32]).expect("32 bytes");
            for check in &checks {
                if let Err(e) = confirm_role(check, &master) {
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
