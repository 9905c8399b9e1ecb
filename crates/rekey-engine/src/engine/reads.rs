//! What a client reads of the vault (its principal, key pairs, grants and
//! records), and the two writes a vault server makes outside the
//! migration: seeding a vault and its heartbeat.

use super::Engine;
use crate::error::EngineError;
use rekey_core::model::{GrantRecord, KeyPairRecord, Principal, Server, Settings, Timestamp};
use rekey_core::{KeyPairId, LegacyRsaPrivateKey, PrincipalId, VaultId};
use rekey_keys::KeyDir;
use rekey_storage::SeedData;
pub use rekey_storage::SeedReport;

impl Engine {
    /// The principal with this name, if any.
    pub async fn principal_by_name(&self, name: &str) -> Result<Option<Principal>, EngineError> {
        Ok(self.vault.principal_by_name(name).await?)
    }

    /// The key pairs of a principal.
    pub async fn key_pairs(
        &self,
        principal: PrincipalId,
    ) -> Result<Vec<KeyPairRecord>, EngineError> {
        Ok(self.vault.key_pairs(principal).await?)
    }

    /// One key pair, if it exists.
    pub async fn key_pair(&self, id: KeyPairId) -> Result<Option<KeyPairRecord>, EngineError> {
        Ok(self.vault.key_pair(id).await?)
    }

    /// Every grant to a principal.
    pub async fn grants_to(&self, principal: PrincipalId) -> Result<Vec<GrantRecord>, EngineError> {
        Ok(self.vault.grants_to(principal).await?)
    }

    /// Seeds an empty vault: its identity, its rows (one transaction per
    /// chunk), default settings, the servers' heartbeats, and the services'
    /// private keys into the key directory. The demo's way to make a
    /// legacy vault.
    pub async fn seed(
        &self,
        vault: VaultId,
        data: &SeedData,
        server_keys: &[LegacyRsaPrivateKey],
    ) -> Result<SeedReport, EngineError> {
        let keys = self.require_keys("seeding a vault")?;
        for k in server_keys {
            keys.store_legacy_key(k)?;
        }
        self.vault.set_vault_id(vault).await?;
        let report = self.vault.seed(data, 5000).await?;
        // A large vault takes minutes to generate and store, and preflight
        // (so `start`) wants a heartbeat from the last five minutes: the
        // servers report in now.
        let now = Timestamp::now();
        for s in &data.servers {
            self.vault
                .heartbeat(&Server {
                    heartbeat_at: now,
                    ..s.clone()
                })
                .await?;
        }
        self.vault
            .set_settings(&Settings {
                offline_access_allowed: true,
                mobile_sync_allowed: true,
            })
            .await?;
        Ok(report)
    }

    /// Registers the server `name` in the vault's server list, or records
    /// its heartbeat, with the fingerprints of the keys in the key
    /// directory (finalize checks that every server holds the new ones).
    pub async fn heartbeat(&self, name: &str) -> Result<(), EngineError> {
        let fingerprints = self
            .keys
            .as_ref()
            .map(KeyDir::fingerprints)
            .unwrap_or_default();
        Ok(self
            .vault
            .heartbeat(&Server {
                name: name.to_owned(),
                heartbeat_at: Timestamp::now(),
                certificate_fingerprints: fingerprints,
            })
            .await?)
    }
}
