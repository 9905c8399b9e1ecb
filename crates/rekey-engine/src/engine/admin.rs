//! The administrator's operations besides the lifecycle: preflight, the
//! remedies it names, non-migratable grants, certificate backups and the
//! record API. Each one writes its own audit event.

use super::Engine;
use crate::error::EngineError;
use rekey_core::GrantId;
use rekey_core::RecordId;
use rekey_core::model::{RecordRow, Resolution};
use rekey_keys::{BackupOptions, BackupSummary, Passphrase};
use rekey_preflight::{DirectoryToken, Options, Report};
use std::path::Path;

impl Engine {
    /// Runs every preparation check (the key directory's certificate files
    /// included when the engine has one). Reads only, except that the
    /// first run records when preparation began.
    pub async fn preflight(&self) -> Result<Report, EngineError> {
        let options = Options {
            key_dir: self.keys.clone(),
            target: self.target.unwrap_or_default(),
            ..Options::default()
        };
        Ok(rekey_preflight::run(&self.vault, &options).await?)
    }

    /// Records that preparation began (the first preflight does it too).
    pub async fn begin_preparation(&self) -> Result<(), EngineError> {
        rekey_preflight::begin_preparation(&self.vault, &self.actor).await?;
        Ok(())
    }

    /// Issues a new provisioning token for a directory-sync profile (the
    /// old one stops working); the token is shown once.
    pub async fn renew_directory_token(
        &self,
        profile: &str,
    ) -> Result<DirectoryToken, EngineError> {
        Ok(rekey_preflight::renew_directory_token(&self.vault, profile, &self.actor).await?)
    }

    /// Restores a deactivated or deleted user (preflight's remedy; refused
    /// once the migration has started).
    pub async fn restore_user(&self, name: &str) -> Result<(), EngineError> {
        Ok(rekey_preflight::restore_user(&self.vault, name, &self.actor).await?)
    }

    /// Purges a deactivated or deleted user (preflight's remedy; refused
    /// once the migration has started, and unless `force` when records
    /// would be left that nobody else can read).
    pub async fn purge_user(
        &self,
        name: &str,
        force: bool,
    ) -> Result<rekey_preflight::PurgeReport, EngineError> {
        Ok(rekey_preflight::purge_user(&self.vault, name, force, &self.actor).await?)
    }

    /// Writes a device off: its unsynchronised changes will be lost.
    pub async fn write_off_device(&self, device: &str) -> Result<(), EngineError> {
        Ok(rekey_preflight::write_off_device(&self.vault, device, &self.actor).await?)
    }

    /// Resolves a non-migratable grant (`reshared` or `written_off`).
    pub async fn resolve_non_migratable(
        &self,
        grant: GrantId,
        resolution: Resolution,
    ) -> Result<(), EngineError> {
        if !matches!(resolution, Resolution::Reshared | Resolution::WrittenOff) {
            return Err(EngineError::BadResolution(resolution));
        }
        let audit = self.audit(
            "resolve non-migratable",
            serde_json::json!({ "grant": grant, "resolution": resolution.as_str() }),
        );
        Ok(self
            .vault
            .resolve_non_migratable(grant, resolution, &audit)
            .await?)
    }

    /// Backs up every certificate key of the key directory into one
    /// passphrase-protected file, verifies it, and records its digest.
    pub async fn backup_certificates(
        &self,
        out: &Path,
        passphrase: &Passphrase,
    ) -> Result<BackupSummary, EngineError> {
        self.backup_certificates_with(out, passphrase, &BackupOptions::default())
            .await
    }

    /// [`Engine::backup_certificates`] with options (a lighter scrypt work
    /// factor, for tests); the audit log names this engine's actor.
    pub async fn backup_certificates_with(
        &self,
        out: &Path,
        passphrase: &Passphrase,
        options: &BackupOptions,
    ) -> Result<BackupSummary, EngineError> {
        let keys = self.require_keys("a certificate backup")?;
        let options = BackupOptions {
            actor: self.actor.clone(),
            ..options.clone()
        };
        Ok(rekey_keys::backup_with(&self.vault, keys, out, passphrase, &options).await?)
    }

    /// Checks a backup file against this vault. Writes nothing.
    pub async fn verify_backup(
        &self,
        file: &Path,
        passphrase: &Passphrase,
    ) -> Result<BackupSummary, EngineError> {
        Ok(rekey_keys::verify(&self.vault, file, passphrase).await?)
    }

    /// Restores a backup's keys into the key directory.
    pub async fn import_backup(
        &self,
        file: &Path,
        passphrase: &Passphrase,
        server: Option<&str>,
    ) -> Result<CertImportReport, EngineError> {
        let keys = self.require_keys("a certificate import")?;
        let summary = rekey_keys::import(&self.vault, file, passphrase, keys.path()).await?;
        // The server this key directory belongs to now holds these keys:
        // the vault's server list says so at once (finalize and preflight
        // read it), without a heartbeat that would count it as active.
        let server = server.map_or_else(|| self.server_name(), str::to_owned);
        let server_recorded = self
            .vault
            .record_server_certificates(&server, &keys.fingerprints())
            .await?;
        Ok(CertImportReport {
            written: summary.written,
            unchanged: summary.unchanged,
            server,
            server_recorded,
        })
    }

    /// A record's ciphertext, if the record exists.
    pub async fn record(&self, id: RecordId) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.vault.record(id).await?.map(|r| r.ciphertext))
    }

    /// The ciphertexts of the records of these ids that exist, in batches
    /// of one query each.
    pub async fn records(&self, ids: &[RecordId]) -> Result<Vec<(RecordId, Vec<u8>)>, EngineError> {
        Ok(self
            .vault
            .records(ids)
            .await?
            .into_iter()
            .map(|r| (r.id, r.ciphertext))
            .collect())
    }

    /// Writes a record's ciphertext; refused (read-only) while the vault
    /// is being migrated.
    pub async fn put_record(&self, id: RecordId, ciphertext: Vec<u8>) -> Result<(), EngineError> {
        Ok(self.vault.put_record(&RecordRow { id, ciphertext }).await?)
    }
}

/// What `rekey cert import` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertImportReport {
    /// Key files written (fingerprints).
    pub written: Vec<String>,
    /// Key files already there with the same key (fingerprints).
    pub unchanged: Vec<String>,
    /// The server whose key directory this is.
    pub server: String,
    /// Whether the vault's server list has that server and now records
    /// every key its directory holds (`false`: not registered yet; its
    /// first heartbeat reports them).
    pub server_recorded: bool,
}
