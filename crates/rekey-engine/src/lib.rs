//! rekey-engine: the migration engine on top of rekey-storage. The rules
//! live in rekey-core (lifecycle, bundles); this crate loads what they
//! need from the vault, runs them, and persists the result. The command
//! line and the HTTP server both call it and hold no rules of their own.

pub mod client;
pub mod demo;
pub mod engine;
pub mod error;
pub mod keycache;
pub mod keydir;
pub mod memory;
pub mod password;

pub use client::{LoginReport, VerifyReport};
pub use engine::{ApplyReport, Engine, ServerPhaseReport, StartReport};
pub use error::EngineError;
pub use keydir::KeyDir;

/// This machine's name as servers register it in the vault (the host name,
/// or `rekey-server`). The demo registers its one server under it, so a
/// `rekey serve` on the same machine updates that entry instead of adding a
/// second server.
#[must_use]
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rekey-server".to_owned())
}
