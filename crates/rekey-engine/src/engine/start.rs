//! Starting the migration and the server phase.

use super::Engine;
use crate::error::EngineError;
use rekey_core::bundle::{BuildOptions, Unlock, build_bundle};
use rekey_core::lifecycle::{
    AwaitingCertificates, Completed, Legacy, Lifecycle, ServerPhase, Transition, code_word_accepted,
};
use rekey_core::model::{
    Certificate, KeyPairRecord, KeyState, MigrationRow, MigrationState, Phase, Principal,
    PrincipalKind, ServiceKind, UserStatus,
};
use rekey_core::report::{ServerPhaseReport, StartReport};
use rekey_core::{NewPublicKey, PrincipalId, RunId};
use rekey_keys::KeyDir;

/// Reports `(service name, done, total)` while the server phase runs.
pub type ServerProgress<'a> = &'a (dyn Fn(&str, usize, usize) + Sync);

/// What a start begins from: the legacy vault, or a completed migration
/// (the vault migrates again; the previous target's keys are the legacy
/// keys of the new run).
#[derive(Clone, Copy)]
enum Before {
    Legacy(Legacy),
    Completed(Completed),
}

/// Who start sets aside: users who can never log in (blocked) and purged
/// ones (exempt).
struct SetAside {
    blocked: Vec<Principal>,
    exempt: Vec<PrincipalId>,
}

impl Engine {
    /// Starts the migration, or resumes one that was started: the one door
    /// for the command line and the HTTP server alike.
    ///
    /// A fresh start checks, cheapest first, that `code_word` is exactly
    /// `Start`, then runs preflight itself and refuses while a check
    /// blocks, naming it; nothing changes on refusal (a wrong code word
    /// does not even reach preflight). Then the vault moves to the server
    /// phase, and with a key directory the server-held keys migrate at
    /// once. A vault already in the server phase or waiting for
    /// certificates resumes the server phase instead (after a crash or a
    /// certificate import); the code word is not asked again.
    pub async fn start(
        &self,
        code_word: &str,
        progress: ServerProgress<'_>,
    ) -> Result<StartReport, EngineError> {
        let (state, row) = self.lifecycle().await?;
        // A run keeps the target it started with, whatever its phase; a
        // completed run's target is no constraint on the next run's.
        if let Some(asked) = self
            .target
            .filter(|t| state.run().is_some() && *t != row.target)
        {
            return Err(EngineError::TargetChanged {
                run: row.target,
                asked,
            });
        }
        match state {
            Lifecycle::Legacy(legacy) => {
                self.start_fresh(Before::Legacy(legacy), row, code_word, progress)
                    .await
            }
            Lifecycle::Completed(done) => {
                self.start_fresh(Before::Completed(done), row, code_word, progress)
                    .await
            }
            Lifecycle::ServerPhase(_) | Lifecycle::AwaitingCertificates(_) => {
                self.resume(row, progress).await
            }
            _ => Err(EngineError::WrongPhase {
                expected: "the legacy or completed phase (the migration is past its server phase)",
                actual: row.phase,
            }),
        }
    }

    async fn start_fresh(
        &self,
        before: Before,
        row: MigrationRow,
        code_word: &str,
        progress: ServerProgress<'_>,
    ) -> Result<StartReport, EngineError> {
        code_word_accepted(code_word)?;
        let preflight = self.preflight().await?;
        let blocking: Vec<String> = preflight
            .blocking()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let run = RunId::random();
        let target = self.target.unwrap_or_default();
        let step = match before {
            Before::Legacy(legacy) => {
                Transition::between(&legacy, &legacy.start(code_word, &blocking, run)?)
            }
            Before::Completed(done) => {
                Transition::between(&done, &done.start(code_word, &blocking, run)?)
            }
        };
        let again = matches!(before, Before::Completed(_));
        let aside = self.set_aside().await?;
        let blocked_ids: Vec<PrincipalId> = aside.blocked.iter().map(|p| p.id).collect();
        let audit = self.audit(
            "start",
            serde_json::json!({ "run": run, "target": target, "again": again, "previous_run": if again { row.run } else { None }, "blocked": blocked_ids.len(), "exempt": aside.exempt.len() }),
        );
        self.vault
            .start(
                step,
                row.version,
                run,
                target,
                &blocked_ids,
                &aside.exempt,
                &audit,
            )
            .await?;
        let server_phase = match &self.keys {
            Some(_) => Some(self.run_server_phase(progress).await?),
            None => None,
        };
        Ok(StartReport {
            run,
            target,
            resumed: false,
            blocked_users: aside.blocked.into_iter().map(|p| p.name).collect(),
            exempt: aside.exempt.len(),
            phase: server_phase
                .as_ref()
                .map_or(Phase::ServerPhase, |s| s.phase),
            server_phase,
        })
    }

