//! The `rekey` command line: parses, calls rekey-engine / rekey-preflight,
//! prints. No rules live here.

mod cli;
mod error;
mod progress;

use clap::Parser;
use cli::{CertAction, Cli, Command, DemoStep, DeviceAction, DirectoryAction, Format, SpecArgs};
use error::CliError;
use progress::Progress;
use rekey_engine::demo::{Credentials, DemoSpec, DemoUser, generate};
use rekey_engine::keycache::KeySource;
use rekey_engine::{Engine, KeyDir};
use rekey_storage::Vault;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

fn main() -> ExitCode {
    // Before any thread: freed bundle buffers leave the process, so peak
    // memory follows the live data, not every arena's largest bundle.
    rekey_engine::memory::return_large_buffers_to_the_system();
    let cli = Cli::parse();
    let format = cli.format;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(error::code::OTHER);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = e.exit_code();
            if format == Format::Json {
                let out = serde_json::json!({ "error": e.to_string(), "hint": e.hint(), "exit_code": code });
                println!("{out}");
            } else {
                eprintln!("error: {e}");
                if let Some(hint) = e.hint() {
                    eprintln!("hint: {hint}");
                }
            }
            ExitCode::from(code)
        }
    }
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

async fn open_engine(cli: &Cli) -> Result<Engine, CliError> {
    let vault = Vault::open(&cli.db)
        .await
        .map_err(rekey_engine::EngineError::from)?;
    Ok(Engine::new(
        vault,
        Some(KeyDir::open(&cli.key_dir)?),
        actor(),
    ))
}

fn actor() -> String {
    std::env::var("USER")
        .map(|u| format!("cli:{u}"))
        .unwrap_or_else(|_| "cli".into())
}

impl From<rekey_preflight::Error> for CliError {
    fn from(e: rekey_preflight::Error) -> Self {
        CliError::Refused(e.to_string())
    }
}

