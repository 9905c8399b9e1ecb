//! One module per command. Each parses nothing more (clap did), calls the
//! engine (or the demo, or the HTTP client) and prints the report it gets:
//! no rules live here.

mod admin;
mod cert;
mod demo;
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
    let ctx = Ctx {
        db: cli.db,
        key_dir: cli.key_dir,
        out: Out::new(cli.format),
    };
    match cli.command {
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
        Command::Status { all, watch } => status::run(&ctx, all, watch).await,
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
