//! One module per command. Each parses nothing more (clap did), calls the
//! engine (or the demo, or the HTTP client) and prints the report it gets:
//! no rules live here.

mod admin;
mod cert;
mod demo;
mod fleet;
mod lifecycle;
mod login;
mod serve;
mod status;

use crate::cli::{Cli, Command};
use crate::error::CliError;
use crate::output::Out;
use rekey_engine::{Engine, KeyDir};
use std::io::{BufRead, Write};
use std::path::PathBuf;

/// What every command gets: where the vault and key directory are, and
/// where output goes.
pub(crate) struct Ctx {
    db: String,
    key_dir: PathBuf,
    out: Out,
}

/// Whether a command needs the key directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// It writes keys: create the directory if it is missing.
    Create,
    /// It reads them when they are there: never create a mistyped path.
    IfPresent,
}

impl Ctx {
    /// The engine on the existing vault.
    async fn engine(&self, keys: Keys) -> Result<Engine, CliError> {
        let keys = match keys {
            Keys::Create => Some(KeyDir::open(&self.key_dir)?),
            Keys::IfPresent => KeyDir::existing(&self.key_dir).ok(),
        };
        Ok(Engine::open(&self.db, keys, actor()).await?)
    }

    /// The engine on a vault created (or upgraded) now.
    async fn init_engine(&self) -> Result<Engine, CliError> {
        let keys = KeyDir::open(&self.key_dir)?;
        Ok(Engine::init(&self.db, Some(keys), actor()).await?)
    }
}

/// Who acts, as the audit log names the operator.
fn actor() -> String {
    std::env::var("USER")
        .map(|u| format!("cli:{u}"))
        .unwrap_or_else(|_| "cli".into())
}

/// Runs the command; answers its exit code.
pub(crate) async fn run(cli: Cli) -> Result<u8, CliError> {
    let out = Out::new(cli.format);
    if !cli.vaults.is_empty() || cli.all {
        return run_on_fleet(cli, out).await;
    }
    let ctx = Ctx {
        db: cli.db,
        key_dir: cli.key_dir,
        out,
    };
    run_one(ctx, cli.command).await
}

/// `--vault NAME…` or `--all`: the commands that work on several vaults go
/// to [`fleet`]; the others need exactly one vault and run on it as with
/// --db and --key-dir.
async fn run_on_fleet(cli: Cli, out: Out) -> Result<u8, CliError> {
    use rekey_engine::{FleetFile, FleetKeys};
    if cli.place_given {
        return Err(CliError::Usage(
            "--db and --key-dir do not mix with --vault and --all (the fleet file names each vault's database and key directory)".into(),
        ));
    }
    let file = FleetFile::load(&cli.fleet)?;
    let entries = file.select(&cli.vaults, cli.all)?;
    match cli.command {
        Command::Init => return fleet::init(out, &entries).await,
        Command::Preflight { target_scheme } => {
            let f = fleet::open(entries, FleetKeys::IfPresent).await?;
            return fleet::preflight(out, &f, target_scheme).await;
        }
        Command::Start {
            code_word,
            target_scheme,
        } => {
            let f = fleet::open(entries, FleetKeys::Create).await?;
            return fleet::start(out, &f, code_word, target_scheme).await;
        }
        Command::Status { all_pending, watch } => {
            let f = fleet::open(entries, FleetKeys::IfPresent).await?;
            return fleet::status(out, &f, all_pending, watch).await;
        }
        Command::Finalize => {
            let f = fleet::open(entries, FleetKeys::IfPresent).await?;
            return fleet::finalize(out, &f).await;
        }
        Command::Abort { yes } => {
            let f = fleet::open(entries, FleetKeys::IfPresent).await?;
            return fleet::abort(out, &f, yes).await;
        }
        Command::Serve(args) => return serve::run_fleet(&args, entries).await,
        _ => {}
    }
    let [entry] = entries.as_slice() else {
        return Err(CliError::Usage(format!(
            "this command works on one vault; name it with --vault (the fleet file has {})",
            file.names().join(", ")
        )));
    };
    let ctx = Ctx {
        db: entry.db.clone(),
        key_dir: entry.key_dir.clone(),
        out,
    };
    run_one(ctx, cli.command).await
}

/// Runs one command on the vault `ctx` names.
async fn run_one(ctx: Ctx, command: Command) -> Result<u8, CliError> {
    match command {
        Command::Init => lifecycle::init(&ctx).await,
        Command::Preflight { target_scheme } => admin::preflight(&ctx, target_scheme).await,
        Command::Cert {
            action,
            passphrase_file,
        } => cert::run(&ctx, &action, passphrase_file.as_deref()).await,
        Command::Directory { action } => admin::directory(&ctx, &action).await,
        Command::Device { action } => admin::device(&ctx, &action).await,
        Command::User { action } => admin::user(&ctx, &action).await,
        Command::Resolve { grant, resolution } => admin::resolve(&ctx, &grant, &resolution).await,
        Command::WaiveRole { role, member } => admin::waive_role(&ctx, &role, &member).await,
        Command::Start {
            code_word,
            target_scheme,
        } => lifecycle::start(&ctx, code_word, target_scheme).await,
        Command::Status { all_pending, watch } => status::run(&ctx, all_pending, watch).await,
        Command::Login {
            user,
            password,
            server,
            credentials,
        } => login::run(&ctx, &user, password, server.as_deref(), &credentials).await,
        Command::Finalize => lifecycle::finalize(&ctx).await,
        Command::Abort { yes } => lifecycle::abort(&ctx, yes).await,
        Command::Serve(args) => serve::run(&ctx, &args).await,
        Command::Verify { credentials } => demo::verify(&ctx, &credentials).await,
        Command::Demo(args) => demo::run(&ctx, &args).await,
    }
}

/// Asks on stderr, reads one line from stdin.
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
