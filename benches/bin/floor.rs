//! `rekey-floor`: the crypto floor of a migration — legacy RSA-OAEP unwraps
//! alone, spread over worker threads, nothing else. `cargo xtask
//! bench-report` runs it beside the whole-vault migration and divides.
//!
//! Usage: `rekey-floor [--grants N] [--threads T] [--bits 2048|4096]`
//! (defaults: 20,000 grants, every core, 2048 bits). Prints one JSON object.

use rayon::prelude::*;
use rekey_benches::rsa_fixture;
use rekey_core::grant::{open_grant, wrap_legacy_grant};
use rekey_core::{
    GrantBinding, LegacyRsaPrivateKey, PrincipalId, PrivateKey, PublicKey, RecordId, Scheme,
    Subject, VaultId,
};
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    match run() {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rekey-floor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<String, String> {
    let mut grants = 20_000usize;
    let mut threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut bits = 2048usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{name} needs a whole number"))
        };
        match a.as_str() {
            "--grants" => grants = value("--grants")?,
            "--threads" => threads = value("--threads")?,
            "--bits" => bits = value("--bits")?,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if ![2048, 4096].contains(&bits) {
        return Err("--bits must be 2048 or 4096".into());
    }
    let key = rsa_fixture(bits);
    let PublicKey::Rsa(pk) = key.public_key() else {
        return Err("the fixture is not an RSA key".into());
    };
    let binding = GrantBinding {
        vault: VaultId::from_bytes([1; 16]),
        recipient: PrincipalId::from_bytes([2; 16]),
        subject: Subject::RecordKey(RecordId::from_bytes([3; 16])),
    };
    // The demo vault's mix of schemes: mostly OAEP-SHA-256.
    let schemes = [
        Scheme::RsaOaepSha256,
        Scheme::RsaOaepSha256,
        Scheme::RsaOaepSha1,
        Scheme::RsaOaepSha256Mgf1Sha1,
    ];
    let envelopes = (0..grants)
        .into_par_iter()
        .map(|i| wrap_legacy_grant(&pk, schemes[i % schemes.len()], &[7u8; 32]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let opened = pool.install(|| {
        envelopes
            .par_iter()
            .filter(|env| open_grant(&key, &binding, env).is_ok())
            .count()
    });
    let seconds = started.elapsed().as_secs_f64();
    if opened != grants {
        return Err(format!("only {opened} of {grants} unwraps succeeded"));
    }
    // What unlocking a legacy key costs once per login: parsing (and
    // validating) its PKCS#8 DER.
    let PrivateKey::Rsa(rsa) = &key else {
        return Err("the fixture is not an RSA key".into());
    };
    let parses = 20;
    let t = Instant::now();
    for _ in 0..parses {
        LegacyRsaPrivateKey::from_pkcs8_der(rsa.dangerous_pkcs8_der())
            .map_err(|e| e.to_string())?;
    }
    let parse_ms = t.elapsed().as_secs_f64() * 1e3 / f64::from(parses);
    Ok(format!(
        "{{\"grants\":{grants},\"threads\":{threads},\"bits\":{bits},\"seconds\":{seconds:.6},\"grants_per_second\":{:.1},\"key_parse_ms\":{parse_ms:.3}}}",
        grants as f64 / seconds.max(1e-9)
    ))
}
