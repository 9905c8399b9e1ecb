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
