//! Storage throughput: grants/s applying a 10,000-grant write set, and
//! pages/s streaming a principal's pending grants (1,000 per page), on
//! SQLite (a temporary file) and PostgreSQL (when reachable at
//! `REKEY_TEST_POSTGRES_URL` or postgres://root@127.0.0.1:5432/test, in a
//! schema of its own that is dropped afterwards).
//!
//! `cargo bench -p rekey-storage --bench storage`
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub, dead_code)]

#[path = "../tests/contract/fixtures.rs"]
mod fixtures;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use fixtures::{audit, fixture, write_set};
use rekey_storage::Vault;
use rekey_test_support::lifecycle::start_user_phase;
use sea_orm::{ConnectionTrait, Database};
use std::time::{Duration, Instant};

const GRANTS: usize = 10_000;
const PAGE: u64 = 1_000;

struct Target {
    name: &'static str,
    url: String,
    cleanup: Option<(String, String)>,
}

async fn targets() -> Vec<Target> {
    let dir = std::env::temp_dir().join(format!("rekey-bench-{}.db", uuid::Uuid::new_v4()));
    let mut out = vec![Target {
        name: "sqlite",
        url: format!("sqlite://{}?mode=rwc", dir.display()),
        cleanup: None,
    }];
    let admin = std::env::var("REKEY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned());
    match Database::connect(admin.as_str()).await {
        Ok(conn) => {
            let schema = format!("rekey_bench_{}", uuid::Uuid::new_v4().simple());
            conn.execute_unprepared(&format!("CREATE SCHEMA {schema}"))
                .await
                .unwrap();
            let sep = if admin.contains('?') { '&' } else { '?' };
            out.push(Target {
                name: "postgres",
                url: format!("{admin}{sep}options[search_path]={schema}"),
                cleanup: Some((admin, schema)),
            });
        }
        Err(_) => eprintln!("skipped: no PostgreSQL at 127.0.0.1:5432"),
    }
    out
}

/// A vault holding one user with `GRANTS` legacy grants, in user phase.
async fn prepare(url: &str) -> (Vault, rekey_core::ids::PrincipalId) {
    let vault = Vault::init(url).await.unwrap();
    let f = fixture(1, GRANTS);
    vault.seed(&f.data, 5_000).await.unwrap();
    to_user_phase(&vault).await;
    (vault, f.users[0].id)
}

async fn to_user_phase(vault: &Vault) {
    start_user_phase(vault, &audit("start"), &audit("s")).await;
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let targets = rt.block_on(targets());
    for target in &targets {
        let (vault, user) = rt.block_on(prepare(&target.url));
        let pending = rt.block_on(async {
            let mut all = Vec::new();
            let mut cursor = vault.pending_grants(user, PAGE);
            while let Some(page) = cursor.next_page().await.unwrap() {
                all.extend(page);
            }
            all
        });
        assert_eq!(pending.len(), GRANTS);

        let mut g = c.benchmark_group(format!("storage/{}", target.name));
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(5));

        g.throughput(Throughput::Elements(GRANTS as u64 / PAGE));
        g.bench_function("stream_pending_grants_pages_of_1000", |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut cursor = vault.pending_grants(user, PAGE);
                    let mut n = 0;
                    while let Some(page) = cursor.next_page().await.unwrap() {
                        n += page.len();
                    }
                    assert_eq!(n, GRANTS);
                });
            });
        });

        g.throughput(Throughput::Elements(GRANTS as u64));
        g.bench_function("apply_10000_grant_write_set", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        // Untimed: back to a pending user (abort removes
                        // what the last round wrote), fresh write set.
                        let ws = write_set(user, &pending);
                        let start = Instant::now();
                        vault.apply(&ws).await.unwrap();
                        total += start.elapsed();
                        let m = vault.migration().await.unwrap();
                        vault.abort(m.version, &audit("abort")).await.unwrap();
                        to_user_phase(&vault).await;
                    }
                    total
                })
            });
        });
        g.finish();
        rt.block_on(async {
            vault.drop_schema().await.unwrap();
            vault.close().await.unwrap();
        });
    }
    rt.block_on(async {
        for t in &targets {
            match &t.cleanup {
                Some((admin, schema)) => {
                    if let Ok(conn) = Database::connect(admin.as_str()).await {
                        let _ = conn
                            .execute_unprepared(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .await;
                    }
                }
                None => {
                    if let Some(path) = t
                        .url
                        .strip_prefix("sqlite://")
                        .and_then(|p| p.split('?').next())
                    {
                        for s in ["", "-wal", "-shm", "-journal"] {
                            let _ = std::fs::remove_file(format!("{path}{s}"));
                        }
                    }
                }
            }
        }
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
