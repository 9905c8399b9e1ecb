//! `cargo xtask baseline`: the comparison baseline of the performance
//! issue. `benches/baseline/migrate.py` migrates a seeded demo vault the
//! straightforward way (Python, the `cryptography` package, one user and
//! one grant at a time, formats read from docs/FORMAT.md); rekey's
//! whole-vault migration is measured against it.
//!
//! ```text
//! cargo xtask baseline [--vault FILE --credentials FILE]
//!                      [--users N] [--roles N] [--records N] [--rsa-bits 2048|4096] [--seed N]
//! ```
//!
//! Without `--vault`, a demo vault is seeded with the release `rekey`
//! binary into `target/baseline/<spec>/` (RSA keys from the cache
//! `target/baseline/rsa-keys.cache`, so only the first run generates them;
//! a vault already seeded with the same spec is reused). The script always
//! runs on a copy (`target/baseline/run/vault.db`), so the given or seeded
//! vault stays unmigrated and can be handed to rekey afterwards. The
//! script's JSON line is printed on stdout, a summary on stderr.
//!
//! The Python side lives in a virtual environment at
//! `target/baseline-venv` (`python3 -m venv`, then `pip install -r
//! benches/baseline/requirements.txt`), made once and remade only when the
//! requirements file changes.
//!
//! For `cargo xtask bench-report`:
//! - [`seeded_vault`] seeds (or reuses) a demo vault for a [`SeedSpec`] and
//!   returns its paths ([`SeededVault`]: vault file and credentials, the
//!   key directory `keys/` beside them), so rekey and the baseline can run
//!   on the same vault;
//! - [`run_baseline`]`(vault, credentials)` copies that vault, runs the
//!   script on the copy and returns a [`BaselineResult`] (users, roles,
//!   grants, seconds, grants per second, Python and `cryptography`
//!   versions, and the raw JSON line).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What demo vault to seed (the options of `rekey demo seed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeedSpec {
    pub(crate) users: usize,
    pub(crate) roles: usize,
    /// `None`: the demo's default (10 per user).
    pub(crate) records: Option<usize>,
    pub(crate) rsa_bits: usize,
    pub(crate) seed: u64,
}

impl Default for SeedSpec {
    fn default() -> Self {
        Self {
            users: 1000,
            roles: 100,
            records: None,
            rsa_bits: 2048,
            seed: 1,
        }
    }
}

/// A seeded demo vault, never migrated (copy it before migrating).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeededVault {
    /// The SQLite file (`rekey --db sqlite://<vault>?mode=rwc`).
    pub(crate) vault: PathBuf,
    /// The demo users' passwords (`rekey demo login-all --credentials`);
    /// the certificate keys are in `keys/` beside it.
    pub(crate) credentials: PathBuf,
}

/// What one run of the baseline script measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BaselineResult {
    /// e2ee users migrated.
    pub(crate) users: u64,
    /// Roles migrated along (by their first member).
    pub(crate) roles: u64,
    /// Grants re-wrapped: one RSA private operation, one HPKE seal and one
    /// row each.
    pub(crate) grants: u64,
    /// Wall time of the migration loop (not venv, copy or start-up).
    pub(crate) seconds: f64,
    /// `grants / seconds`.
    pub(crate) grants_per_second: f64,
    /// Python version.
    pub(crate) python: String,
    /// `cryptography` version.
    pub(crate) cryptography: String,
    /// The script's JSON line as printed.
    pub(crate) json: String,
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut spec = SeedSpec::default();
    let (mut vault, mut credentials) = (None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        let number = |v: String| -> Result<u64, String> {
            v.parse()
                .map_err(|_| format!("{arg} needs a whole number, not `{v}`"))
        };
        match arg.as_str() {
            "--vault" => vault = Some(PathBuf::from(value()?)),
            "--credentials" => credentials = Some(PathBuf::from(value()?)),
            "--users" => spec.users = to_usize(number(value()?)?)?,
            "--roles" => spec.roles = to_usize(number(value()?)?)?,
            "--records" => spec.records = Some(to_usize(number(value()?)?)?),
            "--rsa-bits" => spec.rsa_bits = to_usize(number(value()?)?)?,
            "--seed" => spec.seed = number(value()?)?,
            other => {
                return Err(format!(
                    "unknown baseline option `{other}` (see the top of xtask/src/baseline.rs)"
                ));
            }
        }
    }
    let (vault, credentials) = match (vault, credentials) {
        (Some(v), Some(c)) => (v, c),
        (None, None) => {
            let seeded = seeded_vault(&spec)?;
            (seeded.vault, seeded.credentials)
        }
        _ => return Err("--vault and --credentials go together".into()),
    };
    let r = run_baseline(&vault, &credentials)?;
    println!("{}", r.json);
    eprintln!(
        "baseline: {} users and {} roles, {} grants in {:.2} s = {:.0} grants/s (Python {}, cryptography {})",
        r.users, r.roles, r.grants, r.seconds, r.grants_per_second, r.python, r.cryptography
    );
    Ok(())
}