    async fn resume(
        &self,
        row: MigrationRow,
        progress: ServerProgress<'_>,
    ) -> Result<StartReport, EngineError> {
        let run = row.run.ok_or_else(|| {
            EngineError::Inconsistent(format!("phase {} has no run id", row.phase))
        })?;
        let server = self.run_server_phase(progress).await?;
        let aside = self.set_aside().await?;
        Ok(StartReport {
            run,
            target: row.target,
            resumed: true,
            blocked_users: aside.blocked.into_iter().map(|p| p.name).collect(),
            exempt: aside.exempt.len(),
            phase: server.phase,
            server_phase: Some(server),
        })
    }

    async fn set_aside(&self) -> Result<SetAside, EngineError> {
        let mut blocked = Vec::new();
        for status in [UserStatus::Deactivated, UserStatus::Deleted] {
            blocked.extend(self.vault.users_by_status(status).await?);
        }
        let exempt = self
            .vault
            .users_by_status(UserStatus::Purged)
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect();
        Ok(SetAside { blocked, exempt })
    }

    /// Runs (or resumes) the server phase: every server-held principal whose
    /// certificate's private key is in the key directory migrates, with the
    /// managed users its key holds. A missing key moves the vault to
    /// `awaiting_certificates`, naming it; once every server-held principal
    /// has migrated the vault moves to the user phase.
    async fn run_server_phase(
        &self,
        progress: ServerProgress<'_>,
    ) -> Result<ServerPhaseReport, EngineError> {
        let keys = self.require_keys("the server phase")?;
        let (server, row) = match self.lifecycle().await? {
            (Lifecycle::AwaitingCertificates(waiting), row) => {
                self.certificates_back(keys, waiting, &row).await?
            }
            (Lifecycle::ServerPhase(server), row) => (server, row),
            (_, row) => {
                return Err(EngineError::WrongPhase {
                    expected: "the server phase",
                    actual: row.phase,
                });
            }
        };
        let missing = self.missing_certificates(keys).await?;
        if !missing.is_empty() {
            let waiting = server.certificates_missing(missing.clone())?;
            let audit = self.audit(
                "awaiting certificates",
                serde_json::json!({ "missing": waiting.missing() }),
            );
            self.vault
                .transition(Transition::between(&server, &waiting), row.version, &audit)
                .await?;
            return Ok(ServerPhaseReport {
                missing_certificates: missing,
                phase: Phase::AwaitingCertificates,
                ..ServerPhaseReport::default()
            });
        }
        let mut report = ServerPhaseReport::default();
        self.migrate_services(keys, server, &row, &mut report, progress)
            .await?;
        // This server's key directory now holds the new certificates: its
        // entry in the server list says so at once (finalize asks every
        // registered server for them), without counting as a heartbeat.
        self.vault
            .record_server_certificates(&self.server_name(), &keys.fingerprints())
            .await?;
        self.end_server_phase(server, report).await
    }

    /// The key files are back: from `awaiting_certificates` to the server
    /// phase again.
    async fn certificates_back(
        &self,
        keys: &KeyDir,
        waiting: AwaitingCertificates,
        row: &MigrationRow,
    ) -> Result<(ServerPhase, MigrationRow), EngineError> {
        let missing = self.missing_certificates(keys).await?;
        let server = waiting.clone().certificates_imported(missing)?;
        let audit = self.audit("certificates imported", serde_json::json!({}));
        let row = self
            .vault
            .transition(Transition::between(&waiting, &server), row.version, &audit)
            .await?;
        Ok((server, row))
    }

    /// Migrates every pending service, the directory master key last: the
    /// managed users it holds migrate with it.
    async fn migrate_services(
        &self,
        keys: &KeyDir,
        server: ServerPhase,
        row: &MigrationRow,
        report: &mut ServerPhaseReport,
        progress: ServerProgress<'_>,
    ) -> Result<(), EngineError> {
        let mut services = self
            .vault
            .principals_of_kind(PrincipalKind::Service)
            .await?;
        services.sort_by_key(|s| s.service == Some(ServiceKind::DirectoryMasterKey));
        let certificates = self.vault.certificates().await?;
        let total = services.len();
        for (i, svc) in services.iter().enumerate() {
            progress(&svc.name, i, total);
            match svc.migration {
                // A crash between applying a service's bundle and recording
                // its new certificate: record it now from the key file.
                MigrationState::Migrated => {
                    self.repair_certificate(svc, keys, &certificates).await?;
                }
                MigrationState::Pending => {
                    self.migrate_service(keys, svc, &certificates, server.run(), row, report)
                        .await?;
                }
                _ => {}
            }
        }
        progress("", total, total);
        Ok(())
    }

