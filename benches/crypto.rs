//! µs per operation for every scheme: legacy RSA unwrap (the migration's
//! floor), HPKE single seal/open, batch seal/open per grant, KEK wrap.

#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand_core::OsRng;
use rekey_benches::rsa_fixture;
use rekey_core::kek::{unwrap_private_key, wrap_private_key};
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
