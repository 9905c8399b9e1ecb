//! rekey-preflight: the preparation checks that `rekey preflight` runs
//! before a migration may start, the report they make, and what an
//! administrator does to clear them (renew a directory token, write a
//! device off, back up and restore the server's certificates).
//!
//! # The checks
//!
//! Each check is a small type implementing [`Check`]: a pure function of
//! the [`Facts`] the runner loads once from the vault (and the key
//! directory, and the disk). Each returns a [`CheckResult`]: an
//! [`Outcome`] (`pass`, `warn` or `block`), the evidence (names of users,
//! devices, servers, profiles, certificate fingerprints, counts and the
//! first ids; never key material, passphrases or tokens), and the remedy in
//! one sentence. `rekey start` refuses while any check blocks, naming them
//! ([`Report::blocking`]).
//!
//! | name | pass | warn | block |
//! |---|---|---|---|
//! | `component-versions` | `server`, `desktop_client` and `web_client` at or above the latest known version | a component below the latest known version, not reporting its version, or reporting one that cannot be read | a component below the first version that speaks ECC ([`REQUIRED_COMPONENTS`]: 10.0.0 for each; latest known 10.1.0) |
//! | `offline-devices` | offline access not allowed, or every offline add-on synchronised or written off | sync state unknown (never synchronised); offline access not allowed but a device still reports unsynchronised changes | offline access allowed and an offline add-on holds unsynchronised changes (lost once the vault is read-only) |
//! | `mobile-devices` | the same for mobile apps and the mobile-sync setting | | |
//! | `certificates` | every certificate has a backup digest recorded by `rekey cert backup` (newer than the certificate where its creation time is known; equal to the SHA-256 of the backup file if one is given) and its private key is in the key directory and matches | | a certificate without such a backup, or whose key is missing or unusable; certificates exist but no key directory was given |
//! | `users` | no unpurged users, no long-absent e2ee users | active e2ee users not logged in for 90 days ([`checks::INACTIVE_AFTER_MS`]) or never, where the vault records logins | users deactivated or deleted but not purged (they can never log in, so the migration could never finish) |
//! | `active-server` | exactly one server with a heartbeat in the last 5 minutes ([`checks::HEARTBEAT_WINDOW_MS`]) | | none, or more than one |
//! | `server-certificates` | every server in the vault's server list reported every certificate's fingerprint (heartbeat, or `rekey cert import --server-name`) | a server lacks one (it cannot serve that key; finalize refuses while a server lacks a new one) | |
//! | `directory-tokens` | every directory-sync profile's token was issued at or after preparation began | | a profile whose token is older, or that has none |
//! | `legacy-data` | every legacy grant parses as an envelope of a legacy scheme, every grantee has a legacy RSA public key that parses, no record without any grant | RSA keys whose modulus is not 2048, 3072 or 4096 bits; records without a grant not checkable | any of the pass conditions broken |
//! | `disk-space` | a SQLite file's file system has twice the estimated growth free; other databases (the estimate is shown) | less than that free, or free space unknown | |
//!
//! The growth estimate ([`checks::estimated_growth`]) is the legacy grant
//! envelopes' total size plus [`checks::GRANT_ROW_OVERHEAD_BYTES`] per
//! grant: the new grants roughly double the grant table until
//! finalization.
//!
//! **When preparation began.** The directory-token check compares with
//! [`Options::preparation_started_at`]. The CLI passes nothing: the runner
//! then uses the time of the `preparation_began` audit event and, if there
//! is none, the first preflight run records one (so "preparation began"
//! is the first `rekey preflight`, and tokens renewed after it pass).
//! [`renew_directory_token`] records it too if it was not yet.
//!
//! # Exit codes
//!
//! [`Report::exit_code`]: **0** every check passes, **1** the worst outcome
//! is a warning, **2** at least one check blocks.
//!
//! # The JSON report
//!
//! [`Report::to_json`] (format `rekey-preflight/1`; the shape changes only
//! with that string):
//!
//! ```json
//! {
//!   "format": "rekey-preflight/1",
//!   "checked_at": 1748779200000,
//!   "overall": "block",
//!   "exit_code": 2,
//!   "blocking": ["users"],
//!   "checks": [
//!     {
//!       "check": "users",
//!       "outcome": "block",
//!       "evidence": ["deactivated or deleted, not purged (1): bob (deleted)"],
//!       "remedy": "Purge or restore each listed user: …"
//!     }
//!   ]
//! }
//! ```
//!
//! - `checked_at`: milliseconds since the Unix epoch (UTC).
//! - `overall`: the worst outcome; `exit_code`: 0, 1 or 2 as above.
//! - `blocking`: names of the checks that block, in check order.
//! - `checks`: every check, in the order of the table above; `outcome` is
//!   `pass`, `warn` or `block`; `evidence` lines are for people (not a
//!   parsing contract); `remedy` is one sentence.
//!
//! [`Report::to_text`] prints the same as an aligned table (outcome,
//! check, first evidence line, remedy), then every evidence line of each
//! check that did not pass, then `overall: … (exit N); blocking: …`.
//!
//! # Key directory and certificate backups
//!
//! A server's key directory holds one file per certificate, named
//! `<fingerprint>.pk8`, with the PKCS#8 DER of its legacy RSA private key;
//! the fingerprint is the lower-case hex SHA-256 of the public key's SPKI
//! DER ([`fingerprint`]).
//!
//! [`backup`] writes one age file (binary, not armored) encrypted to a
//! passphrase (age's scrypt recipient, work factor [`DEFAULT_WORK_FACTOR`];
//! a file asking for more than [`MAX_WORK_FACTOR`] is refused before any
//! scrypt work) holding every certificate's private
//! key, the vault's identity and the fingerprints, decrypts it again to
//! verify it, writes it atomically (mode 0600), and records its SHA-256 on
//! every certificate and in the audit log (`certificate_backup`). The age
//! payload is this manifest (integers big-endian, nothing after the last
//! key):
//!
//! ```text
//! "rekey-cert-backup\0"  18 bytes   magic
//! version                 1 byte    1
//! vault id               16 bytes
//! created at              8 bytes   i64 milliseconds since the epoch
//! key count               4 bytes   u32
//! per key:  fingerprint  32 bytes   SHA-256 of the public key's SPKI DER
//!           length        4 bytes   u32
//!           private key   `length` bytes of PKCS#8 DER
//! ```
//! [`verify`] checks a file with its passphrase; [`import`] restores
//! the keys into a key directory (temporary files, mode 0600, then
//! renames). A wrong passphrase ([`Error::WrongPassphrase`]), a truncated
//! or altered file ([`Error::DamagedBackup`]), a file that is not such a
//! backup ([`Error::NotABackup`]) or a backup of another vault
//! ([`Error::OtherVault`]) is refused before anything is written.
//!
//! A backup names its vault by the vault id made at `rekey init`
//! ([`vault_identity`]).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod actions;
mod check;
pub mod checks;
mod error;
mod facts;
mod report;
mod runner;
mod time;
mod version;

pub use actions::{
    DEVICE_WRITTEN_OFF, DIRECTORY_TOKEN_RENEWED, DirectoryToken, PREPARATION_BEGAN, PurgeReport,
    USER_PURGED, USER_RESTORED, begin_preparation, preparation_began, purge_user,
    renew_directory_token, restore_user, write_off_device,
};
pub use check::{Check, CheckResult, EVIDENCE_LIMIT, Outcome};
pub use error::{Error, Result};
pub use facts::{
    BackupFileFacts, CertificateFacts, Facts, LastLogin, LegacyScan, StorageFacts, USUAL_RSA_BITS,
};
pub use report::{JSON_FORMAT, JsonReport, Report};
pub use runner::{Options, load, run, run_checks};
pub use version::{ComponentRequirement, REQUIRED_COMPONENTS, Version};
