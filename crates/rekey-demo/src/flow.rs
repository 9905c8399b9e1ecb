//! The demo's steps, for `rekey demo` and its parts: seed a vault, verify
//! one, and the whole flow on a fresh SQLite file (seed, certificate
//! backup, preflight, start, every user logs in, finalize, verify).
//! Output goes through a [`Ui`], so the command line decides how it looks.

use crate::credentials::Credentials;
use crate::error::DemoError;
use crate::generate::{DemoSpec, DemoVault, generate};
use crate::keycache::KeySource;
use crate::login::{LoginSummary, Progress, Via, login_all};
use crate::reader::{Reader, VerifyReport};
use rekey_core::Target;
use rekey_core::lifecycle::CODE_WORD;
use rekey_engine::{Engine, KeyDir};
use rekey_keys::Passphrase;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How the demo shows what it does.
pub trait Ui: Sync {
    /// A numbered step begins.
    fn step(&self, text: &str);
    /// A block of text (the preflight report).
    fn text(&self, text: &str);
    /// A progress bar for `what`, fed `(done, total)`.
    fn bar(&self, what: &'static str) -> Progress;
}

/// The passphrase of the demo's certificate backup (a demo has nothing to
/// protect; a real backup's passphrase is the operator's).
pub const DEMO_BACKUP_PASSPHRASE: &str = "rekey demo passphrase";
/// What marks a directory as the demo's own (so it may be remade).
const MARKER: &str = ".rekey-demo";

/// Where the RSA keys come from.
#[derive(Debug, Clone, Default)]
pub struct KeyOptions {
    /// A cache file of RSA keys reused across runs.
    pub cache: Option<PathBuf>,
    /// At most this many distinct keys (the rest repeat them).
    pub distinct: Option<usize>,
}

/// What seeding did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedSummary {
    /// Users (e2ee and managed).
    pub users: usize,
    /// Users who log in with a password (the credentials file lists them).
    pub e2ee_users: usize,
    /// Roles.
    pub roles: usize,
    /// Records.
    pub records: usize,
    /// RSA modulus size.
    pub rsa_bits: usize,
    /// Legacy grants written.
    pub legacy_grants: usize,
    /// Rows written in all.
    pub rows: u64,
    /// Wall time.
    pub seconds: f64,
    /// RSA keys generated in this run.
    pub rsa_keys_generated: usize,
    /// RSA keys taken from the cache.
    pub rsa_keys_reused: usize,
}

/// Generates a demo vault into the (empty) vault of `engine` and writes its
/// credentials file.
pub async fn seed(
    engine: &Engine,
    spec: &DemoSpec,
    keys: &KeyOptions,
    credentials: &Path,
    ui: &dyn Ui,
) -> Result<(SeedSummary, Credentials), DemoError> {
    spec.check()?;
    let mut source = match &keys.cache {
        Some(p) => KeySource::with_cache(p),
        None => KeySource::fresh(),
    };
    if let Some(limit) = keys.distinct {
        source = source.with_distinct_limit(limit);
    }
    // Preparation begins before anything is issued.
    engine.begin_preparation().await?;
    let started = Instant::now();
    let keys_bar = ui.bar("generating RSA keys");
    let wrap_bar = ui.bar("wrapping legacy grants");
    let demo = tokio::task::block_in_place(|| {
        generate(spec, &mut source, &|what, d, t| {
            if what.starts_with("generating") {
                keys_bar(d, t);
            } else {
                wrap_bar(d, t);
            }
        })
    })?;
    let report = demo.install(engine).await?;
    demo.credentials.save(credentials)?;
    let summary = SeedSummary {
        users: spec.users,
        e2ee_users: demo.credentials.users.len(),
        roles: spec.roles,
        records: spec.records,
        rsa_bits: spec.rsa_bits,
        legacy_grants: demo.data.grants.len(),
        rows: report.rows,
        seconds: started.elapsed().as_secs_f64(),
        rsa_keys_generated: source.generated,
        rsa_keys_reused: source.reused,
    };
    Ok((summary, demo.credentials))
}

