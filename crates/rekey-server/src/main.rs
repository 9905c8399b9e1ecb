//! The `rekey-server` binary: parses its options and runs
//! [`rekey_server::serve`].

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Before any thread: freed bundle buffers leave the process, so peak
    // memory follows the live data, not every arena's largest bundle.
    rekey_engine::memory::return_large_buffers_to_the_system();
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    let config = match cli.config() {
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

/// Plain fmt logs: this crate at info (debug with --verbose), every other
/// crate at warn only, so that no dependency's debug output (SQL with its
/// bound values, say) reaches the log.
fn init_logging(verbose: bool) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let ours = if verbose {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    let filter = Targets::new()
        .with_target("rekey_server", ours)
        .with_default(LevelFilter::WARN);
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_target(false))
        .with(filter)
        .init();
}
