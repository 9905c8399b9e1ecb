//! The engine: every operation a frontend offers, on one vault. The rules
//! are rekey-core's (lifecycle guards, bundle checks); each operation here
//! loads what a rule needs, runs it, and persists the outcome with its
//! audit event. One module per concern:
//!
//! - [`start`](Engine::start): preflight, the code word, the server phase;
//! - packages and bundles: [`package`](Engine::package),
//!   [`submit`](Engine::submit), checked bundles written together when
//!   they arrive together (`group`, group commit);
//! - [`finalize`](Engine::finalize) and [`abort`](Engine::abort);
//! - [`status`](Engine::status);
//! - the administrator's remedies and certificate backups (`admin`);
//! - what a client reads (`reads`): its key pairs, grants and records.

mod admin;
mod apply;
mod auth;
mod confirm;
mod finalize;
mod group;
mod package;
mod reads;
mod role_cache;
mod start;
mod status;

pub use admin::CertImportReport;
pub use auth::{SESSION_LIFETIME_MS, Session};
pub use reads::SeedReport;
pub use start::ServerProgress;
pub use status::Names;

use crate::error::EngineError;
use rekey_core::auth::SessionKey;
use rekey_core::lifecycle::Lifecycle;
use rekey_core::model::{AuditEvent, MigrationRow, Phase, Timestamp};
use rekey_core::{Target, VaultId};
use rekey_keys::KeyDir;
use rekey_storage::Vault;
use std::sync::{Arc, OnceLock};

/// Grants read per page when streaming.
pub const PAGE: u64 = 1000;
/// Legacy rows deleted per finalize batch: one transaction each on
/// PostgreSQL and MySQL, one progress step inside SQLite's one transaction
/// (`Vault::delete_legacy`). Measured with a transaction per batch on the
/// 1,000-user benchmark vault's 126,283 legacy rows (SQLite): 2,000 took
/// 13.1 s, 10,000 8.6 s, 50,000 6.8 s (fewer commits and checkpoints;
/// nothing else writes while the vault is finalizing).
pub const FINALIZE_BATCH: u64 = 50_000;

/// The migration engine on one vault.
#[derive(Debug, Clone)]
pub struct Engine {
    vault: Vault,
    keys: Option<KeyDir>,
    actor: String,
    /// The target the operator asked for; `None`: a fresh start moves to
    /// the default, a resumed run keeps its own.
    target: Option<Target>,
    /// The vault's session-token key once read: a cache of a row of the
    /// vault (every server of the vault reads the same key).
    session_key: Arc<OnceLock<Arc<SessionKey>>>,
    /// The role evidence members check, once read (`role_cache`).
    role_evidence: Arc<role_cache::RoleEvidenceCache>,
    /// Checked write sets waiting for their group's transaction (`group`).
    group: Arc<group::GroupCommit>,
}

impl Engine {
    /// An engine on `vault`; `keys` is the server's key directory (needed
    /// for the server phase and certificate backups); `actor` names the
    /// operator or server in the audit log.
    #[must_use]
    pub fn new(vault: Vault, keys: Option<KeyDir>, actor: impl Into<String>) -> Self {
        let group = Arc::new(group::GroupCommit::new(&vault));
        Self {
            vault,
            keys,
            actor: actor.into(),
            target: None,
            session_key: Arc::new(OnceLock::new()),
            role_evidence: Arc::default(),
            group,
        }
    }

    /// Opens the existing vault at `url` (see `Vault::open`).
    pub async fn open(
        url: &str,
        keys: Option<KeyDir>,
        actor: impl Into<String>,
    ) -> Result<Self, EngineError> {
        Ok(Self::new(Vault::open(url).await?, keys, actor))
    }

    /// Creates (or upgrades) the vault at `url` and opens it (see
    /// `Vault::init`).
    pub async fn init(
        url: &str,
        keys: Option<KeyDir>,
        actor: impl Into<String>,
    ) -> Result<Self, EngineError> {
        Ok(Self::new(Vault::init(url).await?, keys, actor))
    }

    /// The target `start` moves keys to (`hpke-p256` when not given). A
    /// run in progress keeps the target it was started with: resuming it
    /// with another one is refused.
    #[must_use]
    pub fn with_target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    /// The target this engine was given for a start (`None`: the default,
    /// or the running run's own).
    #[must_use]
    pub fn target(&self) -> Option<Target> {
        self.target
    }

    /// The name this process has in the vault's server list: a server's
    /// own (its actor is `server:NAME`), otherwise the host name.
    pub(crate) fn server_name(&self) -> String {
        self.actor
            .strip_prefix("server:")
            .map_or_else(crate::host_name, str::to_owned)
    }

    /// The target the operator asked for, if any.
    pub(crate) fn asked_target(&self) -> Option<Target> {
        self.target
    }

    /// The key directory, if any.
    #[must_use]
    pub fn key_dir(&self) -> Option<&KeyDir> {
        self.keys.as_ref()
    }

    fn require_keys(&self, what: &'static str) -> Result<&KeyDir, EngineError> {
        self.keys.as_ref().ok_or(EngineError::NoKeyDir(what))
    }

    /// Who acts, as the audit log names it.
    #[must_use]
    pub fn actor(&self) -> &str {
        &self.actor
    }

    pub(crate) fn audit(&self, action: &str, details: serde_json::Value) -> AuditEvent {
        AuditEvent {
            at: Timestamp::now(),
            actor: self.actor.clone(),
            action: action.to_owned(),
            details: details.to_string(),
        }
    }

    /// The persisted lifecycle state and its row.
    pub(crate) async fn lifecycle(&self) -> Result<(Lifecycle, MigrationRow), EngineError> {
        let row = self.vault.migration().await?;
        let state = Lifecycle::load(row.phase, row.run, Vec::new()).ok_or_else(|| {
            EngineError::Inconsistent(format!("phase {} has no run id", row.phase))
        })?;
        Ok((state, row))
    }

    /// The current phase (one small read: `status --watch` polls it, the
    /// server's readiness probe asks it).
    pub async fn phase(&self) -> Result<Phase, EngineError> {
        Ok(self.vault.migration().await?.phase)
    }

    /// The vault's id (bindings name it).
    pub async fn vault_id(&self) -> Result<VaultId, EngineError> {
        Ok(self.vault.vault_id().await?)
    }
}
