//! Bundles: the server's view of the principals a bundle names, the
//! core checks, and the write set applied in one transaction.

use super::Engine;
use crate::error::EngineError;
use rekey_core::bundle::{
    CheckContext, CheckedBundle, HolderFacts, PrincipalFacts, SignedBundle, check_signed,
};
use rekey_core::lifecycle::Lifecycle;
use rekey_core::model::{
    GrantOrigin, GrantRecord, KeyPairRecord, KeyState, NonMigratable, PrincipalKind, Resolution,
    Timestamp,
};
use rekey_core::report::ApplyReport;
use rekey_core::{GrantId, KeyPairId, PrincipalId, PublicKey, RunId, Subject, Target, VaultId};
use rekey_storage::{MigrationWrite, PrincipalMigration};
use std::collections::{HashMap, HashSet};

/// The audit action of an applied bundle (the status page counts them).
pub(crate) const BUNDLE_APPLIED: &str = "bundle applied";

impl Engine {
    /// Checks and applies a bundle submitted by `submitter` (its bytes as
    /// they arrived). Bundles are accepted in UserPhase (and, from
    /// server-held principals, in the server phase).
    pub async fn submit(
        &self,
        submitter: PrincipalId,
        bytes: &[u8],
    ) -> Result<ApplyReport, EngineError> {
        let signed = SignedBundle::parse(bytes)?;
        let (state, row) = self.lifecycle().await?;
        let run = match state {
            Lifecycle::UserPhase(u) => u.run(),
            _ => {
                return Err(EngineError::WrongPhase {
                    expected: "the user phase (bundles are accepted only while users migrate)",
                    actual: row.phase,
                });
            }
        };
        self.apply_signed(submitter, signed, row.vault, run, row.target)
            .await
    }

    /// Loads the server's view for a bundle.
    async fn check_context(
        &self,
        submitter: PrincipalId,
        signed: &SignedBundle,
        vault: VaultId,
        run: RunId,
        target: Target,
    ) -> Result<CheckContext, EngineError> {
        let mut principals = HashMap::new();
        let mut holders = HashMap::new();
        let ids: Vec<PrincipalId> = signed.bundle().parts.iter().map(|p| p.principal).collect();
        let named = self.vault.principals(&ids).await?;
        let index = self.key_index(&named).await?;
        for p in named {
            let legacy = index.legacy(&p)?;
            // Ids and subjects only: the server never opens a legacy envelope.
            let pending = self
                .vault
                .pending_grant_subjects(p.id, rekey_storage::PENDING_IDS_PAGE)
                .await?
                .into_iter()
                .collect();
            let hs = index.holders(p.id);
            for h in hs {
                holders.insert(
                    h.id,
                    HolderFacts {
                        state: h.migration,
                        legacy_key_pair: index.legacy(h)?.id,
                        pending_scheme: index.legacy_public_key(h)?.pending_holder_scheme(),
                        current_key_pair: index.current(h.id).map(|k| k.id),
                    },
                );
            }
            principals.insert(
                p.id,
                PrincipalFacts {
                    name: p.name.clone(),
                    state: p.migration,
                    legacy_key_pair: legacy.id,
                    legacy_public_key: PublicKey::from_stored(legacy.scheme, &legacy.public_key)?,
                    pending_grants: pending,
                    holders: hs.iter().map(|h| h.id).collect(),
                    key_in_database: p.kind != PrincipalKind::Service,
                },
            );
        }
        let new_ids: Vec<KeyPairId> = signed
            .bundle()
            .parts
            .iter()
            .map(|p| p.new_key_pair.id)
            .collect();
        let taken_key_pairs = self
            .vault
            .key_pair_ids_taken(&new_ids)
            .await?
            .into_iter()
            .collect();
        Ok(CheckContext {
            vault,
            run,
            target,
            submitter,
            principals,
            holders,
            taken_key_pairs,
        })
    }

