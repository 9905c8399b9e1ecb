//! Bundle build (client) for users with 100 / 1,000 / 10,000 legacy grants
//! on 1 and 2 threads, and the server's check of the same bundles; at 1,000
//! grants also both for the post-quantum hybrid target. The RSA unwraps
//! dominate the build: compare with `rsa_unwrap` in `crypto`.

#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand_core::OsRng;
use rekey_benches::rsa_fixture;
use rekey_core::bundle::*;
use rekey_core::kek::wrap_private_key;
use rekey_core::model::MigrationState;
use rekey_core::*;
use std::collections::HashMap;

struct Fixture {
    package: MigrationPackage,
    master: MasterSecret,
    context: CheckContext,
}

fn fixture(grants: usize, target: Target) -> Fixture {
    let PrivateKey::Rsa(key) = rsa_fixture(2048) else {
        unreachable!()
    };
    let vault = VaultId::random();
    let run = RunId::random();
    let user = PrincipalId::random();
    let kp = KeyPairId::random();
    let master = MasterSecret::from_slice(&[7u8; 32]).unwrap();
    let kek = Kek::derive(&master, vault, user).unwrap();
    let wrapped = wrap_private_key(
        &mut OsRng,
        &kek,
        &KeyBinding {
            vault,
            owner: user,
            key_pair: kp,
        },
        key.dangerous_pkcs8_der(),
    )
    .unwrap();
    let pk = key.public_key();
    let pending: Vec<PendingGrant> = (0..grants)
        .map(|_| {
            let id = GrantId::random();
            let subject = Subject::RecordKey(RecordId::random());
            let env = wrap_legacy_grant(&pk, Scheme::RsaOaepSha256, &[9u8; 32]).unwrap();
            PendingGrant {
                id,
                subject,
                envelope_bytes: env.into_bytes(),
            }
        })
        .collect();
    let context = CheckContext {
        vault,
        run,
        target,
        submitter: user,
        principals: HashMap::from([(
            user,
            PrincipalFacts {
                name: "bench".into(),
                state: MigrationState::Pending,
                legacy_key_pair: kp,
                legacy_public_key: rekey_core::PublicKey::Rsa(pk.clone()),
                pending_grants: pending.iter().map(|g| (g.id, g.subject)).collect(),
                holders: vec![],
                key_in_database: true,
            },
        )]),
        holders: HashMap::new(),
        taken_key_pairs: std::collections::HashSet::new(),
    };
    Fixture {
        package: MigrationPackage {
            vault,
            run,
            principal: user,
            target,
            legacy_key: PackageLegacyKey {
                id: kp,
                public_key: rekey_core::PublicKey::Rsa(pk),
                wrapped_private: Some(wrapped),
            },
            pending_grants: pending,
            candidates: vec![],
        },
        master,
        context,
    }
}

fn bundles(c: &mut Criterion) {
    let mut group = c.benchmark_group("bundle");
    group.sample_size(10);
    for grants in [100usize, 1_000, 10_000] {
        let f = fixture(grants, Target::HpkeP256);
        group.throughput(Throughput::Elements(grants as u64));
        for threads in [1usize, 2] {
            let options = BuildOptions {
                threads: Some(threads),
            };
            group.bench_function(
                BenchmarkId::new(format!("build_{threads}_threads"), grants),
                |b| {
                    b.iter(|| {
                        build_bundle(&f.package, Unlock::MasterSecret(&f.master), options).unwrap()
                    })
                },
            );
        }
        let built = build_bundle(
            &f.package,
            Unlock::MasterSecret(&f.master),
            BuildOptions::default(),
        )
        .unwrap();
        let bytes = built.bundle.encode();
        group.bench_function(BenchmarkId::new("parse_and_check", grants), |b| {
            b.iter(|| {
                let signed = SignedBundle::parse(&bytes).unwrap();
                check_bundle(&signed, &f.context).unwrap()
            })
        });
    }
    // The hybrid target: the same work with X-Wing keys and grants.
    let grants = 1_000;
    let f = fixture(grants, Target::HpkeMlKem768X25519);
    group.throughput(Throughput::Elements(grants as u64));
    let options = BuildOptions { threads: Some(2) };
    group.bench_function(BenchmarkId::new("build_2_threads_hybrid", grants), |b| {
        b.iter(|| build_bundle(&f.package, Unlock::MasterSecret(&f.master), options).unwrap())
    });
    let bytes = build_bundle(&f.package, Unlock::MasterSecret(&f.master), options)
        .unwrap()
        .bundle
        .encode();
    group.bench_function(BenchmarkId::new("parse_and_check_hybrid", grants), |b| {
        b.iter(|| {
            let signed = SignedBundle::parse(&bytes).unwrap();
            check_bundle(&signed, &f.context).unwrap()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = bundles
}
criterion_main!(benches);
