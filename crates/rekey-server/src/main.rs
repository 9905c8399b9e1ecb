//! `rekey-server`: the same server as `rekey serve`, as its own binary for
//! deployments that do not want the administrator's command line on the
//! server. Same options, same environment variables, same logs.

use clap::Parser;
use rekey_server::{DEFAULT_DATABASE_URL, DEFAULT_KEY_DIR, ServeArgs};
use std::path::PathBuf;
use std::process::ExitCode;

/// Serve a rekey vault's migration API, status page and metrics.
#[derive(Debug, Parser)]
#[command(name = "rekey-server", version, about, long_about = None)]
struct Cli {
    /// The vault: sqlite://FILE, postgres://…, mysql://…
    #[arg(long, env = "REKEY_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    db: String,
    /// The server's key directory (certificate private keys).
    #[arg(long, env = "REKEY_KEY_DIR", default_value = DEFAULT_KEY_DIR)]
    key_dir: PathBuf,
    #[command(flatten)]
    serve: ServeArgs,
}

fn main() -> ExitCode {
    // Before any thread: freed bundle buffers leave the process.
    rekey_engine::memory::return_large_buffers_to_the_system();
    rekey_engine::memory::trim_free_memory_every(rekey_engine::memory::TRIM_EVERY);
    let cli = Cli::parse();
    rekey_server::init_logging();
    let config = match cli.serve.config(&cli.db, &cli.key_dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}\nhint: {}", e.hint());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(rekey_server::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}\nhint: {}", e.hint());
            ExitCode::from(1)
        }
    }
}
