//! Role confirmations (`rekey_core::confirm`): what a member's client
//! needs to check the roles other members migrated, the receipts it
//! signs, and the administrator's waiver.

use super::Engine;
use crate::error::EngineError;
use rekey_core::GrantId;
use rekey_core::confirm::{Receipt, RoleCheck, RoleEvidence, verify_receipt};
use rekey_core::model::{
    GrantRecord, KeyCustody, KeyPairRecord, KeyState, MigrationState, Principal, PrincipalKind,
};
use rekey_core::{KeyPairId, NewPublicKey, PrincipalId, RunId, Subject};
use rekey_storage::{ConfirmedBy, RoleConfirmation};
use std::collections::HashSet;
use std::sync::Arc;

impl Engine {
    /// The migrated roles `holder` belongs to and has not confirmed yet,
    /// each with what its client needs to check it. Empty for anything but
    /// an e2ee user.
    pub async fn role_checks(&self, holder: PrincipalId) -> Result<Vec<RoleCheck>, EngineError> {
        let (vault, run, _) = self.run_in_progress().await?;
        let member = self
            .vault
            .principal(holder)
            .await?
            .ok_or_else(|| EngineError::UnknownPrincipal(holder.to_string()))?;
        if member.kind != PrincipalKind::User || member.custody != KeyCustody::E2ee {
            return Ok(Vec::new());
        }
        let role_ids = self.vault.roles_of(holder).await?;
        let confirmed = self.vault.confirmed_by(holder, &role_ids).await?;
        let roles = self.vault.principals(&role_ids).await?;
        let holder_keys = self.vault.key_pairs(holder).await?;
        let mut to_holder = None;
        let mut out = Vec::new();
        for role in roles
            .iter()
            .filter(|r| r.migration == MigrationState::Migrated)
        {
            let (current, legacy) = role_keys(&self.vault.key_pairs(role.id).await?, role)?;
            if confirmed.contains(&current.id) {
                continue;
            }
            let grants = match &to_holder {
                Some(g) => g,
                None => to_holder.insert(self.vault.grants_to(holder).await?),
            };
            let wanted = [
                Subject::PrivateKey(current.id),
                Subject::PrivateKey(legacy.id),
            ];
            let holder_grants = grants
                .iter()
                .filter(|g| wanted.contains(&g.subject))
                .cloned()
                .collect();
            let evidence = self.role_evidence(run, role.id, current.id).await?;
            out.push(RoleCheck {
                vault,
                run,
                holder,
                role: role.id,
                holder_keys: holder_keys.clone(),
                holder_grants,
                evidence,
                role_current: current,
                role_legacy: legacy,
            });
        }
        Ok(out)
    }

    /// What a member checks `role` (current key pair `key_pair`) against
    /// in `run`: the grants the migration wrote to it, the records and key
    /// pairs they name, and the role's legacy grants declared
    /// non-migratable. Read once per run and role, then kept
    /// (`role_cache`: nothing changes it until the run ends).
    async fn role_evidence(
        &self,
        run: RunId,
        role: PrincipalId,
        key_pair: KeyPairId,
    ) -> Result<Arc<RoleEvidence>, EngineError> {
        if let Some(kept) = self.role_evidence.get(run, role, key_pair) {
            return Ok(kept);
        }
        // The new grants only (the legacy ones are as many, and larger),
        // and the legacy ones only when some were declared non-migratable.
        let grants: Vec<GrantRecord> = self
            .vault
            .grants_to_where_legacy(role, false)
            .await?
            .into_iter()
            .filter(|g| !g.envelope.scheme().is_legacy())
            .collect();
        let disowned_ids: HashSet<GrantId> = self
            .vault
            .non_migratable()
            .await?
            .into_iter()
            .filter(|n| n.recipient == role)
            .map(|n| n.grant)
            .collect();
        let disowned: Vec<GrantRecord> = if disowned_ids.is_empty() {
            Vec::new()
        } else {
            self.vault
                .grants_to_where_legacy(role, true)
                .await?
                .into_iter()
                .filter(|g| disowned_ids.contains(&g.id))
                .collect()
        };
        let mut record_ids = Vec::new();
        let mut key_ids = Vec::new();
        for g in grants.iter().chain(&disowned) {
            match g.subject {
                Subject::RecordKey(r) => record_ids.push(r),
                Subject::PrivateKey(k) => key_ids.push(k),
            }
        }
        record_ids.sort_unstable();
        record_ids.dedup();
        key_ids.sort_unstable();
        key_ids.dedup();
        let evidence = Arc::new(RoleEvidence {
            records: self.vault.records(&record_ids).await?,
            subject_keys: self.vault.key_pairs_by_id(&key_ids).await?,
            grants,
            disowned,
        });
        self.role_evidence
            .put(run, role, key_pair, evidence.clone());
        Ok(evidence)
    }

