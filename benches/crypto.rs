//! µs per operation for every scheme: legacy RSA unwrap (the migration's
//! floor), HPKE single seal/open, batch seal/open per grant and batch setup
//! (P-256, P-521 and the post-quantum hybrid X-Wing), KEK wrap.

#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand_core::OsRng;
use rekey_benches::rsa_fixture;
use rekey_core::kek::{
    unwrap_hybrid_private_key, unwrap_private_key, wrap_hybrid_private_key, wrap_private_key,
};
use rekey_core::*;
use std::hint::black_box;

fn binding(recipient: PrincipalId) -> GrantBinding {
    GrantBinding {
        vault: VaultId::from_bytes([1; 16]),
        recipient,
        subject: Subject::RecordKey(RecordId::from_bytes([2; 16])),
    }
}

fn rsa_unwrap(c: &mut Criterion) {
    let mut group = c.benchmark_group("rsa_unwrap");
    group.throughput(Throughput::Elements(1));
    let b = binding(PrincipalId::from_bytes([3; 16]));
    for (bits, scheme) in [
        (2048, Scheme::RsaOaepSha1),
        (2048, Scheme::RsaOaepSha256),
        (2048, Scheme::RsaOaepSha256Mgf1Sha1),
        (4096, Scheme::RsaOaepSha256),
    ] {
        let key = rsa_fixture(bits);
        let PublicKey::Rsa(pk) = key.public_key() else {
            unreachable!()
        };
        let env = wrap_legacy_grant(&pk, scheme, &[7u8; 32]).unwrap();
        group.bench_function(BenchmarkId::new(scheme.name(), bits), |bench| {
            bench.iter(|| open_grant(&key, &b, black_box(&env)).unwrap())
        });
    }
    group.finish();
}

fn hpke(c: &mut Criterion) {
    let mut group = c.benchmark_group("hpke");
    group.throughput(Throughput::Elements(1));
    let recipient = PrincipalId::from_bytes([3; 16]);
    let b = binding(recipient);
    let secret = [9u8; 32];
    for curve in [Curve::P256, Curve::P521] {
        let sk = EcPrivateKey::generate(curve, &mut OsRng);
        let pk = sk.public_key();
        let key = PrivateKey::Ec(sk);
        let name = format!("{curve:?}");
        group.bench_function(BenchmarkId::new("single_seal", &name), |bench| {
            bench.iter(|| seal_grant(&mut OsRng, &pk, &b, black_box(&secret)).unwrap())
        });
        let env = seal_grant(&mut OsRng, &pk, &b, &secret).unwrap();
        group.bench_function(BenchmarkId::new("single_open", &name), |bench| {
            bench.iter(|| open_grant(&key, &b, black_box(&env)).unwrap())
        });
        let sealer = BatchSealer::new(&mut OsRng, &pk, b.vault, recipient).unwrap();
        group.bench_function(BenchmarkId::new("batch_seal_per_grant", &name), |bench| {
            bench.iter(|| {
                sealer
                    .seal(&mut OsRng, b.subject, black_box(&secret))
                    .unwrap()
            })
        });
        let env = sealer.seal(&mut OsRng, b.subject, &secret).unwrap();
        let mut opener = GrantOpener::new(&key);
        opener.open(&b, &env).unwrap();
        group.bench_function(BenchmarkId::new("batch_open_per_grant", &name), |bench| {
            bench.iter(|| opener.open(&b, black_box(&env)).unwrap())
        });
        group.bench_function(BenchmarkId::new("batch_setup", &name), |bench| {
            bench.iter(|| BatchSealer::new(&mut OsRng, black_box(&pk), b.vault, recipient).unwrap())
        });
    }

    // The post-quantum hybrid: X-Wing (ML-KEM-768 + X25519) for grants.
    let sk = HybridPrivateKey::generate(&mut OsRng).unwrap();
    let pk = sk.public_key().kem_key().clone();
    let key = PrivateKey::Hybrid(sk);
    let name = "XWing";
    group.bench_function(BenchmarkId::new("single_seal", name), |bench| {
        bench.iter(|| seal_hybrid_grant(&mut OsRng, &pk, &b, black_box(&secret)).unwrap())
    });
    let env = seal_hybrid_grant(&mut OsRng, &pk, &b, &secret).unwrap();
    group.bench_function(BenchmarkId::new("single_open", name), |bench| {
        bench.iter(|| open_grant(&key, &b, black_box(&env)).unwrap())
    });
    let sealer = BatchSealer::new_hybrid(&mut OsRng, &pk, b.vault, recipient).unwrap();
    group.bench_function(BenchmarkId::new("batch_seal_per_grant", name), |bench| {
        bench.iter(|| {
            sealer
                .seal(&mut OsRng, b.subject, black_box(&secret))
                .unwrap()
        })
    });
    let env = sealer.seal(&mut OsRng, b.subject, &secret).unwrap();
    let mut opener = GrantOpener::new(&key);
    opener.open(&b, &env).unwrap();
    group.bench_function(BenchmarkId::new("batch_open_per_grant", name), |bench| {
        bench.iter(|| opener.open(&b, black_box(&env)).unwrap())
    });
    group.bench_function(BenchmarkId::new("batch_setup", name), |bench| {
        bench.iter(|| {
            BatchSealer::new_hybrid(&mut OsRng, black_box(&pk), b.vault, recipient).unwrap()
        })
    });
    // What a reader pays for the first grant of a batch: decapsulation.
    group.bench_function(BenchmarkId::new("batch_open_first_grant", name), |bench| {
        bench.iter(|| GrantOpener::new(&key).open(&b, black_box(&env)).unwrap())
    });
    group.bench_function(BenchmarkId::new("key_generation", name), |bench| {
        bench.iter(|| HybridPrivateKey::generate(&mut OsRng).unwrap())
    });
    group.finish();
}

