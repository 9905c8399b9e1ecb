//! Migration packages: what a principal's client (or the server phase)
//! needs to build its bundle, loaded in a few batched queries.

use super::{Engine, PAGE};
use crate::error::EngineError;
use rekey_core::bundle::{Candidate, HolderKey, MigrationPackage, PackageLegacyKey, PendingGrant};
use rekey_core::model::{
    GrantRecord, KeyCustody, KeyPairRecord, KeyState, MigrationState, Principal, PrincipalKind,
    ServiceKind, UserStatus,
};
use rekey_core::{NewPublicKey, PrincipalId, PublicKey, RunId, Target, VaultId};
use std::collections::HashMap;

impl Engine {
    /// by page (never the storage rows and the package's copy at once).
    async fn all_pending(&self, p: PrincipalId) -> Result<Vec<PendingGrant>, EngineError> {
        let mut out = Vec::new();
        let mut cursor = self.vault.pending_grants(p, PAGE);
        while let Some(page) = cursor.next_page().await? {
            out.extend(page.into_iter().map(Self::to_pending));
        }
        Ok(out)
    }

    /// Who holds the keys of `ps` (role members not purged; the directory
    /// master key for a managed user), and the key pairs of `ps` and their
    /// holders, in a few batched queries: a package or a check of the
    /// directory key's bundle names thousands of principals.
    pub(crate) async fn key_index(&self, ps: &[Principal]) -> Result<KeyIndex, EngineError> {
        let roles: Vec<PrincipalId> = ps
            .iter()
            .filter(|p| p.kind == PrincipalKind::Role)
            .map(|p| p.id)
            .collect();
        let memberships = if roles.is_empty() {
            Vec::new()
        } else {
            self.vault.memberships_of_roles(&roles).await?
        };
        let mut member_ids: Vec<PrincipalId> = memberships.iter().map(|(_, m)| *m).collect();
        member_ids.sort_unstable();
        member_ids.dedup();
        let members: HashMap<PrincipalId, Principal> = self
            .vault
            .principals(&member_ids)
            .await?
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
        let directory: Vec<Principal> = if ps
            .iter()
            .any(|p| p.kind == PrincipalKind::User && p.custody == KeyCustody::Managed)
        {
            self.vault
                .principals_of_kind(PrincipalKind::Service)
                .await?
                .into_iter()
                .filter(|s| s.service == Some(ServiceKind::DirectoryMasterKey))
                .collect()
        } else {
            Vec::new()
        };
        let mut holders: HashMap<PrincipalId, Vec<Principal>> = HashMap::new();
        for (role, member) in &memberships {
            if let Some(m) = members.get(member) {
                if m.migration != MigrationState::Exempt {
                    holders.entry(*role).or_default().push(m.clone());
                }
            }
        }
        for p in ps {
            if p.kind == PrincipalKind::User && p.custody == KeyCustody::Managed {
                holders.insert(p.id, directory.clone());
            }
        }
        let mut ids: Vec<PrincipalId> = ps
            .iter()
            .map(|p| p.id)
            .chain(holders.values().flatten().map(|h| h.id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut key_pairs: HashMap<PrincipalId, Vec<KeyPairRecord>> = HashMap::new();
        for kp in self.vault.key_pairs_of(&ids).await? {
            key_pairs.entry(kp.principal).or_default().push(kp);
        }
        for pairs in key_pairs.values_mut() {
            pairs.sort_by_key(|k| k.id);
        }
        Ok(KeyIndex { holders, key_pairs })
    }

    /// Principals `p` holds the key of and that are still pending.
    async fn candidates_of(&self, p: &Principal) -> Result<Vec<Principal>, EngineError> {
        match (p.kind, p.service) {
            (PrincipalKind::User, _) => {
                let ids = self.vault.roles_of(p.id).await?;
                Ok(self
                    .vault
                    .principals(&ids)
                    .await?
                    .into_iter()
                    .filter(|r| r.migration == MigrationState::Pending)
                    .collect())
            }
            // The managed users, and every pending role one of them belongs
            // to that no active e2ee user belongs to: the directory key
            // reaches those roles' keys through the managed members it
            // migrates in the same bundle, and no member of them will ever
            // log in to migrate them. A role with an active e2ee member is
            // left to that member's login: its grants are re-wrapped on the
            // member's device, not on the server while the administrator
            // waits for `start` (on a 10,000-user demo vault the roles were
            // three quarters of the server phase's RSA unwraps).
            (PrincipalKind::Service, Some(ServiceKind::DirectoryMasterKey)) => {
                let managed: Vec<Principal> = self
                    .vault
                    .principals_of_kind(PrincipalKind::User)
                    .await?
                    .into_iter()
                    .filter(|u| {
                        u.custody == KeyCustody::Managed && u.migration == MigrationState::Pending
                    })
                    .collect();
                let managed_ids: Vec<PrincipalId> = managed.iter().map(|u| u.id).collect();
                let mut roles: Vec<PrincipalId> = self
                    .vault
                    .memberships_of_members(&managed_ids)
                    .await?
                    .into_iter()
                    .map(|(role, _)| role)
                    .collect();
                roles.sort_unstable();
                roles.dedup();
                let roles: Vec<Principal> = self
                    .vault
                    .principals(&roles)
                    .await?
                    .into_iter()
                    .filter(|r| r.migration == MigrationState::Pending)
                    .collect();
                let roles = self.without_active_e2ee_member(roles).await?;
                Ok(managed.into_iter().chain(roles).collect())
            }
            _ => Ok(Vec::new()),
        }
    }

    /// The roles of `roles` that no active e2ee user belongs to: nobody
    /// will log in to migrate them.
    async fn without_active_e2ee_member(
        &self,
        roles: Vec<Principal>,
    ) -> Result<Vec<Principal>, EngineError> {
        let ids: Vec<PrincipalId> = roles.iter().map(|r| r.id).collect();
        let memberships = self.vault.memberships_of_roles(&ids).await?;
        let mut member_ids: Vec<PrincipalId> = memberships.iter().map(|(_, m)| *m).collect();
        member_ids.sort_unstable();
        member_ids.dedup();
        let logs_in: std::collections::HashSet<PrincipalId> = self
            .vault
            .principals(&member_ids)
            .await?
            .into_iter()
            .filter(|m| {
                m.kind == PrincipalKind::User
                    && m.custody == KeyCustody::E2ee
                    && m.status == UserStatus::Active
            })
            .map(|m| m.id)
            .collect();
        let left_to_members: std::collections::HashSet<PrincipalId> = memberships
            .iter()
            .filter(|(_, m)| logs_in.contains(m))
            .map(|(r, _)| *r)
            .collect();
        Ok(roles
            .into_iter()
            .filter(|r| !left_to_members.contains(&r.id))
            .collect())
    }

    fn to_pending(g: GrantRecord) -> PendingGrant {
        PendingGrant {
            id: g.id,
            subject: g.subject,
            envelope_bytes: g.envelope.into_bytes(),
        }
    }

    /// The migration package of a principal: its legacy key, its pending
    /// grants, and the pending principals whose key it holds.
    pub async fn package(&self, principal: PrincipalId) -> Result<MigrationPackage, EngineError> {
        let (vault, run, target) = self.run_in_progress().await?;
        let p = self
            .vault
            .principal(principal)
            .await?
            .ok_or_else(|| EngineError::UnknownPrincipal(principal.to_string()))?;
        // A migrated account's package would list nothing to do; a blocked
        // or exempt one may not migrate. Either way its client is told so
        // before anything is loaded.
        rekey_core::bundle::may_migrate(&p.name, p.migration)?;
        self.package_with(&p, vault, run, target).await
    }

    /// The vault id and the current run, or `WrongPhase` when no
    /// migration is in progress.
    pub async fn current_run(&self) -> Result<(VaultId, RunId), EngineError> {
        let (vault, run, _) = self.run_in_progress().await?;
        Ok((vault, run))
    }

    /// The vault id, the current run and its target, or `WrongPhase` when
    /// no migration is in progress.
    pub(crate) async fn run_in_progress(&self) -> Result<(VaultId, RunId, Target), EngineError> {
        let (state, row) = self.lifecycle().await?;
        let run = state.run().ok_or(EngineError::WrongPhase {
            expected: "a migration in progress",
            actual: row.phase,
        })?;
        Ok((row.vault, run, row.target))
    }

    pub(crate) async fn package_with(
        &self,
        p: &Principal,
        vault: VaultId,
        run: RunId,
        target: Target,
    ) -> Result<MigrationPackage, EngineError> {
        let found = self.candidates_of(p).await?;
        let everyone: Vec<Principal> = found.iter().chain([p]).cloned().collect();
        let index = self.key_index(&everyone).await?;
        let mut candidates = Vec::with_capacity(found.len());
        for c in &found {
            candidates.push(Candidate {
                principal: c.id,
                legacy_key: index.package_legacy_key(c)?,
                pending_grants: self.all_pending(c.id).await?,
                holders: index
                    .holders(c.id)
                    .iter()
                    .map(|h| index.holder_key(h))
                    .collect::<Result<_, _>>()?,
            });
        }
        Ok(MigrationPackage {
            vault,
            run,
            principal: p.id,
            target,
            legacy_key: index.package_legacy_key(p)?,
            pending_grants: self.all_pending(p.id).await?,
            candidates,
        })
    }
}

/// What [`Engine::key_index`] loads: holders and key pairs by principal.
pub(crate) struct KeyIndex {
    holders: HashMap<PrincipalId, Vec<Principal>>,
    key_pairs: HashMap<PrincipalId, Vec<KeyPairRecord>>,
}

impl KeyIndex {
    /// Who holds `p`'s key (empty for e2ee users and server-held keys).
    pub(crate) fn holders(&self, p: PrincipalId) -> &[Principal] {
        self.holders.get(&p).map_or(&[], Vec::as_slice)
    }

    fn pairs(&self, p: PrincipalId) -> &[KeyPairRecord] {
        self.key_pairs.get(&p).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn legacy(&self, p: &Principal) -> Result<&KeyPairRecord, EngineError> {
        self.pairs(p.id)
            .iter()
            .find(|k| k.state == KeyState::Legacy)
            .ok_or_else(|| EngineError::Inconsistent(format!("{} has no legacy key pair", p.name)))
    }

    /// The public key of `p`'s legacy key pair (RSA, or the previous
    /// target's key when a migrated vault migrates again).
    pub(crate) fn legacy_public_key(&self, p: &Principal) -> Result<PublicKey, EngineError> {
        let kp = self.legacy(p)?;
        Ok(PublicKey::from_stored(kp.scheme, &kp.public_key)?)
    }

    pub(crate) fn current(&self, p: PrincipalId) -> Option<&KeyPairRecord> {
        self.pairs(p).iter().find(|k| k.state == KeyState::Current)
    }

    fn package_legacy_key(&self, p: &Principal) -> Result<PackageLegacyKey, EngineError> {
        let kp = self.legacy(p)?;
        Ok(PackageLegacyKey {
            id: kp.id,
            public_key: PublicKey::from_stored(kp.scheme, &kp.public_key)?,
            wrapped_private: kp.wrapped_private_key.clone(),
        })
    }

    /// A holder's key to wrap a KEK to: its new key once migrated, else
    /// its legacy key.
    pub(crate) fn holder_key(&self, h: &Principal) -> Result<HolderKey, EngineError> {
        if h.migration == MigrationState::Migrated {
            if let Some(kp) = self.current(h.id) {
                return Ok(HolderKey::Migrated {
                    principal: h.id,
                    key_pair: kp.id,
                    public_key: NewPublicKey::parse(&kp.public_key)?,
                });
            }
        }
        let kp = self.legacy(h)?;
        Ok(HolderKey::Pending {
            principal: h.id,
            key_pair: kp.id,
            public_key: PublicKey::from_stored(kp.scheme, &kp.public_key)?,
        })
    }
}
