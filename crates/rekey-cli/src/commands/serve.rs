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
/// file, each under `/v1/vaults/NAME/…` (a status page per vault, one list
/// at `/`, `vault` labels on `/metrics`).
pub(super) async fn run_fleet(
    args: &ServeArgs,
    entries: Vec<rekey_engine::FleetEntry>,
) -> Result<u8, CliError> {
    // The per-vault database and key directory come from the fleet file;
    // the configuration's own are not used in this mode.
    let config = args.config("", std::path::Path::new(""))?;
    let sites = entries
        .into_iter()
        .map(|e| rekey_server::VaultSite::new(e.name, e.db, e.key_dir))
        .collect();
    rekey_server::init_logging();
    rekey_server::serve_vaults(sites, config).await?;
    Ok(0)
}
