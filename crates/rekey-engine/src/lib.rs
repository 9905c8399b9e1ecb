//! rekey-engine: the one door to a vault. Every operation the command line
//! and the HTTP server offer is an [`Engine`] method with typed inputs and
//! outputs (the reports in `rekey_core::report`), so the same question gets
//! the same answer, and the same JSON, from both. The rules live in
//! rekey-core (lifecycle guards, bundle checks); the engine loads what they
//! need from rekey-storage, runs them, and persists the result with its
//! audit event. Preflight (rekey-preflight) and the key directory
//! (rekey-keys) sit beside storage; frontends reach them through the engine.

pub mod engine;
pub mod error;
pub mod fleet;
pub mod memory;

pub use engine::{
    CertImportReport, Engine, Names, SESSION_LIFETIME_MS, SeedReport, ServerProgress, Session,
};
pub use error::EngineError;
pub use fleet::{
    DEFAULT_FLEET_FILE, Fleet, FleetEntry, FleetFile, FleetKeys, StartPlan, valid_vault_name,
};
pub use rekey_keys::KeyDir;

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