fn kek(c: &mut Criterion) {
    let mut group = c.benchmark_group("kek");
    let master = MasterSecret::from_slice(&[5u8; 32]).unwrap();
    let kb = KeyBinding {
        vault: VaultId::from_bytes([1; 16]),
        owner: PrincipalId::from_bytes([3; 16]),
        key_pair: KeyPairId::from_bytes([4; 16]),
    };
    group.bench_function("derive", |bench| {
        bench.iter(|| Kek::derive(black_box(&master), kb.vault, kb.owner).unwrap())
    });
    let kek = Kek::derive(&master, kb.vault, kb.owner).unwrap();
    let env = wrap_private_key(&mut OsRng, &kek, &kb, &[8u8; 32]).unwrap();
    group.bench_function("wrap_p256_key", |bench| {
        bench.iter(|| wrap_private_key(&mut OsRng, &kek, &kb, black_box(&[8u8; 32])).unwrap())
    });
    group.bench_function("unwrap_p256_key", |bench| {
        bench.iter(|| unwrap_private_key(&kek, &kb, black_box(&env)).unwrap())
    });
    // Unwrapping a hybrid key includes expanding its seed (ML-KEM key
    // generation, X25519 and P-256 public keys).
    let hybrid = HybridPrivateKey::generate(&mut OsRng).unwrap();
    let env = wrap_hybrid_private_key(&mut OsRng, &kek, &kb, &hybrid).unwrap();
    group.bench_function("wrap_hybrid_key", |bench| {
        bench.iter(|| wrap_hybrid_private_key(&mut OsRng, &kek, &kb, black_box(&hybrid)).unwrap())
    });
    group.bench_function("unwrap_hybrid_key", |bench| {
        bench.iter(|| unwrap_hybrid_private_key(&kek, &kb, black_box(&env)).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = rsa_unwrap, hpke, kek
}
criterion_main!(benches);
