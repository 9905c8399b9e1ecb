//! `cargo xtask baseline`: the Python peers of the performance issue,
//! each migrating a copy of the same seeded demo vault with the `cryptography`
//! package, formats read from docs/FORMAT.md; rekey's whole-vault migration
//! is measured against them:
//! - `benches/baseline/migrate_parallel.py`, the fair peer: a process per
//!   core doing the crypto, the parent as the one writer committing batched
//!   transactions, FORMAT.md §4's batch HPKE grants (or `--form single`);
//! - `benches/baseline/migrate.py`, the straightforward one: one process,
//!   one user then one grant at a time, single-shot grants.
//!
//! ```text
//! cargo xtask baseline [--vault FILE --credentials FILE]
//!                      [--users N] [--roles N] [--records N] [--rsa-bits 2048|4096] [--seed N]
//!                      [--parallel | --one-process] [--form batch|single] [--workers N]
//! ```
//!
//! Both scripts run, the parallel one first, unless `--parallel` or
//! `--one-process` picks one; `--form` and `--workers` go to the parallel
//! script (defaults: batch, a worker per core).
//!
//! Without `--vault`, a demo vault is seeded with the release `rekey`
//! binary into `target/baseline/<spec>/` (RSA keys from the cache
//! `target/baseline/rsa-keys.cache`, so only the first run generates them;
//! a vault already seeded with the same spec is reused). Each script runs
//! on its own copy (`target/baseline/run/<peer>/vault.db`, kept until the
//! next run), so the given or seeded vault stays unmigrated and can be
//! handed to rekey afterwards. Each script's JSON line is printed on
//! stdout, a summary on stderr.
//!
//! The Python side lives in a virtual environment at
//! `target/baseline-venv` (`python3 -m venv`, then `pip install -r
//! benches/baseline/requirements.txt`), made once and remade only when the
//! requirements file changes.
//!
//! For `cargo xtask bench-report`:
//! - [`seeded_vault`] seeds (or reuses) a demo vault for a [`SeedSpec`] and
//!   returns its paths ([`SeededVault`]: vault file and credentials, the
//!   key directory `keys/` beside them), so rekey and the peers can run on
//!   the same vault;
//! - [`run_baseline`]`(vault, credentials, peers)` copies that vault once
//!   per [`Peer`], runs each script on its copy and returns a [`PeerRun`]
//!   per peer, each with its [`BaselineResult`] (users, roles, grants,
//!   seconds, grants per second, workers, form, Python and `cryptography`
//!   versions, and the raw JSON line) or why it failed.

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

/// One of the Python peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// `migrate_parallel.py`: `workers` processes (`None`: one per core)
    /// and the grant form.
    Parallel { form: Form, workers: Option<usize> },
    /// `migrate.py`: one process, single-shot grants.
    OneProcess,
}

/// The HPKE grant form the parallel peer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// FORMAT.md §4 (`hpke-p256-sha256-aes256gcm-export`): one
    /// encapsulation per principal.
    Batch,
    /// FORMAT.md §3 (`hpke-p256-sha256-aes256gcm`): one per grant.
    Single,
}

impl Form {
    fn name(self) -> &'static str {
        match self {
            Self::Batch => "batch",
            Self::Single => "single",
        }
    }
}

impl Peer {
    /// What `bench-report` runs: the fair peer (batch form, a worker per
    /// core) and the one-process script.
    pub(crate) const BOTH: [Self; 2] = [
        Self::Parallel {
            form: Form::Batch,
            workers: None,
        },
        Self::OneProcess,
    ];

    /// The script, under `benches/baseline/`.
    pub(crate) fn script(self) -> &'static str {
        match self {
            Self::Parallel { .. } => "migrate_parallel.py",
            Self::OneProcess => "migrate.py",
        }
    }

    /// The name of its copy's directory under `target/baseline/run/`.
    fn run_dir(self) -> &'static str {
        match self {
            Self::Parallel { .. } => "parallel",
            Self::OneProcess => "one-process",
        }
    }

    fn args(self) -> Vec<String> {
        match self {
            Self::Parallel { form, workers } => {
                let mut a = vec!["--form".to_owned(), form.name().to_owned()];
                if let Some(n) = workers {
                    a.extend(["--workers".to_owned(), n.to_string()]);
                }
                a
            }
            Self::OneProcess => Vec::new(),
        }
    }
}

/// One peer's run: what it measured, or why it did not run to the end.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PeerRun {
    pub(crate) peer: Peer,
    pub(crate) result: Result<BaselineResult, String>,
}