fn to_usize(n: u64) -> Result<usize, String> {
    usize::try_from(n).map_err(|_| format!("{n} is too large"))
}

/// Seeds a demo vault for `spec` with the release `rekey` binary, or
/// reuses the one a previous run seeded with the same spec.
pub(crate) fn seeded_vault(spec: &SeedSpec) -> Result<SeededVault, String> {
    let base = crate::target_dir().join("baseline");
    let records = spec.records.map_or("default".to_owned(), |r| r.to_string());
    let dir = base.join(format!(
        "u{}-r{}-rec{records}-rsa{}-seed{}",
        spec.users, spec.roles, spec.rsa_bits, spec.seed
    ));
    let seeded = SeededVault {
        vault: dir.join("vault.db"),
        credentials: dir.join("credentials.json"),
    };
    let done = dir.join(".seeded");
    if done.exists() {
        eprintln!("baseline: reusing the vault seeded in {}", dir.display());
        return Ok(seeded);
    }
    let rekey = rekey_binary()?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    eprintln!("baseline: seeding a demo vault into {}", dir.display());
    let mut cmd = Command::new(&rekey);
    cmd.arg("--db")
        .arg(format!("sqlite://{}?mode=rwc", seeded.vault.display()))
        .arg("--key-dir")
        .arg(dir.join("keys"))
        // The baseline derives master secrets with the light Argon2id
        // setting (benches/baseline/migrate.py).
        .args(["demo", "--kdf", "light", "seed", "--credentials"])
        .arg(&seeded.credentials)
        .arg("--key-cache")
        .arg(base.join("rsa-keys.cache"))
        .args(["--users", &spec.users.to_string()])
        .args(["--roles", &spec.roles.to_string()])
        .args(["--rsa-bits", &spec.rsa_bits.to_string()])
        .args(["--seed", &spec.seed.to_string()]);
    if let Some(r) = spec.records {
        cmd.args(["--records", &r.to_string()]);
    }
    crate::status(&mut cmd)?;
    std::fs::write(&done, b"seeded by cargo xtask baseline\n")
        .map_err(|e| format!("{}: {e}", done.display()))?;
    Ok(seeded)
}

/// Builds and returns the release `rekey` binary.
fn rekey_binary() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    crate::status(
        Command::new(cargo)
            .args(["build", "--release", "-p", "rekey-cli"])
            .current_dir(crate::root()),
    )?;
    let bin = crate::target_dir().join("release").join("rekey");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("{} is missing after the build", bin.display()))
    }
}