    /// One service: its bundle built with its key from the key directory,
    /// the new key's file written first (a crash after it leaves an unused
    /// file, never a migrated service without its key), the bundle
    /// applied, the new certificate recorded.
    async fn migrate_service(
        &self,
        keys: &KeyDir,
        svc: &Principal,
        certificates: &[Certificate],
        run: RunId,
        row: &MigrationRow,
        report: &mut ServerPhaseReport,
    ) -> Result<(), EngineError> {
        let legacy_pair = self.legacy_key_pair(svc.id).await?;
        let cert = certificates
            .iter()
            .find(|c| c.key_pair == legacy_pair.id)
            .ok_or_else(|| {
                EngineError::Inconsistent(format!("service {} has no certificate", svc.name))
            })?;
        let key = keys.private_key(&cert.fingerprint)?.ok_or_else(|| {
            EngineError::Inconsistent(format!(
                "certificate {} vanished from the key directory",
                cert.fingerprint
            ))
        })?;
        let package = self.package_with(svc, row.vault, run, row.target).await?;
        let options = BuildOptions { threads: None };
        let out = build_bundle(&package, Unlock::ServerKey(&key), options)?;
        let new_key = out
            .new_server_key
            .ok_or(EngineError::Internal("server build returned no key"))?;
        let fingerprint = keys.store_new_key(&new_key)?;
        let new_pair = out.bundle.bundle().parts[0].new_key_pair.id;
        let applied = self
            .apply_signed(svc.id, out.bundle, row.vault, run, row.target)
            .await?;
        report.migrated.push(svc.name.clone());
        report.migrated_along += applied.principals.len().saturating_sub(1);
        report.grants += applied.grants;
        self.vault
            .add_certificate(&Certificate {
                key_pair: new_pair,
                principal: svc.id,
                fingerprint,
                backup_digest: None,
                backup_verified_at: None,
            })
            .await?;
        Ok(())
    }

    /// Every service migrated: on to the user phase (the core guard
    /// re-counts what is still pending).
    async fn end_server_phase(
        &self,
        server: ServerPhase,
        mut report: ServerPhaseReport,
    ) -> Result<ServerPhaseReport, EngineError> {
        let pending: Vec<String> = self
            .vault
            .principals_of_kind(PrincipalKind::Service)
            .await?
            .into_iter()
            .filter(|p| p.migration == MigrationState::Pending)
            .map(|p| p.name)
            .collect();
        let row = self.vault.migration().await?;
        let user_phase = server.server_keys_done(pending.len() as u64, pending)?;
        let audit = self.audit(
            "server phase done",
            serde_json::json!({ "run": user_phase.run(), "services": report.migrated.len(), "grants": report.grants }),
        );
        self.vault
            .transition(
                Transition::between(&server, &user_phase),
                row.version,
                &audit,
            )
            .await?;
        report.phase = Phase::UserPhase;
        Ok(report)
    }

    /// Records the certificate of a migrated service's current key when the
    /// row is missing and the key file is in the key directory.
    async fn repair_certificate(
        &self,
        svc: &Principal,
        keys: &KeyDir,
        certificates: &[Certificate],
    ) -> Result<(), EngineError> {
        let Some(kp) = self
            .vault
            .key_pairs(svc.id)
            .await?
            .into_iter()
            .find(|k| k.state == KeyState::Current)
        else {
            return Ok(());
        };
        if certificates.iter().any(|c| c.key_pair == kp.id) {
            return Ok(());
        }
        let fp = NewPublicKey::parse(&kp.public_key)?.fingerprint();
        if keys.new_key(&fp)?.is_none() {
            return Err(EngineError::Inconsistent(format!(
                "service {} is migrated but its new key {fp} is not in the key directory",
                svc.name
            )));
        }
        self.vault
            .add_certificate(&Certificate {
                key_pair: kp.id,
                principal: svc.id,
                fingerprint: fp,
                backup_digest: None,
                backup_verified_at: None,
            })
            .await?;
        Ok(())
    }

    /// Certificates of pending services whose private key is not in the key
    /// directory, by fingerprint and service name.
    pub(crate) async fn missing_certificates(
        &self,
        keys: &KeyDir,
    ) -> Result<Vec<String>, EngineError> {
        let services = self
            .vault
            .principals_of_kind(PrincipalKind::Service)
            .await?;
        let certificates = self.vault.certificates().await?;
        let mut missing = Vec::new();
        for svc in services
            .iter()
            .filter(|s| s.migration == MigrationState::Pending)
        {
            let legacy = self.legacy_key_pair(svc.id).await?;
            match certificates.iter().find(|c| c.key_pair == legacy.id) {
                Some(c) if keys.check_any(&c.fingerprint) == rekey_keys::KeyFileState::Present => {}
                Some(c) => missing.push(format!("{} ({})", c.fingerprint, svc.name)),
                None => missing.push(format!("no certificate for {}", svc.name)),
            }
        }
        Ok(missing)
    }

    pub(crate) async fn legacy_key_pair(
        &self,
        p: PrincipalId,
    ) -> Result<KeyPairRecord, EngineError> {
        self.vault
            .key_pairs(p)
            .await?
            .into_iter()
            .find(|k| k.state == KeyState::Legacy)
            .ok_or_else(|| {
                EngineError::Inconsistent(format!("principal {p} has no legacy key pair"))
            })
    }
}