/// Verifies a demo vault against its credentials file.
pub async fn verify(
    engine: &Engine,
    credentials: &Credentials,
    ui: &dyn Ui,
) -> Result<VerifyReport, DemoError> {
    let bar = ui.bar("verifying users");
    Reader::new(engine)
        .verify(credentials, &|d, t| bar(d, t))
        .await
}

/// What the whole demo did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoSummary {
    /// The demo directory.
    pub dir: PathBuf,
    /// What the migration moved keys to.
    pub target: Target,
    /// The seed.
    pub seed: SeedSummary,
    /// The logins.
    pub logins: LoginSummary,
    /// Legacy rows finalize deleted.
    pub legacy_rows_deleted: u64,
    /// Verification after finalize.
    pub verify: VerifyReport,
    /// Bytes of the vault's SQLite files (database and write-ahead log)
    /// after finalize: what the target costs in storage.
    pub vault_bytes: u64,
    /// The migrations that followed (`rekey demo --then TARGET`): the
    /// migrated vault migrating again, one after another.
    pub again: Vec<AgainSummary>,
    /// Wall time of the whole flow.
    pub seconds: f64,
}

/// One further migration of the already migrated demo vault.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgainSummary {
    /// What it moved keys to.
    pub target: Target,
    /// Server-held keys migrated at its start.
    pub server_keys: usize,
    /// The logins.
    pub logins: LoginSummary,
    /// The previous target's rows finalize deleted.
    pub legacy_rows_deleted: u64,
    /// Verification after its finalize.
    pub verify: VerifyReport,
    /// The vault's SQLite files after its finalize.
    pub vault_bytes: u64,
}