/// What one run of a peer script measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BaselineResult {
    /// e2ee users migrated.
    pub(crate) users: u64,
    /// Roles migrated along (each exactly once).
    pub(crate) roles: u64,
    /// Grants re-wrapped: one RSA private operation, one HPKE seal and one
    /// row each.
    pub(crate) grants: u64,
    /// Of those, the grants addressed to roles.
    pub(crate) role_grants: u64,
    /// Wall time of the migration loop (not venv, copy, start-up or the
    /// sampled check).
    pub(crate) seconds: f64,
    /// `grants / seconds`.
    pub(crate) grants_per_second: f64,
    /// Processes doing the crypto.
    pub(crate) workers: u64,
    /// `batch` or `single` (the HPKE grant form written).
    pub(crate) form: String,
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
    let (mut only, mut form, mut workers) = (None, Form::Batch, None);
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
            "--parallel" => only = Some("parallel"),
            "--one-process" => only = Some("one-process"),
            "--form" => {
                form = match value()?.as_str() {
                    "batch" => Form::Batch,
                    "single" => Form::Single,
                    other => return Err(format!("--form is batch or single, not `{other}`")),
                }
            }
            "--workers" => workers = Some(to_usize(number(value()?)?)?.max(1)),
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
    let parallel = Peer::Parallel { form, workers };
    let peers: Vec<Peer> = match only {
        Some("parallel") => vec![parallel],
        Some(_) => vec![Peer::OneProcess],
        None => vec![parallel, Peer::OneProcess],
    };
    let mut failed = Vec::new();
    for run in run_baseline(&vault, &credentials, &peers)? {
        match run.result {
            Ok(r) => {
                println!("{}", r.json);
                eprintln!(
                    "baseline: {}: {} users and {} roles, {} grants in {:.2} s = {:.0} grants/s \
                     ({} worker(s), {} form; Python {}, cryptography {})",
                    run.peer.script(),
                    r.users,
                    r.roles,
                    r.grants,
                    r.seconds,
                    r.grants_per_second,
                    r.workers,
                    r.form,
                    r.python,
                    r.cryptography
                );
            }
            Err(e) => failed.push(format!("{}: {e}", run.peer.script())),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
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

/// Runs each of `peers` on its own copy of `vault` (with its WAL files, if
/// any) under `target/baseline/run/<peer>/`, one after the other; an error
/// only when the Python environment cannot be made.
pub(crate) fn run_baseline(
    vault: &Path,
    credentials: &Path,
    peers: &[Peer],
) -> Result<Vec<PeerRun>, String> {
    let python = venv_python()?;
    Ok(peers
        .iter()
        .map(|&peer| PeerRun {
            peer,
            result: run_peer(&python, vault, credentials, peer),
        })
        .collect())
}

/// Copies `vault` for `peer`, migrates the copy with its script and
/// returns what it measured.
fn run_peer(
    python: &Path,
    vault: &Path,
    credentials: &Path,
    peer: Peer,
) -> Result<BaselineResult, String> {
    let run_dir = crate::target_dir()
        .join("baseline")
        .join("run")
        .join(peer.run_dir());
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
    let script = crate::root().join("benches/baseline").join(peer.script());
    eprintln!(
        "baseline: migrating {} with {}",
        copy.display(),
        script.display()
    );
    let out = Command::new(python)
        .arg(&script)
        .arg("--vault")
        .arg(&copy)
        .arg("--credentials")
        .arg(credentials)
        .args(peer.args())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}){}",
            peer.script(),
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
        .ok_or_else(|| format!("{} printed no JSON line: {stdout}", peer.script()))?;
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
        // Both scripts print these; a line from before them reads as the
        // one-process script's.
        role_grants: count("role_grants").unwrap_or(0),
        seconds: num("seconds")?,
        grants_per_second: num("grants_per_second")?,
        workers: count("workers").unwrap_or(1),
        form: text("form").unwrap_or_else(|_| "single".to_owned()),
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
        assert_eq!(
            r.as_ref()
                .map(|r| (r.workers, r.form.as_str(), r.role_grants)),
            Ok((1, "single", 0))
        );
        assert!(parse_result(r#"{"users": 1}"#).is_err());
    }

    #[test]
    fn reads_the_parallel_scripts_json_line() {
        let line = r#"{"users": 900, "roles": 97, "grants": 31234, "role_grants": 4012, "seconds": 8.25, "grants_per_second": 3785.9, "checked": 312, "undecryptable": 1, "python": "3.11.7", "cryptography": "50.0.2", "workers": 2, "form": "batch", "batch_rows": 5000}"#;
        let r = parse_result(line).map_err(|e| e.to_string());
        assert_eq!(
            r.as_ref()
                .map(|r| (r.grants, r.role_grants, r.workers, r.form.as_str())),
            Ok((31234, 4012, 2, "batch"))
        );
        assert_eq!(
            Peer::BOTH.map(Peer::script),
            ["migrate_parallel.py", "migrate.py"]
        );
        assert_eq!(
            Peer::Parallel {
                form: Form::Single,
                workers: Some(4)
            }
            .args(),
            ["--form", "single", "--workers", "4"]
        );
    }
}
