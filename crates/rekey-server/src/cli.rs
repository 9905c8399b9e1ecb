//! Command-line options.

use clap::Parser;
use rekey_server::state::{DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_BUNDLE_BYTES, default_server_name};
use rekey_server::{AdminToken, ServerConfig, ServerError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The rekey migration server: the API clients use while the vault
/// migrates, an admin API, a status page at / and /metrics.
#[derive(Debug, Parser)]
#[command(name = "rekey-server", version)]
pub(crate) struct Cli {
    /// The vault's database URL.
    #[arg(long, env = "REKEY_DB", default_value = "sqlite://vault.db")]
    pub(crate) db: String,
    /// The key directory (server-held private keys).
    #[arg(long, env = "REKEY_KEY_DIR", default_value = "keys")]
    pub(crate) key_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "REKEY_BIND", default_value = "127.0.0.1:8080")]
    pub(crate) bind: SocketAddr,
    /// The admin token (at least 16 characters). Prefer the environment
    /// variable or --admin-token-file: a command line is visible to others.
    #[arg(long, env = "REKEY_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// A file holding the admin token (first line).
    #[arg(long, conflicts_with = "admin_token")]
    pub(crate) admin_token_file: Option<PathBuf>,
    /// This server's name in the vault (default: the host name).
    #[arg(long, env = "REKEY_SERVER_NAME")]
    pub(crate) name: Option<String>,
    /// Body limit of bundle submissions, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BUNDLE_BYTES)]
    pub(crate) max_bundle_bytes: usize,
    /// Body limit of every other request, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub(crate) max_body_bytes: usize,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 10)]
    pub(crate) heartbeat_secs: u64,
    /// Log every request.
    #[arg(long, short)]
    pub(crate) verbose: bool,
}

impl Cli {
    pub(crate) fn config(&self) -> Result<ServerConfig, ServerError> {
        let token = match (&self.admin_token, &self.admin_token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| ServerError::Config(format!("{}: {e}", f.display())))?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned(),
            (None, None) => {
                return Err(ServerError::Config(
                    "no admin token: give --admin-token-file or REKEY_ADMIN_TOKEN".to_owned(),
                ));
            }
        };
        Ok(ServerConfig {
            db_url: self.db.clone(),
            key_dir: self.key_dir.clone(),
            bind: self.bind,
            admin_token: AdminToken::new(&token)?,
            server_name: self.name.clone().unwrap_or_else(default_server_name),
            max_bundle_bytes: self.max_bundle_bytes,
            max_body_bytes: self.max_body_bytes,
            heartbeat_every: Duration::from_secs(self.heartbeat_secs.max(1)),
        })
    }
}