async fn run(cli: Cli) -> Result<u8, CliError> {
    let json = cli.format == Format::Json;
    match &cli.command {
        Command::Init => {
            let vault = Vault::init(&cli.db)
                .await
                .map_err(rekey_engine::EngineError::from)?;
            let id = vault
                .vault_id()
                .await
                .map_err(rekey_engine::EngineError::from)?;
            if json {
                print_json(&serde_json::json!({ "vault": id }));
            } else {
                println!("vault {id} ready at {}", rekey_storage::redact_url(&cli.db));
            }
            Ok(0)
        }
        Command::Preflight => {
            let engine = open_engine(&cli).await?;
            let report = preflight(&engine, &cli).await?;
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            Ok(report.exit_code())
        }
        Command::Cert {
            action,
            passphrase_file,
        } => {
            let engine = open_engine(&cli).await?;
            let new_backup = matches!(action, CertAction::Backup { .. });
            let pass = rekey_preflight::Passphrase::new(passphrase(
                passphrase_file.as_deref(),
                new_backup,
            )?);
            let summary = match action {
                CertAction::Backup { out } => {
                    let s =
                        rekey_preflight::backup(engine.vault(), &cli.key_dir, out, &pass).await?;
                    if !json {
                        println!(
                            "backed up {} certificate key(s) to {}",
                            s.fingerprints.len(),
                            out.display()
                        );
                    }
                    serde_json::json!({ "file": out, "digest": s.digest, "fingerprints": s.fingerprints })
                }
                CertAction::Verify { file } => {
                    let s = rekey_preflight::verify(engine.vault(), file, &pass).await?;
                    if !json {
                        println!(
                            "{} verifies: {} certificate key(s), sha256 {}",
                            file.display(),
                            s.fingerprints.len(),
                            s.digest
                        );
                    }
                    serde_json::json!({ "file": file, "digest": s.digest, "fingerprints": s.fingerprints })
                }
                CertAction::Import { file } => {
                    let s =
                        rekey_preflight::import(engine.vault(), file, &pass, &cli.key_dir).await?;
                    if !json {
                        println!(
                            "imported into {}: {} written, {} already there",
                            cli.key_dir.display(),
                            s.written.len(),
                            s.unchanged.len()
                        );
                    }
                    serde_json::json!({ "written": s.written, "unchanged": s.unchanged })
                }
            };
            if json {
                print_json(&summary);
            }
            Ok(0)
        }
        Command::Directory {
            action: DirectoryAction::RenewToken { profile },
        } => {
            let engine = open_engine(&cli).await?;
            let token =
                rekey_preflight::renew_directory_token(engine.vault(), profile, &actor()).await?;
            if json {
                print_json(&serde_json::json!({ "profile": profile, "token": token.expose() }));
            } else {
                println!(
                    "new token for {profile} (shown once; paste it into the directory's provisioning settings):\n{}",
                    token.expose()
                );
            }
            Ok(0)
        }
        Command::Device {
            action: DeviceAction::WriteOff { device },
        } => {
            let engine = open_engine(&cli).await?;
            rekey_preflight::write_off_device(engine.vault(), device, &actor()).await?;
            if json {
                print_json(&serde_json::json!({ "device": device, "written_off": true }));
            } else {
                println!(
                    "device {device} written off: its unsynchronised changes will be lost (recorded in the audit log)"
                );
            }
            Ok(0)
        }
        Command::Start { code_word } => {
            let engine = open_engine(&cli).await?;
            let (state, _) = engine.lifecycle().await?;
            if matches!(
                state,
                rekey_core::lifecycle::Lifecycle::ServerPhase(_)
                    | rekey_core::lifecycle::Lifecycle::AwaitingCertificates(_)
            ) {
                // Started already: resume the server phase (after a crash or
                // a certificate import).
                let s = engine.run_server_phase(&|_, _, _| {}).await?;
                if json {
                    print_json(
                        &serde_json::json!({ "phase": s.phase, "server_keys_migrated": s.migrated.len(), "missing_certificates": s.missing_certificates }),
                    );
                } else {
                    println!(
                        "server phase resumed: {} server key(s) migrated; phase: {}",
                        s.migrated.len(),
                        s.phase.map(|p| p.to_string()).unwrap_or_default()
                    );
                    for m in &s.missing_certificates {
                        println!(
                            "missing certificate key: {m} (run `rekey cert import BACKUP`, then `rekey start` again)"
                        );
                    }
                }
                return Ok(0);
            }

            let answer = match code_word {
                Some(w) => w.clone(),
                None => prompt(
                    "Type Start to put the vault into migration mode (read-only until finalize): ",
                )?,
            };
            let blockers = blocking_checks(&engine, &cli, &answer).await?;
            let (report, server) = engine.start(&answer, &blockers).await?;
            if json {
                print_json(&serde_json::json!({
                    "run": report.run, "phase": report.phase, "blocked_users": report.blocked,
                    "server_keys_migrated": server.as_ref().map(|s| s.migrated.len()),
                    "missing_certificates": server.as_ref().map(|s| s.missing_certificates.clone()),
                }));
            } else {
                println!(
                    "migration started (run {}); phase: {}",
                    report.run, report.phase
                );
                if let Some(s) = server {
                    println!(
                        "server keys migrated: {} (with {} managed users and roles they hold, {} grants)",
                        s.migrated.len(),
                        s.migrated_along,
                        s.grants
                    );
                    for m in &s.missing_certificates {
                        println!(
                            "missing certificate key: {m} (import it with the backup, then run start again)"
                        );
                    }
                }
            }
            Ok(0)
        }
        Command::Status { all, watch } => {
            let engine = open_engine(&cli).await?;
            if !watch {
                return status(&engine, *all, json).await;
            }
            loop {
                if !json && std::io::stdout().is_terminal() {
                    // Clear the screen and go home before each redraw.
                    print!("\x1b[2J\x1b[H");
                }
                status(&engine, *all, json).await?;
                let phase = engine
                    .vault()
                    .migration()
                    .await
                    .map_err(rekey_engine::EngineError::from)?
                    .phase;
                if phase == rekey_core::model::Phase::Completed {
                    return Ok(0);
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(0),
                }
            }
        }
        Command::Login {
            user,
            password,
            server: Some(url),
            credentials,
        } => {
            let password = match password {
                Some(p) => p.clone(),
                None => prompt(&format!("password for {user}: "))?,
            };
            let creds = Credentials::load(credentials)?;
            let id = creds.users.get(user).map(|u| u.id).ok_or_else(|| {
                CliError::from(rekey_engine::EngineError::UnknownUser(user.clone()))
            })?;
            let started = Instant::now();
            let r = login_http(url, creds.vault, id, &password).await?;
            if json {
                print_json(
                    &serde_json::json!({ "user": user, "grants": r.applied.grants, "principals": r.applied.principals.len(), "retries": r.retries }),
                );
            } else {
                println!(
                    "{user} migrated through {url}: {} grants, {} principal(s), in {:.2?}",
                    r.applied.grants,
                    r.applied.principals.len(),
                    started.elapsed()
                );
            }
            Ok(0)
        }
        Command::Login {
            user,
            password,
            server: None,
            ..
        } => {
            let engine = open_engine(&cli).await?;
            let password = match password {
                Some(p) => p.clone(),
                None => prompt(&format!("password for {user}: "))?,
            };
            let bar = Arc::new(Progress::new("re-wrapping grants", !json));
            let b = bar.clone();
            let started = Instant::now();
            let r = engine
                .login(user, &password, None, Arc::new(move |d, t| b.update(d, t)))
                .await?;
            if json {
                print_json(
                    &serde_json::json!({ "user": user, "grants": r.applied.grants, "non_migratable": r.applied.non_migratable, "principals": r.applied.principals.len(), "retries": r.retries }),
                );
            } else {
                println!(
                    "{user} migrated: {} grants, {} principal(s), {} non-migratable, in {:.2?}",
                    r.applied.grants,
                    r.applied.principals.len(),
                    r.applied.non_migratable,
                    started.elapsed()
                );
            }
            Ok(0)
        }
        Command::Finalize => {
            let engine = open_engine(&cli).await?;
            let deleted = engine.finalize(&|_| {}).await?;
            if json {
                print_json(
                    &serde_json::json!({ "phase": "completed", "deleted_legacy_rows": deleted }),
                );
            } else {
                println!("finalized: {deleted} legacy rows deleted; the vault is writable again");
            }
            Ok(0)
        }
        Command::Abort { yes } => {
            let engine = open_engine(&cli).await?;
            if !yes {
                let a = prompt("Abort the migration and return to the legacy keys? Type yes: ")?;
                if a != "yes" {
                    return Err(CliError::Refused(
                        "not aborted (answer was not `yes`)".into(),
                    ));
                }
            }
            engine.abort().await?;
            if json {
                print_json(&serde_json::json!({ "phase": "legacy" }));
            } else {
                println!("aborted: the vault is back to its legacy state");
            }
            Ok(0)
        }
        Command::Serve {
            bind,
            admin_token_file,
            name,
        } => {
            let token = match admin_token_file {
                Some(f) => std::fs::read_to_string(f)
                    .map_err(|e| CliError::Io(format!("{}: {e}", f.display())))?
                    .trim()
                    .to_owned(),
                None => std::env::var("REKEY_ADMIN_TOKEN").map_err(|_| {
                    CliError::Refused(
                        "give the admin token in REKEY_ADMIN_TOKEN or --admin-token-file".into(),
                    )
                })?,
            };
            let mut config =
                rekey_server::ServerConfig::new(cli.db.clone(), cli.key_dir.clone(), &token)
                    .map_err(|e| CliError::Refused(format!("{e} ({})", e.hint())))?;
            config.bind = *bind;
            if let Some(name) = name {
                config.server_name = name.clone();
            }
            if !json {
                eprintln!(
                    "serving {} on http://{bind} (status page at /, API under /v1, metrics at /metrics)",
                    rekey_storage::redact_url(&cli.db)
                );
            }
            rekey_server::serve(config)
                .await
                .map_err(|e| CliError::Refused(format!("{e} ({})", e.hint())))?;
            Ok(0)
        }
        Command::Verify { credentials } => {
            let engine = open_engine(&cli).await?;
            verify(&engine, credentials, json).await
        }
        Command::Demo(args) => match &args.step {
            Some(DemoStep::Seed { credentials }) => {
                let vault = Vault::init(&cli.db)
                    .await
                    .map_err(rekey_engine::EngineError::from)?;
                let engine = Engine::new(vault, Some(KeyDir::open(&cli.key_dir)?), actor());
                seed(&engine, &args.spec, credentials, json, true).await?;
                Ok(0)
            }
            Some(DemoStep::LoginAll {
                credentials,
                server: Some(url),
            }) => {
                login_all(
                    Via::Server(url.clone()),
                    credentials,
                    args.spec.concurrency,
                    json,
                    true,
                )
                .await?;
                Ok(0)
            }
            Some(DemoStep::LoginAll {
                credentials,
                server: None,
            }) => {
                let engine = open_engine(&cli).await?;
                login_all(
                    Via::Vault(engine),
                    credentials,
                    args.spec.concurrency,
                    json,
                    true,
                )
                .await?;
                Ok(0)
            }
            None => demo_all(&args.dir, &args.spec, json).await,
        },
    }
}

