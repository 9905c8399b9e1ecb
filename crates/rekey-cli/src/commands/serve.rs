//! `serve`: the HTTP server, as the `rekey-server` binary runs it.

use super::Ctx;
use crate::error::CliError;
use rekey_server::ServeArgs;

pub(super) async fn run(ctx: &Ctx, args: &ServeArgs) -> Result<u8, CliError> {
    // The configuration first: a missing or short token is refused before
    // anything is opened or bound.
    let config = args.config(&ctx.db, &ctx.key_dir)?;
    rekey_server::init_logging();
    rekey_server::serve(config).await?;
    Ok(0)
}

/// `serve --vault …`/`--all`: one server for several vaults of the fleet
/// file, each under `/v1/vaults/NAME/…`.
pub(super) async fn run_fleet(
    args: &ServeArgs,
    entries: Vec<rekey_engine::FleetEntry>,
) -> Result<u8, CliError> {
    let _ = (args, entries);
    Err(CliError::Usage(
        "serving several vaults is not wired yet".into(),
    ))
}
