//! The server's options: one argument struct shared by `rekey serve` and
//! the `rekey-server` binary, so both read the same flags and environment
//! variables the same way.

use crate::error::ServerError;
use crate::state::{
    AdminToken, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_BUNDLE_BYTES, DEFAULT_MAX_CONCURRENT_BUNDLES, DEFAULT_MAX_CONNECTIONS,
    MIN_TOKEN_LEN, ServerConfig, default_server_name,
};
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The vault URL when neither `--db` nor `REKEY_DATABASE_URL` gives one.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://rekey.db";
/// The key directory when neither `--key-dir` nor `REKEY_KEY_DIR` gives one.
pub const DEFAULT_KEY_DIR: &str = "rekey-keys";

/// How to serve the migration API.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where to listen.
    #[arg(long, env = "REKEY_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// The admin token (at least 16 characters; admin requests send it as
    /// `Authorization: Bearer TOKEN`). Prefer --admin-token-file: a
    /// command line is visible to other users of the machine.
    #[arg(long, env = "REKEY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A file whose first line is the admin token (at least 16
    /// characters).
    #[arg(long, conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,
    /// This server's name in the vault's server list (default: the host
    /// name).
    #[arg(long, env = "REKEY_SERVER_NAME")]
    pub name: Option<String>,
    /// Largest bundle accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BUNDLE_BYTES)]
    pub max_bundle_bytes: usize,
    /// Largest body of every other request, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Seconds between heartbeats in the vault's server list.
    #[arg(long, default_value_t = 10)]
    pub heartbeat_secs: u64,
    /// Bundles read, checked and applied at once (more wait up to half the
    /// body timeout, then get 503).
    #[arg(long, default_value_t = DEFAULT_MAX_CONCURRENT_BUNDLES)]
    pub max_concurrent_bundles: usize,
    /// Connections open at once (more wait in the listen backlog).
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (and a kept-alive
    /// connection may stay idle).
    #[arg(long, default_value_t = DEFAULT_HEADER_TIMEOUT.as_secs())]
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request's body.
    #[arg(long, default_value_t = DEFAULT_BODY_TIMEOUT.as_secs())]
    pub body_timeout_secs: u64,
}

impl ServeArgs {
    /// The configuration for the vault at `db_url` with the key directory
    /// `key_dir`: reads the admin token (refusing a missing or short one)
    /// and fills in the defaults.
    pub fn config(&self, db_url: &str, key_dir: &Path) -> Result<ServerConfig, ServerError> {
        let token = match (&self.admin_token, &self.admin_token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(f)) => read_token_file(f)?,
            (None, None) => {
                return Err(ServerError::Config(format!(
                    "no admin token: give --admin-token-file or REKEY_ADMIN_TOKEN (at least {MIN_TOKEN_LEN} characters)"
                )));
            }
        };
        Ok(ServerConfig {
            db_url: db_url.to_owned(),
            key_dir: key_dir.to_path_buf(),
            bind: self.bind,
            admin_token: AdminToken::new(&token)?,
            server_name: self.name.clone().unwrap_or_else(default_server_name),
            max_bundle_bytes: self.max_bundle_bytes,
            max_body_bytes: self.max_body_bytes,
            heartbeat_every: Duration::from_secs(self.heartbeat_secs.max(1)),
            max_concurrent_bundles: self.max_concurrent_bundles.max(1),
            max_connections: self.max_connections.max(1),
            header_timeout: Duration::from_secs(self.header_timeout_secs.max(1)),
            body_timeout: Duration::from_secs(self.body_timeout_secs.max(1)),
        })
    }
}

/// The token in a token file: its first line, without surrounding blanks.
fn read_token_file(path: &Path) -> Result<String, ServerError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ServerError::Config(format!("admin token file {}: {e}", path.display())))?;
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn the_token_file_gives_its_first_line_and_short_tokens_are_refused() {
        let dir = std::env::temp_dir().join(format!("rekey-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "  a-long-enough-admin-token  \nsecond line\n").unwrap();
        let cli = Cli::parse_from(["x", "--admin-token-file", file.to_str().unwrap()]);
        let config = cli.serve.config("sqlite://v.db", Path::new("k")).unwrap();
        assert!(config.admin_token.matches("a-long-enough-admin-token"));
        std::fs::write(&file, "short\n").unwrap();
        let err = cli
            .serve
            .config("sqlite://v.db", Path::new("k"))
            .unwrap_err();
        assert!(err.to_string().contains("at least 16"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