    pub(crate) async fn apply_signed(
        &self,
        submitter: PrincipalId,
        signed: SignedBundle,
        vault: VaultId,
        run: RunId,
        target: Target,
    ) -> Result<ApplyReport, EngineError> {
        let ctx = self
            .check_context(submitter, &signed, vault, run, target)
            .await?;
        // The checked bundle takes the decoded copy and the write set its
        // envelopes: one copy of a large bundle in memory, not three.
        let checked = check_signed(signed, &ctx)?;
        let principals = checked.bundle().parts.iter().map(|p| p.principal).collect();
        // The submitter confirms the roles it migrates by building them.
        let built: Vec<(PrincipalId, KeyPairId)> = checked.bundle().parts[1..]
            .iter()
            .map(|p| (p.principal, p.new_key_pair.id))
            .collect();
        let write = self.write_set(checked);
        let report = ApplyReport {
            principals,
            grants: write.grants.len() + write.membership_grants.len(),
            non_migratable: write.non_migratable.len(),
        };
        self.group
            .apply(&self.vault, write)
            .await
            .map_err(|e| match e {
                rekey_storage::Error::Conflict { reason, .. } => EngineError::ApplyConflict(reason),
                other => EngineError::Storage(other),
            })?;
        if !built.is_empty() {
            self.confirm_built(submitter, run, &built).await?;
        }
        Ok(report)
    }

    fn write_set(&self, checked: CheckedBundle) -> MigrationWrite {
        let (bundle, pre) = checked.into_parts();
        let now = Timestamp::now();
        let in_bundle: HashSet<PrincipalId> = bundle.parts.iter().map(|p| p.principal).collect();
        let mut write = MigrationWrite {
            // The checked bundle's run is the one the context was read for.
            run: bundle.run,
            principals: Vec::new(),
            key_pairs: Vec::new(),
            grants: Vec::new(),
            membership_grants: Vec::new(),
            non_migratable: Vec::new(),
            pending_holders: pre.pending.iter().copied().filter(|p| !in_bundle.contains(p)).collect(),
            current_keys: pre.current_keys,
            audit: self.audit(
                BUNDLE_APPLIED,
                serde_json::json!({
                    "submitter": bundle.submitter,
                    "principals": bundle.parts.iter().map(|p| p.principal).collect::<Vec<_>>(),
                    "grants": bundle.parts.iter().map(|p| p.grants.len()).sum::<usize>(),
                    "holder_grants": bundle.parts.iter().map(|p| p.holder_grants.len()).sum::<usize>(),
                    "non_migratable": bundle.parts.iter().map(|p| p.non_migratable.len()).sum::<usize>(),
                }),
            ),
        };
        write
            .grants
            .reserve(bundle.parts.iter().map(|p| p.grants.len()).sum());
        for (part, (principal, covered)) in bundle.parts.into_iter().zip(pre.covered) {
            debug_assert_eq!(part.principal, principal);
            write.principals.push(PrincipalMigration {
                principal: part.principal,
                covered_grants: covered,
            });
            write.key_pairs.push(KeyPairRecord {
                id: part.new_key_pair.id,
                principal: part.principal,
                scheme: part.new_key_pair.public_key.target().batch_scheme(),
                public_key: part.new_key_pair.public_key.to_bytes(),
                wrapped_private_key: part.new_key_pair.wrapped_private,
                state: KeyState::Current,
            });
            for g in part.grants {
                write.grants.push(GrantRecord {
                    id: GrantId::time_ordered(),
                    recipient: part.principal,
                    subject: g.subject,
                    envelope: g.envelope,
                    origin: GrantOrigin::Migration,
                    created_at: Some(now),
                });
            }
            for h in part.holder_grants {
                write.membership_grants.push(GrantRecord {
                    id: GrantId::time_ordered(),
                    recipient: h.holder,
                    subject: Subject::PrivateKey(part.new_key_pair.id),
                    envelope: h.envelope,
                    origin: GrantOrigin::Migration,
                    created_at: Some(now),
                });
            }
            for nm in part.non_migratable {
                write.non_migratable.push(NonMigratable {
                    grant: nm.grant,
                    recipient: part.principal,
                    reason: nm.reason.to_string(),
                    resolution: Resolution::Unresolved,
                    resolved_by: None,
                });
            }
        }
        write
    }
}