/// The backup passphrase: a file, the environment, or a prompt (typed
/// twice for a new backup).
fn passphrase(file: Option<&Path>, confirm: bool) -> Result<String, CliError> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| CliError::Io(format!("{}: {e}", f.display())))?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_owned());
    }
    if let Ok(p) = std::env::var("REKEY_BACKUP_PASSPHRASE") {
        return Ok(p);
    }
    let first = prompt("backup passphrase: ")?;
    if confirm && prompt("again: ")? != first {
        return Err(CliError::Refused(
            "the two passphrases differ; nothing written".into(),
        ));
    }
    Ok(first)
}

fn prompt(question: &str) -> Result<String, CliError> {
    let mut err = std::io::stderr();
    let _ = write!(err, "{question}");
    let _ = err.flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Io(format!("could not read the answer: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

async fn preflight(engine: &Engine, cli: &Cli) -> Result<rekey_preflight::Report, CliError> {
    let options = rekey_preflight::Options {
        key_dir: Some(cli.key_dir.clone()),
        ..rekey_preflight::Options::default()
    };
    Ok(rekey_preflight::run(engine.vault(), &options).await?)
}

/// The checks that block, run only once the code word is right (a wrong
/// code word must change nothing, not even the audit log).
async fn blocking_checks(
    engine: &Engine,
    cli: &Cli,
    answer: &str,
) -> Result<Vec<String>, CliError> {
    if answer != rekey_core::lifecycle::CODE_WORD {
        return Ok(Vec::new());
    }
    let report = preflight(engine, cli).await?;
    Ok(report.blocking().into_iter().map(str::to_owned).collect())
}

async fn status(engine: &Engine, all: bool, json: bool) -> Result<u8, CliError> {
    let row = engine
        .vault()
        .migration()
        .await
        .map_err(rekey_engine::EngineError::from)?;
    let p = engine
        .vault()
        .progress()
        .await
        .map_err(rekey_engine::EngineError::from)?;
    let limit = if all { u64::MAX } else { 10 };
    let pending = engine
        .vault()
        .principals_in_state(
            rekey_core::model::MigrationState::Pending,
            None,
            limit.min(100_000),
        )
        .await
        .map_err(rekey_engine::EngineError::from)?;
    let elapsed_min = row
        .started_at
        .map(|s| ((rekey_core::model::Timestamp::now().0 - s.0) as f64 / 60_000.0).max(1.0 / 60.0));
    let migrated = p.users.migrated + p.roles.migrated + p.services.migrated;
    let remaining = p.users.remaining + p.roles.remaining + p.services.remaining;
    let rate = elapsed_min.map(|m| migrated as f64 / m);
    let eta_min = rate.filter(|r| *r > 0.0).map(|r| remaining as f64 / r);
    if json {
        print_json(&serde_json::json!({
            "phase": row.phase, "run": row.run, "started_at": row.started_at, "progress": p,
            "pending": pending.iter().map(|x| &x.name).collect::<Vec<_>>(),
            "rate_principals_per_minute": rate, "eta_minutes": eta_min,
        }));
    } else {
        println!("phase: {}", row.phase);
        let line = |what: &str, c: rekey_core::model::Counts| {
            println!(
                "  {what:<12} {:>8} migrated {:>8} remaining",
                c.migrated, c.remaining
            )
        };
        line("users", p.users);
        line("roles", p.roles);
        line("server keys", p.services);
        line("grants", p.grants);
        println!(
            "  blocked: {}   non-migratable unresolved: {}",
            p.blocked, p.unresolved_non_migratable
        );
        if let (Some(r), Some(e)) = (rate, eta_min) {
            println!("  rate: {r:.1} principals/min   estimate: {e:.1} min left");
        }
        if !pending.is_empty() {
            let names: Vec<&str> = pending.iter().map(|x| x.name.as_str()).collect();
            println!(
                "  pending: {}{}",
                names.join(", "),
                if all || remaining <= 10 { "" } else { ", …" }
            );
        }
    }
    Ok(0)
}

async fn verify(engine: &Engine, credentials: &Path, json: bool) -> Result<u8, CliError> {
    let creds = Credentials::load(credentials)?;
    let bar = Progress::new("verifying users", !json);
    let report = engine.verify(&creds, &|d, t| bar.update(d, t)).await?;
    if json {
        print_json(
            &serde_json::json!({ "passed": report.passed(), "users": report.users, "records_read": report.records_read, "mismatches": report.mismatches }),
        );
    } else {
        println!(
            "verified {} users, {} record reads",
            report.users, report.records_read
        );
    }
    if !report.passed() {
        return Err(CliError::VerifyFailed(report.mismatches.join("; ")));
    }
    Ok(0)
}

fn spec_of(s: &SpecArgs) -> DemoSpec {
    DemoSpec {
        users: s.users,
        roles: s.roles,
        records: s.records.unwrap_or(s.users * 10),
        rsa_bits: s.rsa_bits,
        seed: s.seed,
        with_problems: s.with_problems,
    }
}

async fn seed(
    engine: &Engine,
    s: &SpecArgs,
    credentials: &Path,
    json: bool,
    standalone: bool,
) -> Result<Credentials, CliError> {
    let spec = spec_of(s);
    let mut keys = match &s.key_cache {
        Some(p) => KeySource::with_cache(p),
        None => KeySource::fresh(),
    };
    if let Some(limit) = s.distinct_keys {
        keys = keys.with_distinct_limit(limit);
    }
    // Record when preparation began, before anything is issued.
    rekey_preflight::begin_preparation(engine.vault(), &actor()).await?;
    let started = Instant::now();
    let gen_bar = Progress::new("generating RSA keys", !json);
    let wrap_bar = Progress::new("wrapping legacy grants", !json);
    let demo = tokio::task::block_in_place(|| {
        generate(&spec, &mut keys, &|what, d, t| {
            if what.starts_with("generating") {
                gen_bar.update(d, t)
            } else {
                wrap_bar.update(d, t)
            }
        })
    })?;
    let grants = demo.data.grants.len();
    let report = engine.seed_demo(&demo).await?;
    demo.credentials.save(credentials)?;
    if json && standalone {
        print_json(&serde_json::json!({
            "users": spec.users,
            "e2ee_users": demo.credentials.users.len(),
            "roles": spec.roles,
            "records": spec.records,
            "rsa_bits": spec.rsa_bits,
            "legacy_grants": grants,
            "rows": report.rows,
            "seconds": started.elapsed().as_secs_f64(),
            "rsa_keys_generated": keys.generated,
            "rsa_keys_reused": keys.reused,
        }));
    } else if !json {
        println!(
            "seeded {} users, {} roles, {} records, {} legacy grants ({} rows) in {:.1?}; RSA keys: {} generated, {} from cache",
            spec.users,
            spec.roles,
            spec.records,
            grants,
            report.rows,
            started.elapsed(),
            keys.generated,
            keys.reused
        );
    }
    Ok(demo.credentials)
}

impl From<rekey_server::ClientError> for CliError {
    fn from(e: rekey_server::ClientError) -> Self {
        if e.is_conflict() {
            CliError::Refused(format!("{e} (the vault changed meanwhile; run again)"))
        } else {
            CliError::Refused(e.to_string())
        }
    }
}

async fn login_http(
    url: &str,
    vault: rekey_core::VaultId,
    id: rekey_core::PrincipalId,
    password: &str,
) -> Result<rekey_server::MigrateReport, CliError> {
    let client = rekey_server::HttpClient::new(url)?.expect_vault(vault);
    let master = rekey_engine::password::master_secret(password, vault, id)?;
    Ok(client
        .migrate(
            id,
            master,
            rekey_core::bundle::BuildOptions {
                threads: Some(1),
                ..Default::default()
            },
        )
        .await?)
}

/// Where the simulated clients send their bundles.
#[derive(Clone)]
enum Via {
    /// Straight into the vault (the engine on --db).
    Vault(Engine),
    /// Through a `rekey serve` at this URL.
    Server(String),
}

/// What one simulated login did.
struct LoginOutcome {
    /// Grants written.
    grants: usize,
    /// Legacy grants unwrapped by the accepted build (known in-process only).
    unwraps: Option<usize>,
    /// Rebuilds after conflicts.
    retries: usize,
}

/// One demo user logs in; `None` when someone else already migrated it.
async fn login_one(
    via: &Via,
    vault: rekey_core::VaultId,
    name: &str,
    user: &DemoUser,
) -> Result<Option<LoginOutcome>, CliError> {
    match via {
        Via::Vault(engine) => match engine
            .login(name, &user.password, Some(1), Arc::new(|_, _| {}))
            .await
        {
            Ok(r) => Ok(Some(LoginOutcome {
                grants: r.applied.grants,
                unwraps: Some(r.build.grants_rewrapped),
                retries: r.retries,
            })),
            Err(rekey_engine::EngineError::Bundle(
                rekey_core::bundle::CheckError::AlreadyMigrated(_),
            )) => Ok(None),
            Err(e) => Err(e.into()),
        },
        Via::Server(url) => match login_http(url, vault, user.id, &user.password).await {
            Ok(r) => Ok(Some(LoginOutcome {
                grants: r.applied.grants,
                unwraps: None,
                retries: r.retries,
            })),
            Err(e) if e.to_string().contains("already migrated") => Ok(None),
            Err(e) => Err(e),
        },
    }
}

/// What a set of logins did, added up.
#[derive(Debug)]
struct LoginSum {
    grants: usize,
    already: usize,
    /// `None` once one login could not say (over HTTP).
    unwraps: Option<usize>,
    retries: usize,
}

impl Default for LoginSum {
    fn default() -> Self {
        Self {
            grants: 0,
            already: 0,
            unwraps: Some(0),
            retries: 0,
        }
    }
}

impl LoginSum {
    fn add(&mut self, o: &LoginOutcome) {
        self.merge(&LoginSum {
            grants: o.grants,
            already: 0,
            unwraps: o.unwraps,
            retries: o.retries,
        });
    }

    fn merge(&mut self, other: &LoginSum) {
        self.grants += other.grants;
        self.already += other.already;
        self.retries += other.retries;
        self.unwraps = self.unwraps.zip(other.unwraps).map(|(a, b)| a + b);
    }
}

/// Every demo user logs in, `concurrency` at a time, with a progress bar
/// and a summary with the rate.
async fn login_all(
    via: Via,
    credentials: &Path,
    concurrency: usize,
    json: bool,
    summary: bool,
) -> Result<(usize, usize), CliError> {
    let creds = Credentials::load(credentials)?;
    let total = creds.users.len();
    let bar = Arc::new(Progress::new("users logging in", !json));
    let started = Instant::now();
    // A fixed pool of `concurrency` workers takes users from one queue: a
    // task per user, spawned up front, would hold every user's login
    // future at once (memory growing with the user count).
    let queue = Arc::new(std::sync::Mutex::new(creds.users.into_iter()));
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let vault = creds.vault;
    let mut workers = Vec::new();
    for _ in 0..concurrency.clamp(1, total.max(1)) {
        let (queue, failed, bar, done, via) = (
            queue.clone(),
            failed.clone(),
            bar.clone(),
            done.clone(),
            via.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut sum = LoginSum::default();
            while !failed.load(std::sync::atomic::Ordering::Relaxed) {
                // The lock is held only to take the next user.
                let next = queue.lock().map(|mut q| q.next()).unwrap_or(None);
                let Some((name, user)) = next else { break };
                let r = login_one(&via, vault, &name, &user).await;
                bar.update(
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                    total,
                );
                match r {
                    Ok(Some(o)) => sum.add(&o),
                    Ok(None) => sum.already += 1,
                    Err(e) => {
                        // The others finish the login they are in, then stop.
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        return Err((name, e));
                    }
                }
            }
            Ok(sum)
        }));
    }
    let mut all = LoginSum::default();
    let mut first_error = None;
    for w in workers {
        match w.await {
            Ok(Ok(sum)) => all.merge(&sum),
            Ok(Err((user, e))) => {
                first_error.get_or_insert(CliError::ForUser {
                    user,
                    source: Box::new(e),
                });
            }
            Err(_) => {
                first_error.get_or_insert(CliError::Refused("a login task panicked".into()));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let LoginSum {
        grants,
        already,
        unwraps,
        retries,
    } = all;
    let secs = started.elapsed().as_secs_f64();
    if !summary {
        return Ok((total, grants));
    }
    if json {
        print_json(&serde_json::json!({
            "users": total,
            "already_migrated": already,
            "grants": grants,
            "legacy_unwraps": unwraps,
            "conflicts_rebuilt": retries,
            "seconds": secs,
            "peak_rss_bytes": progress::peak_rss_bytes(),
        }));
    } else {
        println!(
            "{total} users logged in and migrated: {grants} grants in {secs:.1} s ({:.0} grants/s)",
            grants as f64 / secs.max(1e-3)
        );
    }
    Ok((total, grants))
}

/// The whole flow on a fresh SQLite file: seed, preflight, certificate
/// backup, start, every user logs in, finalize, verify.
async fn demo_all(dir: &Path, s: &SpecArgs, json: bool) -> Result<u8, CliError> {
    let marker = dir.join(".rekey-demo");
    if dir.exists() {
        if !marker.exists()
            && std::fs::read_dir(dir)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            return Err(CliError::Io(format!(
                "{} exists and is not a rekey demo directory; choose another --dir",
                dir.display()
            )));
        }
        std::fs::remove_dir_all(dir)
            .map_err(|e| CliError::Io(format!("{}: {e}", dir.display())))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| CliError::Io(format!("{}: {e}", dir.display())))?;
    std::fs::write(
        &marker,
        b"made by `rekey demo`; removed and remade on each run\n",
    )
    .map_err(|e| CliError::Io(e.to_string()))?;
    let t0 = Instant::now();
    let db = format!("sqlite://{}?mode=rwc", dir.join("vault.db").display());
    let key_dir = dir.join("keys");
    let credentials = dir.join("credentials.json");
    let vault = Vault::init(&db)
        .await
        .map_err(rekey_engine::EngineError::from)?;
    let engine = Engine::new(vault, Some(KeyDir::open(&key_dir)?), "rekey demo");
    let say = |m: String| {
        if !json {
            println!("{m}")
        }
    };
    say(format!(
        "1/7 seeding a legacy vault ({} users) into {}",
        s.users,
        dir.display()
    ));
    let creds = seed(&engine, s, &credentials, json, false).await?;
    say("2/7 backing up the certificate keys".into());
    rekey_preflight::backup(
        engine.vault(),
        &key_dir,
        &dir.join("certificates.age"),
        &rekey_preflight::Passphrase::new("rekey demo passphrase".into()),
    )
    .await?;
    say("3/7 preflight".into());
    let report = rekey_preflight::run(
        engine.vault(),
        &rekey_preflight::Options {
            key_dir: Some(key_dir.clone()),
            ..Default::default()
        },
    )
    .await?;
    if !json {
        print!("{}", report.to_text());
    }
    let blockers: Vec<String> = report.blocking().into_iter().map(str::to_owned).collect();
    say("4/7 start (code word given for the demo) and the server phase".into());
    let (_, server) = engine
        .start(rekey_core::lifecycle::CODE_WORD, &blockers)
        .await?;
    if let Some(sp) = &server {
        say(format!(
            "    server keys migrated: {} (with {} managed users and roles they hold)",
            sp.migrated.len(),
            sp.migrated_along
        ));
    }
    say("5/7 every user logs in".into());
    let (users, grants) = login_all(
        Via::Vault(engine.clone()),
        &credentials,
        s.concurrency,
        json,
        !json,
    )
    .await?;
    say("6/7 finalize".into());
    let deleted = engine.finalize(&|_| {}).await?;
    say("7/7 verify".into());
    let bar = Progress::new("verifying users", !json);
    let v = engine.verify(&creds, &|d, t| bar.update(d, t)).await?;
    let secs = t0.elapsed().as_secs_f64();
    if json {
        print_json(
            &serde_json::json!({ "users": users, "grants_rewrapped": grants, "legacy_rows_deleted": deleted, "verified": v.passed(), "records_read": v.records_read, "seconds": secs, "dir": dir }),
        );
    } else {
        println!(
            "\ndemo done in {secs:.1} s: {users} users migrated, {grants} grants re-wrapped, {deleted} legacy rows deleted; verify: {} ({} record reads)",
            if v.passed() { "passed" } else { "FAILED" },
            v.records_read
        );
    }
    if !v.passed() {
        return Err(CliError::VerifyFailed(v.mismatches.join("; ")));
    }
    Ok(0)
}
