//! Finalize (delete the legacy material, lift read-only mode) and abort
//! (back to the exact legacy state).

use super::{Engine, FINALIZE_BATCH, PAGE};
use crate::error::EngineError;
use rekey_core::lifecycle::{FinalizeFacts, Lifecycle, NAMES_SHOWN, Transition};
use rekey_core::model::{
    KeyState, MigrationState, NonMigratable, Phase, PrincipalKind, Resolution,
};
use rekey_core::report::{AbortReport, FinalizeReport};

impl Engine {
    /// What finalize needs to know, from the vault.
    async fn finalize_facts(&self) -> Result<FinalizeFacts, EngineError> {
        let mut first_pending = Vec::new();
        let mut pending = 0u64;
        for state in [MigrationState::Pending, MigrationState::Blocked] {
            let mut after = None;
            loop {
                let page = self.vault.principals_in_state(state, after, PAGE).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.id);
                pending += page.len() as u64;
                for p in page {
                    if first_pending.len() < NAMES_SHOWN {
                        first_pending.push(p.name);
                    }
                }
            }
        }
        let unresolved: Vec<NonMigratable> = self
            .vault
            .non_migratable()
            .await?
            .into_iter()
            .filter(|n| n.resolution == Resolution::Unresolved)
            .collect();
        // Every registered server must hold the new certificates.
        let mut new_fps = Vec::new();
        let certs = self.vault.certificates().await?;
        let services = self
            .vault
            .principals_of_kind(PrincipalKind::Service)
            .await?;
        let pairs = self
            .vault
            .key_pairs_of(&services.iter().map(|s| s.id).collect::<Vec<_>>())
            .await?;
        for c in &certs {
            if pairs
                .iter()
                .any(|k| k.id == c.key_pair && k.state == KeyState::Current)
            {
                new_fps.push(c.fingerprint.clone());
            }
        }
        let servers = self.vault.servers().await?;
        let servers_without_new_certificates = if servers.len() > 1 {
            servers
                .into_iter()
                .filter(|s| {
                    !new_fps
                        .iter()
                        .all(|fp| s.certificate_fingerprints.contains(fp))
                })
                .map(|s| s.name)
                .collect()
        } else {
            Vec::new()
        };
        let evidence = self.vault.finalize_evidence(NAMES_SHOWN as u64).await?;
        Ok(FinalizeFacts {
            pending,
            first_pending,
            migrated_without_key: evidence.without_key,
            first_migrated_without_key: evidence.first_without_key,
            uncovered_legacy_grants: evidence.uncovered,
            first_uncovered: evidence
                .first_uncovered
                .into_iter()
                .map(|(name, grant)| format!("{name}: {grant}"))
                .collect(),
            unresolved_non_migratable: unresolved.len() as u64,
            first_unresolved: unresolved
                .iter()
                .take(NAMES_SHOWN)
                .map(|n| n.grant)
                .collect(),
            servers_without_new_certificates,
            unconfirmed_members: evidence.unconfirmed,
            first_unconfirmed: evidence
                .first_unconfirmed
                .into_iter()
                .map(|(member, role)| format!("{member} ({role})"))
                .collect(),
        })
    }

    /// Finalizes: refuses while anything is pending, otherwise deletes the
    /// legacy material in batches (resumable: run again after a crash) and
    /// completes, lifting read-only mode. `progress(deleted_so_far)`.
    pub async fn finalize(
        &self,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<FinalizeReport, EngineError> {
        let (state, row) = self.lifecycle().await?;
        let finalizing = match state {
            Lifecycle::UserPhase(u) => {
                let facts = self.finalize_facts().await?;
                let fin = u.finalize(&facts)?;
                let audit = self.audit("finalize", serde_json::json!({ "run": fin.run() }));
                self.vault
                    .transition(Transition::between(&u, &fin), row.version, &audit)
                    .await?;
                fin
            }
            // A finalize resumed after an interruption checks the rows
            // again before it deletes any more.
            Lifecycle::Finalizing(f) => {
                self.finalize_facts().await?.check_evidence()?;
                f
            }
            _ => {
                return Err(EngineError::WrongPhase {
                    expected: "the user phase with nobody pending (or an interrupted finalize)",
                    actual: row.phase,
                });
            }
        };
        let deleted = self.vault.delete_legacy(FINALIZE_BATCH, progress).await?;
        let completed = finalizing.complete(0)?;
        let row = self.vault.migration().await?;
        let audit = self.audit(
            "completed",
            serde_json::json!({ "deleted_legacy_rows": deleted }),
        );
        self.vault
            .transition(
                Transition::between(&finalizing, &completed),
                row.version,
                &audit,
            )
            .await?;
        Ok(FinalizeReport {
            deleted_legacy_rows: deleted,
            phase: Phase::Completed,
        })
    }

    /// Aborts: back to the exact state before the run (new key pairs and
    /// grants deleted; legacy rows were never touched, or, for a vault
    /// that was migrating again, put back as the completed vault had
    /// them).
    pub async fn abort(&self) -> Result<AbortReport, EngineError> {
        let (state, row) = self.lifecycle().await?;
        state.abort()?;
        let audit = self.audit("abort", serde_json::json!({ "from": row.phase }));
        let after = self.vault.abort(row.version, &audit).await?;
        Ok(AbortReport {
            from: row.phase,
            phase: after.phase,
        })
    }
}