/// The virtual environment's Python, with the requirements installed
/// (made once; remade when the requirements file changes).
fn venv_python() -> Result<PathBuf, String> {
    let requirements = crate::root().join("benches/baseline/requirements.txt");
    let wanted =
        std::fs::read(&requirements).map_err(|e| format!("{}: {e}", requirements.display()))?;
    let venv = crate::target_dir().join("baseline-venv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join("rekey-requirements.txt");
    if python.exists() && std::fs::read(&stamp).ok().as_deref() == Some(&wanted[..]) {
        return Ok(python);
    }
    eprintln!(
        "baseline: making the virtual environment {}",
        venv.display()
    );
    if venv.exists() {
        std::fs::remove_dir_all(&venv).map_err(|e| format!("{}: {e}", venv.display()))?;
    }
    crate::status(Command::new("python3").args(["-m", "venv"]).arg(&venv))
        .map_err(|e| format!("{e} (is python3 with its venv module installed?)"))?;
    crate::status(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(&requirements),
    )?;
    std::fs::write(&stamp, &wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(python)
}

/// Copies `vault` (with its WAL files, if any) to `target/baseline/run/`,
/// migrates the copy with the baseline script and returns what it measured.
pub(crate) fn run_baseline(vault: &Path, credentials: &Path) -> Result<BaselineResult, String> {
    let python = venv_python()?;
    let run_dir = crate::target_dir().join("baseline").join("run");
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    }
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let copy = run_dir.join("vault.db");
    std::fs::copy(vault, &copy).map_err(|e| format!("copying {}: {e}", vault.display()))?;
    for suffix in ["-wal", "-shm"] {
        let mut from = vault.as_os_str().to_owned();
        from.push(suffix);
        let from = PathBuf::from(from);
        if from.exists() {
            let to = run_dir.join(format!("vault.db{suffix}"));
            std::fs::copy(&from, &to).map_err(|e| format!("copying {}: {e}", from.display()))?;
        }
    }
    let script = crate::root().join("benches/baseline/migrate.py");
    eprintln!(
        "baseline: migrating {} with {}",
        copy.display(),
        script.display()
    );
    let out = Command::new(&python)
        .arg(&script)
        .arg("--vault")
        .arg(&copy)
        .arg("--credentials")
        .arg(credentials)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "the baseline script failed ({}){}",
            out.status,
            if stdout.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", stdout.trim())
            }
        ));
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| format!("the baseline script printed no JSON line: {stdout}"))?;
    parse_result(line.trim())
}

fn parse_result(json: &str) -> Result<BaselineResult, String> {
    let num = |key: &str| -> Result<f64, String> {
        field(json, key)?
            .parse()
            .map_err(|_| format!("`{key}` is not a number in {json}"))
    };
    let text = |key: &str| -> Result<String, String> {
        Ok(field(json, key)?.trim_matches('"').to_owned())
    };
    let count = |key: &str| -> Result<u64, String> {
        field(json, key)?
            .parse()
            .map_err(|_| format!("`{key}` is not a count in {json}"))
    };
    Ok(BaselineResult {
        users: count("users")?,
        roles: count("roles")?,
        grants: count("grants")?,
        seconds: num("seconds")?,
        grants_per_second: num("grants_per_second")?,
        python: text("python")?,
        cryptography: text("cryptography")?,
        json: json.to_owned(),
    })
}

/// The raw value of `key` in the script's flat JSON object (numbers and
/// strings without commas or quotes, which is all it prints).
fn field<'a>(json: &'a str, key: &str) -> Result<&'a str, String> {
    let pattern = format!("\"{key}\":");
    let start = json
        .find(&pattern)
        .map(|i| i + pattern.len())
        .ok_or_else(|| format!("no `{key}` in {json}"))?;
    let rest = &json[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Ok(rest[..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_scripts_json_line() {
        let line = r#"{"users": 900, "roles": 97, "grants": 31234, "seconds": 20.5, "grants_per_second": 1523.6, "checked": 322, "undecryptable": 0, "python": "3.11.7", "cryptography": "50.0.2"}"#;
        let r = parse_result(line).map_err(|e| e.to_string());
        assert_eq!(
            r.as_ref().map(|r| (r.users, r.roles, r.grants)),
            Ok((900, 97, 31234))
        );
        assert_eq!(r.as_ref().map(|r| r.seconds), Ok(20.5));
        assert_eq!(r.as_ref().map(|r| r.cryptography.as_str()), Ok("50.0.2"));
        assert!(parse_result(r#"{"users": 1}"#).is_err());
    }
}
