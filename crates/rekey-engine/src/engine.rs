//! The engine: lifecycle transitions, the server phase, migration
//! packages, bundle check-and-apply, finalize and abort, on one vault.

use crate::error::EngineError;
use crate::keydir::KeyDir;
use rekey_core::bundle::{
    BuildOptions, Candidate, CheckContext, CheckedBundle, HolderFacts, HolderKey, MigrationPackage,
    PackageLegacyKey, PendingGrant, PrincipalFacts, SignedBundle, Unlock, build_bundle,
    check_signed,
};
use rekey_core::crypto::hpke_export_scheme;
use rekey_core::lifecycle::{FinalizeFacts, Legacy, Lifecycle, NAMES_SHOWN};
use rekey_core::model::{
    AuditEvent, Certificate, GrantOrigin, GrantRecord, KeyCustody, KeyPairRecord, KeyState,
    MigrationRow, MigrationState, NonMigratable, Phase, Principal, PrincipalKind, Resolution,
    ServiceKind, Timestamp, UserStatus,
};
use rekey_core::*;
use rekey_storage::{MigrationWrite, PrincipalMigration, Vault};
use std::collections::{HashMap, HashSet};

/// Grants read per page when streaming.
pub const PAGE: u64 = 1000;
/// Legacy rows deleted per finalize batch (one transaction each).
pub const FINALIZE_BATCH: u64 = 10_000;

/// The migration engine on one vault.
#[derive(Debug, Clone)]
pub struct Engine {
    vault: Vault,
    keys: Option<KeyDir>,
    actor: String,
    curve: Curve,
}

/// What `start` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartReport {
    /// The run.
    pub run: RunId,
    /// Users who can never log in (deactivated, deleted): blocked.
    pub blocked: Vec<String>,
    /// Purged users: exempt.
    pub exempt: usize,
    /// The phase after start (and the server phase, if run).
    pub phase: Phase,
}

/// What the server phase did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerPhaseReport {
    /// Server-held principals migrated now.
    pub migrated: Vec<String>,
    /// Principals migrated along (managed users, and roles reached through
    /// them).
    pub migrated_along: usize,
    /// Grants re-wrapped.
    pub grants: usize,
    /// Certificates whose private key is missing (phase is then
    /// AwaitingCertificates).
    pub missing_certificates: Vec<String>,
    /// The phase afterwards.
    pub phase: Option<Phase>,
}

/// What applying one bundle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Principals migrated.
    pub principals: Vec<PrincipalId>,
    /// Grants written (re-wrapped and holder grants).
    pub grants: usize,
    /// Grants listed as non-migratable.
    pub non_migratable: usize,
}

impl Engine {
    /// An engine on `vault`; `keys` is the server's key directory (needed
    /// for the server phase); `actor` names the operator or server in the
    /// audit log.
    #[must_use]
    pub fn new(vault: Vault, keys: Option<KeyDir>, actor: impl Into<String>) -> Self {
        Self {
            vault,
            keys,
            actor: actor.into(),
            curve: Curve::P256,
        }
    }

    /// New keys on this curve (P-256 by default).
    #[must_use]
    pub fn with_curve(mut self, curve: Curve) -> Self {
        self.curve = curve;
        self
    }