/// The whole flow in `dir` (made afresh: a directory that is not the
/// demo's own is refused), every user logging in `concurrency` at a time,
/// the migration moving keys to `target`.
///
/// Then, for each of `then` in turn, the migrated vault migrates again to
/// that target (certificates backed up again, preflight, start, logins,
/// finalize), verified after each.
pub async fn run(
    dir: &Path,
    spec: &DemoSpec,
    keys: &KeyOptions,
    concurrency: usize,
    target: Target,
    then: &[Target],
    ui: &dyn Ui,
) -> Result<DemoSummary, DemoError> {
    spec.check()?;
    let started = Instant::now();
    fresh_dir(dir)?;
    let db = format!("sqlite://{}?mode=rwc", dir.join("vault.db").display());
    let key_dir = KeyDir::open(dir.join("keys"))?;
    let engine = Engine::init(&db, Some(key_dir), "rekey demo")
        .await?
        .with_target(target);
    let credentials = dir.join("credentials.json");
    ui.step(&format!(
        "1/7 seeding a legacy vault ({} users) into {}",
        spec.users,
        dir.display()
    ));
    let (seeded, creds) = seed(&engine, spec, keys, &credentials, ui).await?;
    ui.step("2/7 backing up the certificate keys");
    let passphrase = Passphrase::new(DEMO_BACKUP_PASSPHRASE.to_owned());
    engine
        .backup_certificates(&dir.join("certificates.age"), &passphrase)
        .await?;
    ui.step("3/7 preflight");
    ui.text(&engine.preflight().await?.to_text());
    ui.step(&format!(
        "4/7 start to {target} (code word given for the demo) and the server phase"
    ));
    let started_report = engine.start(CODE_WORD, &|_, _, _| {}).await?;
    if let Some(sp) = &started_report.server_phase {
        ui.step(&format!(
            "    server keys migrated: {} (with {} managed users and roles they hold)",
            sp.migrated.len(),
            sp.migrated_along
        ));
    }
    ui.step("5/7 every user logs in");
    let logins = everyone_logs_in(&engine, &creds, concurrency, ui).await?;
    ui.step("6/7 finalize");
    let finalized = engine.finalize(&|_| {}).await?;
    ui.step("7/7 verify");
    let verified = verify(&engine, &creds, ui).await?;
    let vault_bytes = vault_bytes(dir);
    let mut again = Vec::with_capacity(then.len());
    for (i, next) in then.iter().enumerate() {
        if !verified.passed() {
            break;
        }
        let engine = engine.clone().with_target(*next);
        again.push(migrate_again(&engine, dir, &creds, concurrency, i + 1, ui).await?);
        if again.last().is_some_and(|a| !a.verify.passed()) {
            break;
        }
    }
    Ok(DemoSummary {
        dir: dir.to_path_buf(),
        target,
        seed: seeded,
        logins,
        legacy_rows_deleted: finalized.deleted_legacy_rows,
        verify: verified,
        vault_bytes,
        again,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Every demo user logs in through `engine`, with a bar, and the step's
/// summary line.
async fn everyone_logs_in(
    engine: &Engine,
    creds: &Credentials,
    concurrency: usize,
    ui: &dyn Ui,
) -> Result<LoginSummary, DemoError> {
    let logins = login_all(
        Via::Vault(engine.clone()),
        creds.clone(),
        concurrency,
        ui.bar("users logging in"),
    )
    .await?;
    ui.step(&format!(
        "    {} users logged in and migrated: {} grants in {:.1} s ({:.0} grants/s)",
        logins.users,
        logins.grants,
        logins.seconds,
        logins.grants_per_second()
    ));
    Ok(logins)
}

/// Bytes of the demo vault's SQLite files (database and write-ahead log).
fn vault_bytes(dir: &Path) -> u64 {
    ["vault.db", "vault.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// The completed demo vault migrates again, to `engine`'s target, as an
/// operator would run it: the server keys (the previous target's now) are
/// backed up again, preflight, start, every user logs in, finalize,
/// verify.
async fn migrate_again(
    engine: &Engine,
    dir: &Path,
    creds: &Credentials,
    concurrency: usize,
    n: usize,
    ui: &dyn Ui,
) -> Result<AgainSummary, DemoError> {
    let target = engine.target().unwrap_or_default();
    ui.step(&format!(
        "again {n}: the migrated vault migrates to {target}"
    ));
    ui.step("    backing up the certificate keys (the previous target's)");
    let passphrase = Passphrase::new(DEMO_BACKUP_PASSPHRASE.to_owned());
    engine
        .backup_certificates(&dir.join(format!("certificates-{n}.age")), &passphrase)
        .await?;
    ui.text(&engine.preflight().await?.to_text());
    let started = engine.start(CODE_WORD, &|_, _, _| {}).await?;
    let server_keys = started
        .server_phase
        .as_ref()
        .map_or(0, |sp| sp.migrated.len());
    ui.step(&format!("    start: server keys migrated: {server_keys}"));
    let logins = everyone_logs_in(engine, creds, concurrency, ui).await?;
    let finalized = engine.finalize(&|_| {}).await?;
    let verified = verify(engine, creds, ui).await?;
    Ok(AgainSummary {
        target,
        server_keys,
        logins,
        legacy_rows_deleted: finalized.deleted_legacy_rows,
        verify: verified,
        vault_bytes: vault_bytes(dir),
    })
}

/// Removes and remakes the demo directory; refuses one that exists, is not
/// empty and is not the demo's own.
fn fresh_dir(dir: &Path) -> Result<(), DemoError> {
    let io = |e: std::io::Error| DemoError::file(dir, e);
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map_err(io)?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            return Err(DemoError::file(
                dir,
                "exists and is not a rekey demo directory; choose another --dir",
            ));
        }
        std::fs::remove_dir_all(dir).map_err(io)?;
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(
        dir.join(MARKER),
        b"made by `rekey demo`; removed and remade on each run\n",
    )
    .map_err(io)
}

impl DemoVault {
    /// Writes the demo vault into `engine`'s empty database (in
    /// preparation): its rows, the server's key files, the users' login
    /// verifiers and the clients' KDF parameters.
    pub async fn install(&self, engine: &Engine) -> Result<rekey_engine::SeedReport, DemoError> {
        let report = engine
            .seed(self.vault, &self.data, &self.server_keys)
            .await?;
        engine.register_logins(&self.verifiers).await?;
        engine
            .set_client_kdf(&self.credentials.kdf.to_json()?)
            .await?;
        Ok(report)
    }
}
