//! A certificate backup file as `rekey cert verify` / `cert import` read
//! it: age header, scrypt stanza, payload, then the manifest inside. Any
//! bytes give contents or an error, never a panic.
//!
//! The seeds (seeds/backup_file) are real backups encrypted to
//! [`PASSPHRASE`] with scrypt work factor 1, so mutations that keep the
//! header valid get through to the payload. The work factor cap is lowered
//! to 2 here: a mutated stanza asking for more is refused before any
//! scrypt work, through the same check that refuses anything above
//! `MAX_WORK_FACTOR` in production (a file cannot make us spend seconds and
//! gigabytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekey_keys::{Error, Passphrase, open_backup_bytes};

/// The passphrase of the seed files.
const PASSPHRASE: &str = "rekey fuzz seed passphrase";
const MAX_WORK_FACTOR: u8 = 2;

fuzz_target!(|data: &[u8]| {
    let passphrase = Passphrase::new(PASSPHRASE.to_owned());
    match open_backup_bytes(data, &passphrase, MAX_WORK_FACTOR) {
        Ok(contents) => {
            // Every key is 36 bytes of header plus its DER at least.
            assert!(contents.fingerprints.len() * 36 <= data.len());
        }
        Err(e) => {
            assert!(
                matches!(
                    e,
                    Error::WrongPassphrase
                        | Error::DamagedBackup { .. }
                        | Error::NotABackup { .. }
                        | Error::UnusableKey { .. }
                ),
                "unexpected error kind: {e:?}"
            );
            assert!(!e.to_string().is_empty());
        }
    }
});