    /// The vault.
    #[must_use]
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The key directory, if any.
    #[must_use]
    pub fn key_dir(&self) -> Option<&KeyDir> {
        self.keys.as_ref()
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
    pub async fn lifecycle(&self) -> Result<(Lifecycle, MigrationRow), EngineError> {
        let row = self.vault.migration().await?;
        let state = Lifecycle::load(row.phase, row.run, Vec::new()).ok_or_else(|| {
            EngineError::Inconsistent(format!("phase {} has no run id", row.phase))
        })?;
        Ok((state, row))
    }

    /// The vault's id (bindings name it).
    pub async fn vault_id(&self) -> Result<VaultId, EngineError> {
        Ok(self.vault.vault_id().await?)
    }

    /// Starts the migration: `answer` must be the code word `Start`
    /// exactly and `blocking_checks` (from preflight) empty. Nothing
    /// changes on refusal. Then runs the server phase if a key directory is
    /// configured.
    pub async fn start(
        &self,
        answer: &str,
        blocking_checks: &[String],
    ) -> Result<(StartReport, Option<ServerPhaseReport>), EngineError> {
        let (state, row) = self.lifecycle().await?;
        let Lifecycle::Legacy(legacy) = state else {
            return Err(EngineError::WrongPhase {
                expected: "the legacy phase (a migration is already under way or done)",
                actual: row.phase,
            });
        };
        let run = RunId::random();
        let _server: rekey_core::lifecycle::ServerPhase =
            Legacy::start(legacy, answer, blocking_checks, run)?;
        let mut blocked = Vec::new();
        let mut blocked_names = Vec::new();
        for status in [UserStatus::Deactivated, UserStatus::Deleted] {
            for p in self.vault.users_by_status(status).await? {
                blocked.push(p.id);
                blocked_names.push(p.name);
            }
        }
        let exempt: Vec<PrincipalId> = self
            .vault
            .users_by_status(UserStatus::Purged)
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect();
        let audit = self.audit(
            "start",
            serde_json::json!({ "run": run, "blocked": blocked.len(), "exempt": exempt.len() }),
        );
        self.vault
            .start(row.version, run, &blocked, &exempt, &audit)
            .await?;
        let report = StartReport {
            run,
            blocked: blocked_names,
            exempt: exempt.len(),
            phase: Phase::ServerPhase,
        };
        if self.keys.is_some() {
            let server = self.run_server_phase(&|_, _, _| {}).await?;
            let phase = server.phase.unwrap_or(Phase::ServerPhase);
            return Ok((StartReport { phase, ..report }, Some(server)));
        }
        Ok((report, None))
    }

    /// Runs (or resumes) the server phase: every server-held principal whose
    /// certificate's private key is in the key directory migrates, with the
    /// managed users its key holds. A missing key moves the vault to
    /// AwaitingCertificates, naming it; once every server-held principal has
    /// migrated the vault moves to UserPhase. `progress(name, done, total)`.
    pub async fn run_server_phase(
        &self,
        progress: &(dyn Fn(&str, usize, usize) + Sync),
    ) -> Result<ServerPhaseReport, EngineError> {
        let keys = self.keys.as_ref().ok_or(EngineError::Internal(
            "the server phase needs the key directory (--key-dir)",
        ))?;
        let (state, row) = self.lifecycle().await?;
        let (state, row) = match state {
            Lifecycle::AwaitingCertificates(waiting) => {
                let missing = self.missing_certificates(keys).await?;
                let server = waiting.certificates_imported(missing)?;
                let audit = self.audit("certificates imported", serde_json::json!({}));
                let row = self
                    .vault
                    .transition(
                        Phase::AwaitingCertificates,
                        row.version,
                        Phase::ServerPhase,
                        &audit,
                    )
                    .await?;
                (Lifecycle::ServerPhase(server), row)
            }
            other => (other, row),
        };
        let Lifecycle::ServerPhase(server) = state else {
            return Err(EngineError::WrongPhase {
                expected: "the server phase",
                actual: row.phase,
            });
        };
        let mut report = ServerPhaseReport::default();
        let missing = self.missing_certificates(keys).await?;
        if !missing.is_empty() {
            let waiting = server.certificates_missing(missing.clone())?;
            let audit = self.audit(
                "awaiting certificates",
                serde_json::json!({ "missing": waiting.missing }),
            );
            self.vault
                .transition(
                    Phase::ServerPhase,
                    row.version,
                    Phase::AwaitingCertificates,
                    &audit,
                )
                .await?;
            report.missing_certificates = missing;
            report.phase = Some(Phase::AwaitingCertificates);
            return Ok(report);
        }
        let vault_id = row.vault;
        let mut services = self
            .vault
            .principals_of_kind(PrincipalKind::Service)
            .await?;
        // The directory master key goes last: the managed users it holds
        // migrate with it.
        services.sort_by_key(|s| s.service == Some(ServiceKind::DirectoryMasterKey));
        let certificates = self.vault.certificates().await?;
        let total = services.len();
        for (i, svc) in services.iter().enumerate() {
            progress(&svc.name, i, total);
            if svc.migration == MigrationState::Migrated {
                // A crash between applying a service's bundle and recording
                // its new certificate: record it now from the key file.
                self.repair_certificate(svc, keys, &certificates).await?;
                continue;
            }
            if svc.migration != MigrationState::Pending {
                continue;
            }
            let legacy_pair = self.legacy_key_pair(svc.id).await?;
            let cert = certificates
                .iter()
                .find(|c| c.key_pair == legacy_pair.id)
                .ok_or_else(|| {
                    EngineError::Inconsistent(format!("service {} has no certificate", svc.name))
                })?;
            let key = keys.legacy_key(&cert.fingerprint)?.ok_or_else(|| {
                EngineError::Inconsistent(format!(
                    "certificate {} vanished from the key directory",
                    cert.fingerprint
                ))
            })?;
            let package = self.package_with(svc, vault_id, server.run).await?;
            let options = BuildOptions {
                curve: self.curve,
                threads: None,
            };
            let out = build_bundle(&package, Unlock::ServerKey(&key), options)?;
            let new_key = out
                .new_server_key
                .ok_or(EngineError::Internal("server build returned no key"))?;
            // The key file first: a crash after it leaves an unused file,
            // never a migrated service without its key.
            let fp = keys.store_new_key(&new_key)?;
            let new_pair = out.bundle.bundle().parts[0].new_key_pair.id;
            let applied = self
                .apply_signed(svc.id, out.bundle, vault_id, server.run)
                .await?;
            report.migrated.push(svc.name.clone());
            report.migrated_along += applied.principals.len().saturating_sub(1);
            report.grants += applied.grants;
            self.vault
                .add_certificate(&Certificate {
                    key_pair: new_pair,
                    principal: svc.id,
                    fingerprint: fp,
                    backup_digest: None,
                    backup_verified_at: None,
                })
                .await?;
        }
        progress("", total, total);
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
            serde_json::json!({ "run": user_phase.run, "services": report.migrated.len(), "grants": report.grants }),
        );
        self.vault
            .transition(Phase::ServerPhase, row.version, Phase::UserPhase, &audit)
            .await?;
        report.phase = Some(Phase::UserPhase);
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
        let curve = Curve::of_point(&kp.public_key);
        let fp = EcPublicKey::from_sec1(curve, &kp.public_key)?.fingerprint();
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
    pub async fn missing_certificates(&self, keys: &KeyDir) -> Result<Vec<String>, EngineError> {
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
                Some(c) if keys.has_legacy_key(&c.fingerprint) => {}
                Some(c) => missing.push(format!("{} ({})", c.fingerprint, svc.name)),
                None => missing.push(format!("no certificate for {}", svc.name)),
            }
        }
        Ok(missing)
    }

    async fn legacy_key_pair(&self, p: PrincipalId) -> Result<KeyPairRecord, EngineError> {
        self.vault
            .key_pairs(p)
            .await?
            .into_iter()
            .find(|k| k.state == KeyState::Legacy)
            .ok_or_else(|| {
                EngineError::Inconsistent(format!("principal {p} has no legacy key pair"))
            })
    }

    /// Every pending grant of `p` as the package carries it, converted page
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
    async fn key_index(&self, ps: &[Principal]) -> Result<KeyIndex, EngineError> {
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
            // to: the directory key reaches those roles' keys through the
            // managed members it migrates in the same bundle. A role whose
            // members are all managed would otherwise never migrate: no
            // member of it ever logs in.
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
                Ok(managed.into_iter().chain(roles).collect())
            }
            _ => Ok(Vec::new()),
        }
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
        let (vault, run) = self.run_in_progress().await?;
        let p = self
            .vault
            .principal(principal)
            .await?
            .ok_or_else(|| EngineError::UnknownPrincipal(principal.to_string()))?;
        self.package_with(&p, vault, run).await
    }

    /// [`Engine::package`] of a principal the caller has just read.
    pub(crate) async fn package_of(&self, p: &Principal) -> Result<MigrationPackage, EngineError> {
        let (vault, run) = self.run_in_progress().await?;
        self.package_with(p, vault, run).await
    }

    /// The vault id and the current run, or `WrongPhase` when no
    /// migration is in progress.
    async fn run_in_progress(&self) -> Result<(VaultId, RunId), EngineError> {
        let (state, row) = self.lifecycle().await?;
        let run = state.run().ok_or(EngineError::WrongPhase {
            expected: "a migration in progress",
            actual: row.phase,
        })?;
        Ok((row.vault, run))
    }

    async fn package_with(
        &self,
        p: &Principal,
        vault: VaultId,
        run: RunId,
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
            legacy_key: index.package_legacy_key(p)?,
            pending_grants: self.all_pending(p.id).await?,
            candidates,
        })
    }

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
            Lifecycle::UserPhase(u) => u.run,
            _ => {
                return Err(EngineError::WrongPhase {
                    expected: "the user phase (bundles are accepted only while users migrate)",
                    actual: row.phase,
                });
            }
        };
        self.apply_signed(submitter, signed, row.vault, run).await
    }

    /// Loads the server's view for a bundle.
    pub async fn check_context(
        &self,
        submitter: PrincipalId,
        signed: &SignedBundle,
        vault: VaultId,
        run: RunId,
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
                    legacy_public_key: LegacyRsaPublicKey::from_spki_der(&legacy.public_key)?,
                    pending_grants: pending,
                    holders: hs.iter().map(|h| h.id).collect(),
                    key_in_database: p.kind != PrincipalKind::Service,
                },
            );
        }
        Ok(CheckContext {
            vault,
            run,
            submitter,
            principals,
            holders,
        })
    }

    async fn apply_signed(
        &self,
        submitter: PrincipalId,
        signed: SignedBundle,
        vault: VaultId,
        run: RunId,
    ) -> Result<ApplyReport, EngineError> {
        let ctx = self.check_context(submitter, &signed, vault, run).await?;
        // The checked bundle takes the decoded copy and the write set its
        // envelopes: one copy of a large bundle in memory, not three.
        let checked = check_signed(signed, &ctx)?;
        let principals = checked.bundle().parts.iter().map(|p| p.principal).collect();
        let write = self.write_set(checked);
        let report = ApplyReport {
            principals,
            grants: write.grants.len() + write.membership_grants.len(),
            non_migratable: write.non_migratable.len(),
        };
        self.vault.apply(&write).await.map_err(|e| match e {
            rekey_storage::Error::Conflict { reason, .. } => EngineError::ApplyConflict(reason),
            other => EngineError::Storage(other),
        })?;
        Ok(report)
    }

    fn write_set(&self, checked: CheckedBundle) -> MigrationWrite {
        let (bundle, pre) = checked.into_parts();
        let now = Timestamp::now();
        let in_bundle: HashSet<PrincipalId> = bundle.parts.iter().map(|p| p.principal).collect();
        let mut write = MigrationWrite {
            principals: Vec::new(),
            key_pairs: Vec::new(),
            grants: Vec::new(),
            membership_grants: Vec::new(),
            non_migratable: Vec::new(),
            pending_holders: pre.pending.iter().copied().filter(|p| !in_bundle.contains(p)).collect(),
            current_keys: pre.current_keys,
            audit: self.audit(
                "bundle applied",
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
                scheme: hpke_export_scheme(part.new_key_pair.public_key.curve()),
                public_key: part.new_key_pair.public_key.to_sec1(),
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

    /// What finalize needs to know, from the vault.
    pub async fn finalize_facts(&self) -> Result<FinalizeFacts, EngineError> {
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
        Ok(FinalizeFacts {
            pending,
            first_pending,
            unresolved_non_migratable: unresolved.len() as u64,
            first_unresolved: unresolved
                .iter()
                .take(NAMES_SHOWN)
                .map(|n| n.grant)
                .collect(),
            servers_without_new_certificates,
        })
    }

    /// Finalizes: refuses while anything is pending, otherwise deletes the
    /// legacy material in batches (resumable: run again after a crash) and
    /// completes, lifting read-only mode. `progress(deleted_so_far)`.
    pub async fn finalize(&self, progress: &(dyn Fn(u64) + Sync)) -> Result<u64, EngineError> {
        let (state, row) = self.lifecycle().await?;
        let finalizing = match state {
            Lifecycle::UserPhase(u) => {
                let facts = self.finalize_facts().await?;
                let fin = u.finalize(&facts)?;
                let audit = self.audit("finalize", serde_json::json!({ "run": fin.run }));
                self.vault
                    .transition(Phase::UserPhase, row.version, Phase::Finalizing, &audit)
                    .await?;
                fin
            }
            Lifecycle::Finalizing(f) => f,
            _ => {
                return Err(EngineError::WrongPhase {
                    expected: "the user phase with nobody pending (or an interrupted finalize)",
                    actual: row.phase,
                });
            }
        };
        let mut deleted = 0u64;
        loop {
            let n = self.vault.delete_legacy_batch(FINALIZE_BATCH).await?;
            deleted += n;
            progress(deleted);
            if n == 0 {
                break;
            }
        }
        finalizing.complete(0)?;
        let row = self.vault.migration().await?;
        let audit = self.audit(
            "completed",
            serde_json::json!({ "deleted_legacy_rows": deleted }),
        );
        self.vault
            .transition(Phase::Finalizing, row.version, Phase::Completed, &audit)
            .await?;
        Ok(deleted)
    }

    /// Aborts: back to the exact legacy state (new key pairs and grants
    /// deleted; legacy rows were never touched).
    pub async fn abort(&self) -> Result<(), EngineError> {
        let (state, row) = self.lifecycle().await?;
        state.abort()?;
        let audit = self.audit("abort", serde_json::json!({ "from": row.phase }));
        self.vault.abort(row.version, &audit).await?;
        Ok(())
    }
}

/// What [`Engine::key_index`] loads: holders and key pairs by principal.
struct KeyIndex {
    holders: HashMap<PrincipalId, Vec<Principal>>,
    key_pairs: HashMap<PrincipalId, Vec<KeyPairRecord>>,
}

impl KeyIndex {
    /// Who holds `p`'s key (empty for e2ee users and server-held keys).
    fn holders(&self, p: PrincipalId) -> &[Principal] {
        self.holders.get(&p).map_or(&[], Vec::as_slice)
    }

    fn pairs(&self, p: PrincipalId) -> &[KeyPairRecord] {
        self.key_pairs.get(&p).map_or(&[], Vec::as_slice)
    }

    fn legacy(&self, p: &Principal) -> Result<&KeyPairRecord, EngineError> {
        self.pairs(p.id)
            .iter()
            .find(|k| k.state == KeyState::Legacy)
            .ok_or_else(|| EngineError::Inconsistent(format!("{} has no legacy key pair", p.name)))
    }

    fn current(&self, p: PrincipalId) -> Option<&KeyPairRecord> {
        self.pairs(p).iter().find(|k| k.state == KeyState::Current)
    }

    fn package_legacy_key(&self, p: &Principal) -> Result<PackageLegacyKey, EngineError> {
        let kp = self.legacy(p)?;
        Ok(PackageLegacyKey {
            id: kp.id,
            public_key: LegacyRsaPublicKey::from_spki_der(&kp.public_key)?,
            wrapped_private: kp.wrapped_private_key.clone(),
        })
    }

    /// A holder's key to wrap a KEK to: its new key once migrated, else
    /// its legacy key.
    fn holder_key(&self, h: &Principal) -> Result<HolderKey, EngineError> {
        if h.migration == MigrationState::Migrated {
            if let Some(kp) = self.current(h.id) {
                let curve = Curve::of_point(&kp.public_key);
                return Ok(HolderKey::Migrated {
                    principal: h.id,
                    key_pair: kp.id,
                    public_key: EcPublicKey::from_sec1(curve, &kp.public_key)?,
                });
            }
        }
        let kp = self.legacy(h)?;
        Ok(HolderKey::Pending {
            principal: h.id,
            key_pair: kp.id,
            public_key: LegacyRsaPublicKey::from_spki_der(&kp.public_key)?,
        })
    }
}
