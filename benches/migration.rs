//! Whole-vault migration through the engine on SQLite: `start` (server
//! phase), every e2ee user logs in (2 × cores clients at once, each
//! building its bundle and submitting it), `finalize`. Each sample seeds a
//! fresh vault first, untimed. Throughput is the demo's legacy grants.
//!
//! The vaults repeat the fixture RSA keys (tests never generate RSA keys):
//! the crypto work per grant is that of distinct keys, only the key
//! material repeats. `cargo xtask bench-report` measures the same flow on
//! larger vaults through the release `rekey` binary, beside the RSA floor.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use rekey_core::LegacyRsaPrivateKey;
use rekey_demo::login::login_in_process;
use rekey_demo::{DemoSpec, DemoVault, KeySource, generate};
use rekey_engine::{Engine, KeyDir};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crates/rekey-core/tests/fixtures"
);

fn fixture_keys(bits: usize) -> Vec<LegacyRsaPrivateKey> {
    let names: &[&str] = if bits == 4096 {
        &["a"]
    } else {
        &["a", "b", "c", "d", "e", "f", "g", "h"]
    };
    names
        .iter()
        .map(|n| {
            let der = std::fs::read(format!("{FIXTURES}/rsa-{bits}-{n}.pk8")).unwrap();
            LegacyRsaPrivateKey::from_pkcs8_der(&der).unwrap()
        })
        .collect()
}

fn demo(users: usize, roles: usize, records: usize, bits: usize) -> DemoVault {
    let spec = DemoSpec {
        users,
        roles,
        records,
        rsa_bits: bits,
        seed: 11,
        with_problems: false,
        kdf: rekey_demo::KdfParams::LIGHT,
    };
    let keys = fixture_keys(bits);
    let n = keys.len();
    generate(
        &spec,
        &mut KeySource::preset(keys).with_distinct_limit(n),
        &|_, _, _| {},
    )
    .unwrap()
}

/// Seeds a fresh SQLite vault with `demo` (untimed), then times start,
/// every login and finalize.
async fn migrate_once(demo: &DemoVault, clients: usize) -> Duration {
    let dir = std::env::temp_dir().join(format!("rekey-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("vault.db").display());
    let engine = Arc::new(
        Engine::init(&url, Some(KeyDir::open(dir.join("keys")).unwrap()), "bench")
            .await
            .unwrap(),
    );
    engine.begin_preparation().await.unwrap();
    demo.install(&engine).await.unwrap();
    // The demo was generated once, before this preparation began: its
    // directory tokens are older, and preflight would block the start on
    // them. Issue them anew, as an administrator would.
    for profile in &demo.data.directory_profiles {
        engine.renew_directory_token(&profile.name).await.unwrap();
    }
    engine
        .backup_certificates_with(
            &dir.join("certificates.age"),
            &rekey_keys::Passphrase::new("bench".into()),
            &rekey_keys::BackupOptions {
                work_factor: Some(4),
                ..rekey_keys::BackupOptions::default()
            },
        )
        .await
        .unwrap();

    let t = Instant::now();
    engine.start("Start", &|_, _, _| {}).await.unwrap();
    let sem = Arc::new(tokio::sync::Semaphore::new(clients));
    let mut tasks = Vec::new();
    for (name, user) in demo.credentials.users.clone() {
        let (engine, sem) = (engine.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            match login_in_process(&engine, &name, &user.password, Some(1), Arc::new(|_, _| {}))
                .await
            {
                // Another member's bundle may already have migrated it.
                Ok(_) => {}
                Err(e) if e.is_already_migrated() => {}
                Err(e) => panic!("{name}: {e}"),
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    engine.finalize(&|_| {}).await.unwrap();
    let elapsed = t.elapsed();
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    elapsed
}

fn migration(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let clients = 2 * std::thread::available_parallelism().map_or(1, usize::from);
    let mut g = c.benchmark_group("migration");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(20));
    for (id, users, roles, records, bits) in [
        ("rsa2048_100_users", 100, 10, 4_500, 2048),
        ("rsa4096_12_users", 12, 2, 400, 4096),
    ] {
        let demo = demo(users, roles, records, bits);
        g.throughput(Throughput::Elements(demo.data.grants.len() as u64));
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| rt.block_on(migrate_once(&demo, clients)))
                    .sum()
            });
        });
    }
    g.finish();
}

criterion_group!(benches, migration);
criterion_main!(benches);
