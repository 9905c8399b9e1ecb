//! The fixed RSA keys tests use instead of generating fresh ones, the
//! command-line tests' key cache, and the legacy ciphertext of FORMAT.md's
//! worked example. Run through `cargo xtask fixtures [--force]`.
#![allow(clippy::print_stdout)]

use rekey_core::crypto::rsa::LegacyRsaPrivateKey;
use rekey_core::worked_examples;

/// Fixture keys: eight RSA-2048 (a to h) and one RSA-4096.
const KEYS: [(&str, usize); 9] = [
    ("rsa-2048-a.pk8", 2048),
    ("rsa-2048-b.pk8", 2048),
    ("rsa-2048-c.pk8", 2048),
    ("rsa-2048-d.pk8", 2048),
    ("rsa-2048-e.pk8", 2048),
    ("rsa-2048-f.pk8", 2048),
    ("rsa-2048-g.pk8", 2048),
    ("rsa-2048-h.pk8", 2048),
    ("rsa-4096-a.pk8", 4096),
];

/// RSA-2048 keys in the command-line tests' key cache.
const DEMO_CACHE_KEYS: usize = 16;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fixtures: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Makes the missing fixtures; `--force` makes them all anew (and so
/// changes the worked examples: run `cargo xtask format-doc` after).
fn run(args: &[String]) -> Result<(), String> {
    let force = args.iter().any(|a| a == "--force");
    let dir = root().join("crates/rekey-core/tests/fixtures");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, bits) in KEYS {
        if !force && dir.join(name).exists() {
            continue;
        }
        let key = LegacyRsaPrivateKey::generate(bits).map_err(|e| e.to_string())?;
        write(&dir.join(name), key.dangerous_pkcs8_der())?;
        println!("wrote {name} ({bits} bits)");
    }
    // A key cache for the command-line tests (the demo takes its RSA keys
    // from it instead of generating them).
    let cli = root().join("crates/rekey-cli/tests/fixtures");
    std::fs::create_dir_all(&cli).map_err(|e| format!("{}: {e}", cli.display()))?;
    let cache = cli.join("demo-keys-2048.cache");
    if force {
        let _ = std::fs::remove_file(&cache);
    }
    let mut source = rekey_demo::KeySource::with_cache(&cache);
    source
        .take(DEMO_CACHE_KEYS, 2048, &|_, _| {})
        .map_err(|e| e.to_string())?;
    if source.generated > 0 {
        println!("wrote {} keys to {}", source.generated, cache.display());
    }

    // The worked example's legacy grant: RSA-OAEP is randomised, so the
    // ciphertext is made once here and kept.
    let example = dir.join("worked-example-rsa-oaep-sha256.bin");
    if !force && example.exists() {
        return Ok(());
    }
    let key_der = std::fs::read(dir.join("rsa-2048-a.pk8")).map_err(|e| e.to_string())?;
    let ct = worked_examples::make_legacy_ciphertext(&key_der).map_err(|e| e.to_string())?;
    write(&dir.join("worked-example-rsa-oaep-sha256.bin"), &ct)?;
    println!("wrote worked-example-rsa-oaep-sha256.bin");
    Ok(())
}

fn write(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}
