//! The `rekey` command line: parses, calls the engine (or the demo, or the
//! HTTP client), prints. One module per command under `commands/`; no
//! rules live here.

mod cli;
mod commands;
mod error;
mod output;
mod progress;

use output::Out;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Before any thread: freed bundle buffers leave the process, so peak
    // memory follows the live data, not every arena's largest bundle.
    rekey_engine::memory::return_large_buffers_to_the_system();
    rekey_engine::memory::trim_free_memory_every(rekey_engine::memory::TRIM_EVERY);
    let cli = cli::Cli::parse_args();
    let out = Out::new(cli.format);
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
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            out.error(&e);
            ExitCode::from(e.exit_code())
        }
    }
}
