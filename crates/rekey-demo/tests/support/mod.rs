//! Shared by the demo crate's integration tests: a demo vault seeded from
//! the fixture keys and backed up (so preflight lets `start` through), and
//! short forms of the simulated client's calls.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use rekey_client::MigrateReport;
use rekey_demo::reader::{Reader, VerifyReport};
use rekey_demo::{Credentials, DemoError, DemoSpec, KeySource, generate};
use rekey_engine::{Engine, KeyDir};
use rekey_keys::{BackupOptions, Passphrase};
use rekey_storage::Vault;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use rekey_test_support::fixtures::rsa_2048 as fixture_keys;

/// A fresh directory for one test.
pub fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(rekey_test_support::unique(name));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// 4 users + 1 role + 3 services = the 8 fixture keys.
pub fn spec() -> DemoSpec {
    DemoSpec {
        users: 4,
        roles: 1,
        records: 40,
        rsa_bits: 2048,
        seed: 7,
        with_problems: false,
        kdf: rekey_demo::KdfParams::LIGHT,
    }
}

/// A demo vault of `spec` at `url` with its keys in `keydir`, the
/// certificates backed up (a light work factor). Answers the engine, a
/// second handle on the vault for the test's own looks, and the
/// credentials.
pub async fn seeded_with(
    url: &str,
    keydir: &Path,
    spec: &DemoSpec,
) -> (Engine, Vault, Credentials) {
    let engine = Engine::init(url, Some(KeyDir::open(keydir).unwrap()), "test")
        .await
        .unwrap();
    // As the demo's seed does: preparation begins before anything is
    // issued (so no later preflight writes to the audit log).
    engine.begin_preparation().await.unwrap();
    let demo = generate(spec, &mut KeySource::preset(fixture_keys()), &|_, _, _| {}).unwrap();
    demo.install(&engine).await.unwrap();
    back_up(&engine, keydir).await;
    (engine, Vault::open(url).await.unwrap(), demo.credentials)
}

/// [`seeded_with`] the default [`spec`].
pub async fn seeded(url: &str, keydir: &Path) -> (Engine, Vault, Credentials) {
    seeded_with(url, keydir, &spec()).await
}

/// Backs the certificates up beside the key directory, as an operator does
/// before start.
pub async fn back_up(engine: &Engine, keydir: &Path) {
    let out = keydir.with_extension("age");
    engine
        .backup_certificates_with(
            &out,
            &Passphrase::new("test passphrase".into()),
            &BackupOptions {
                work_factor: Some(4),
                ..BackupOptions::default()
            },
        )
        .await
        .unwrap();
}

/// Every demo user reads what it should.
pub async fn verify(engine: &Engine, creds: &Credentials) -> VerifyReport {
    Reader::new(engine).verify(creds, &|_, _| {}).await.unwrap()
}

/// One user logs in, in-process.
pub async fn login(
    engine: &Engine,
    name: &str,
    password: &str,
    threads: Option<usize>,
) -> Result<MigrateReport, DemoError> {
    rekey_demo::login::login_in_process(engine, name, password, threads, Arc::new(|_, _| {})).await
}