    /// Keeps `holder`'s receipt for a role after checking it: the role is
    /// a migrated role `holder` belongs to, the receipt names the role's
    /// current key pair, and its signature verifies with that key for this
    /// vault, run and member.
    pub async fn confirm_role(
        &self,
        holder: PrincipalId,
        receipt: &Receipt,
    ) -> Result<(), EngineError> {
        let (vault, run, _) = self.run_in_progress().await?;
        let role = self.member_role(holder, receipt.role).await?;
        let (current, _) = role_keys(&self.vault.key_pairs(role.id).await?, &role)?;
        if current.id != receipt.key_pair {
            return Err(EngineError::ReceiptRefused(
                "it names another key pair than the role's current one",
            ));
        }
        let public = NewPublicKey::parse(&current.public_key)?;
        if !verify_receipt(&public, vault, run, holder, receipt) {
            return Err(EngineError::ReceiptRefused(
                "its signature does not verify with the role's new key",
            ));
        }
        self.record_confirmation(
            role.id,
            holder,
            current.id,
            run,
            ConfirmedBy::Receipt,
            receipt,
        )
        .await
    }

    /// The administrator accepts that `member` of `role` will not confirm
    /// the role (it will never log in again, or its client cannot make
    /// receipts): finalize no longer waits for it. Audited.
    pub async fn waive_role_confirmation(
        &self,
        role: PrincipalId,
        member: PrincipalId,
    ) -> Result<(), EngineError> {
        let (_, run, _) = self.run_in_progress().await?;
        let r = self.member_role(member, role).await?;
        let (current, _) = role_keys(&self.vault.key_pairs(role).await?, &r)?;
        self.vault
            .append_audit(&self.audit(
                "role confirmation waived",
                serde_json::json!({ "role": role, "member": member, "key_pair": current.id }),
            ))
            .await?;
        let none = Receipt {
            role,
            key_pair: current.id,
            checked: 0,
            signature: Vec::new(),
        };
        self.record_confirmation(role, member, current.id, run, ConfirmedBy::Waived, &none)
            .await
    }

    /// The submitter of an applied bundle confirmed the roles its bundle
    /// migrated by building them.
    pub(crate) async fn confirm_built(
        &self,
        submitter: PrincipalId,
        run: RunId,
        parts: &[(PrincipalId, rekey_core::KeyPairId)],
    ) -> Result<(), EngineError> {
        let rows: Vec<RoleConfirmation> = parts
            .iter()
            .map(|(role, key_pair)| RoleConfirmation {
                role: *role,
                holder: submitter,
                key_pair: *key_pair,
                run,
                how: ConfirmedBy::Built,
                checked: 0,
                signature: None,
            })
            .collect();
        Ok(self.vault.add_role_confirmations(&rows).await?)
    }

    async fn record_confirmation(
        &self,
        role: PrincipalId,
        holder: PrincipalId,
        key_pair: rekey_core::KeyPairId,
        run: RunId,
        how: ConfirmedBy,
        receipt: &Receipt,
    ) -> Result<(), EngineError> {
        Ok(self
            .vault
            .add_role_confirmations(&[RoleConfirmation {
                role,
                holder,
                key_pair,
                run,
                how,
                checked: receipt.checked,
                signature: (!receipt.signature.is_empty()).then(|| receipt.signature.clone()),
            }])
            .await?)
    }

    /// `role`, if it is a migrated role `member` belongs to.
    async fn member_role(
        &self,
        member: PrincipalId,
        role: PrincipalId,
    ) -> Result<Principal, EngineError> {
        let r = self
            .vault
            .principal(role)
            .await?
            .filter(|r| r.kind == PrincipalKind::Role)
            .ok_or_else(|| EngineError::UnknownPrincipal(role.to_string()))?;
        if !self.vault.roles_of(member).await?.contains(&role) {
            return Err(EngineError::ReceiptRefused(
                "the account is not a member of this role",
            ));
        }
        if r.migration != MigrationState::Migrated {
            return Err(EngineError::ReceiptRefused("the role has not migrated"));
        }
        Ok(r)
    }
}

/// A migrated role's current and legacy key pairs.
fn role_keys(
    pairs: &[KeyPairRecord],
    role: &Principal,
) -> Result<(KeyPairRecord, KeyPairRecord), EngineError> {
    let find = |state: KeyState| pairs.iter().find(|k| k.state == state).cloned();
    match (find(KeyState::Current), find(KeyState::Legacy)) {
        (Some(c), Some(l)) => Ok((c, l)),
        _ => Err(EngineError::Inconsistent(format!(
            "migrated role {} lacks its current or legacy key pair",
            role.name
        ))),
    }
}
