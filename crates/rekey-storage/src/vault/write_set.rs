//! Applying one migration write set (a checked bundle, or the server's own
//! re-wrapping) in one transaction.

use super::Vault;
use super::convert::{audit_to, key_pair_to, non_migratable_to};
use super::sql::{insert_batched, insert_grants};
use crate::entity::{grant, principal};
use crate::error::{Error, Result, db};
use rekey_core::ids::{GrantId, KeyPairId, PrincipalId, RunId};
use rekey_core::model::{
    AuditEvent, GrantOrigin, GrantRecord, KeyPairRecord, KeyState, MigrationState, NonMigratable,
    Phase,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};
use std::collections::{BTreeSet, HashMap, HashSet};

/// One principal a write set migrates, with the exact legacy grants it
/// covers (re-wrapped or listed as non-migratable).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PrincipalMigration {
    /// The principal (user, role or service) that becomes `migrated`.
    pub principal: PrincipalId,
    /// Every pending grant of the principal the write set accounts for.
    /// Storage re-checks, inside the transaction, that this is exactly the
    /// set still pending; otherwise the write set is a conflict.
    pub covered_grants: Vec<GrantId>,
}

/// Everything one migration step writes, in domain words. Applied by
/// [`Vault::apply`] in one transaction or not at all.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MigrationWrite {
    /// The run the write set was checked for. It applies only while that
    /// run is the vault's: one checked before an abort and a new start
    /// (possibly to another target) is a conflict, never written into the
    /// new run.
    pub run: RunId,
    /// Principals migrated by this write set.
    pub principals: Vec<PrincipalMigration>,
    /// Their new key pairs (state `current`).
    pub key_pairs: Vec<KeyPairRecord>,
    /// New grants re-wrapped to the new keys.
    pub grants: Vec<GrantRecord>,
    /// Grants of a role's new private key to its members (HPKE to migrated
    /// members; to members still pending, under their legacy key and
    /// flagged legacy).
    pub membership_grants: Vec<GrantRecord>,
    /// Grants that could not be decrypted.
    pub non_migratable: Vec<NonMigratable>,
    /// Holders given a grant of a new key under their legacy key: they must
    /// still not have migrated, or that grant would never be re-wrapped.
    /// Their grants are stored flagged legacy.
    pub pending_holders: Vec<PrincipalId>,
    /// Holders given an HPKE grant: they must still have this current key.
    pub current_keys: Vec<(PrincipalId, KeyPairId)>,
    /// The audit event recording the step.
    pub audit: AuditEvent,
}

impl MigrationWrite {
    /// Number of rows the write set inserts.
    #[must_use]
    pub fn row_count(&self) -> usize {
        self.key_pairs.len()
            + self.grants.len()
            + self.membership_grants.len()
            + self.non_migratable.len()
            + 1
    }
}

/// What became of one write set of a group applied by
/// [`Vault::apply_group`].
#[derive(Debug)]
pub enum GroupOutcome {
    /// Its checks passed and its rows were committed with the group.
    Applied,
    /// Its checks refused it; nothing of it was written. The error is the
    /// one [`Vault::apply`] answers for it alone.
    Refused(Error),
    /// It names a principal (migrated, holder or recipient) that an
    /// earlier write set of the group changes: it was neither checked nor
    /// written, and must be applied after the group has committed, so that
    /// its checks see that write set's rows.
    Deferred,
}

impl Vault {
    /// Applies a migration write set atomically: checks that the phase
    /// allows it and that every principal is still pending with exactly
    /// the covered grants pending, then inserts everything in batched
    /// multi-row statements and marks the principals migrated.
    pub async fn apply(&self, write: &MigrationWrite) -> Result<()> {
        match self.apply_group(&[write]).await?.pop() {
            Some(GroupOutcome::Refused(e)) => Err(e),
            Some(GroupOutcome::Applied) => Ok(()),
            // One write set has no earlier one to wait for.
            Some(GroupOutcome::Deferred) | None => Err(Error::corrupt(
                "migration write",
                "a lone write set was deferred",
            )),
        }
    }

    /// Applies several write sets in one transaction (group commit): the
    /// phase is checked and every principal locked once, each write set is
    /// checked as [`Vault::apply`] checks it, and the rows of those that
    /// pass are written together in batched statements and committed
    /// once. Answers one outcome per write set, in order.
    ///
    /// A write set that names a principal an earlier one of the group
    /// changes is [`GroupOutcome::Deferred`]; with that rule, the rows of
    /// the accepted write sets never meet, and the group commits what
    /// applying them one after the other would. A database error fails the
    /// whole group (nothing committed); the caller may then apply each
    /// write set alone to learn its own answer.
    pub async fn apply_group(&self, writes: &[&MigrationWrite]) -> Result<Vec<GroupOutcome>> {
        let (txn, _turn) = self.begin_migration_txn().await?;
        let run = self.check_apply_phase(&txn).await?;
        let touched: Vec<HashSet<PrincipalId>> = writes.iter().map(|w| touched_by(w)).collect();
        let mut lock_ids: Vec<String> = touched.iter().flatten().map(ToString::to_string).collect();
        lock_ids.sort();
        lock_ids.dedup();
        let found = self.lock_principals(&txn, &lock_ids).await?;
        let migrating: Vec<String> = writes
            .iter()
            .flat_map(|w| w.principals.iter().map(|p| p.principal.to_string()))
            .collect();
        let pending = pending_ids(&txn, &migrating).await?;
        let mut changed: HashSet<PrincipalId> = HashSet::new();
        let mut accepted: Vec<(&MigrationWrite, Vec<String>)> = Vec::new();
        let mut outcomes = Vec::with_capacity(writes.len());
        for (&write, touched) in writes.iter().zip(touched) {
            if touched.iter().any(|p| changed.contains(p)) {
                outcomes.push(GroupOutcome::Deferred);
                continue;
            }
            match self.check_write(&txn, write, run, &found, &pending).await {
                Ok(ids) => {
                    changed.extend(touched);
                    accepted.push((write, ids));
                    outcomes.push(GroupOutcome::Applied);
                }
                Err(
                    e @ (Error::Conflict { .. } | Error::NotFound { .. } | Error::Corrupt { .. }),
                ) => {
                    outcomes.push(GroupOutcome::Refused(e));
                }
                Err(other) => return Err(other),
            }
        }
        if accepted.is_empty() {
            // Nothing to write: the transaction rolls back when dropped.
            return Ok(outcomes);
        }
        write_rows(&txn, &accepted).await?;
        self.commit_migration_txn(txn).await?;
        Ok(outcomes)
    }

    /// The checks of one write set against the locked rows; answers its
    /// principals' ids, sorted.
    async fn check_write(
        &self,
        txn: &DatabaseTransaction,
        write: &MigrationWrite,
        run: Option<RunId>,
        found: &HashMap<String, principal::Model>,
        pending: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<String>> {
        let ids = principal_ids(write)?;
        if run != Some(write.run) {
            return Err(Error::Conflict {
                principal: first_principal(write),
                reason: format!(
                    "the migration was aborted and started again (run {}); this write set \
                     was checked for run {}",
                    run.map_or_else(|| "none".to_owned(), |r| r.to_string()),
                    write.run
                ),
            });
        }
        for pm in &write.principals {
            let state = state_of(found, pm.principal)?.ok_or_else(|| Error::NotFound {
                what: "principal",
                id: pm.principal.to_string(),
            })?;
            if state != MigrationState::Pending {
                return Err(Error::Conflict {
                    principal: pm.principal,
                    reason: format!("the principal is already {state}"),
                });
            }
            let ids = pending.get(&pm.principal.to_string());
            check_covered(pm, ids.map_or(&[][..], Vec::as_slice))?;
        }
        for holder in &write.pending_holders {
            let state = state_of(found, *holder)?.unwrap_or(MigrationState::Exempt);
            if matches!(state, MigrationState::Migrated | MigrationState::Exempt) {
                return Err(Error::Conflict {
                    principal: *holder,
                    reason: format!("a holder of a migrating key is now {state}"),
                });
            }
        }
        check_current_keys(txn, write).await?;
        for k in &write.key_pairs {
            if k.state == KeyState::Legacy {
                return Err(Error::Conflict {
                    principal: k.principal,
                    reason: "a migration cannot write a legacy key pair".to_owned(),
                });
            }
        }
        Ok(ids)
    }

    /// The phase row, share-locked so an abort cannot interleave: a write
    /// set applies only in the server or the user phase. Answers the
    /// current run.
    async fn check_apply_phase(&self, txn: &DatabaseTransaction) -> Result<Option<RunId>> {
        let row = txn
            .query_one_raw(Statement::from_string(
                self.db_backend(),
                format!(
                    "SELECT phase, run_id FROM migration WHERE id = 1{}",
                    self.lock_suffix(true)
                ),
            ))
            .await
            .map_err(db("read the migration phase"))?
            .ok_or_else(|| Error::corrupt("migration row", "missing"))?;
        let phase: String = row
            .try_get_by_index(0)
            .map_err(db("read the migration phase"))?;
        let phase: Phase = super::convert::parse("phase", &phase)?;
        if !matches!(phase, Phase::ServerPhase | Phase::UserPhase) {
            return Err(Error::WrongPhase {
                phase,
                operation: "apply a migration write set",
            });
        }
        let run: Option<String> = row
            .try_get_by_index(1)
            .map_err(db("read the migration run"))?;
        run.map(|r| super::convert::parse("run id", &r)).transpose()
    }

    /// Locks the principals `ids` (sorted) in id order, so two
    /// transactions that share a role cannot deadlock; answers the locked
    /// rows by id.
    async fn lock_principals(
        &self,
        txn: &DatabaseTransaction,
        ids: &[String],
    ) -> Result<HashMap<String, principal::Model>> {
        // In chunks (a bind-parameter limit), each in id order, so the
        // locks are still taken in one global order.
        let mut found: HashMap<String, principal::Model> = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(super::BATCH_ROWS) {
            let mut q = principal::Entity::find()
                .filter(principal::Column::Id.is_in(chunk.to_vec()))
                .order_by_asc(principal::Column::Id);
            if self.lock_suffix(false).is_empty() {
                // SQLite: the transaction already holds the write lock.
            } else {
                q = q.lock_exclusive();
            }
            for row in q.all(txn).await.map_err(db("lock the principals"))? {
                found.insert(row.id.clone(), row);
            }
        }
        Ok(found)
    }
}

/// Checks that the covered grants are exactly the principal's pending
/// grants (`pending`, read in this transaction).
fn check_covered(pm: &PrincipalMigration, pending: &[String]) -> Result<()> {
    let covered: BTreeSet<String> = pm.covered_grants.iter().map(|g| g.to_string()).collect();
    if covered.len() != pm.covered_grants.len() {
        return Err(Error::Conflict {
            principal: pm.principal,
            reason: "the write set covers a grant twice".to_owned(),
        });
    }
    if let Some(id) = pending.iter().find(|id| !covered.contains(*id)) {
        return Err(Error::Conflict {
            principal: pm.principal,
            reason: format!("pending grant {id} is not covered by the write set"),
        });
    }
    let seen = pending.len();
    if seen != covered.len() {
        return Err(Error::Conflict {
            principal: pm.principal,
            reason: format!(
                "the write set covers {} grants but {seen} are pending",
                covered.len()
            ),
        });
    }
    Ok(())
}

/// The pending (legacy) grant ids of `principals` by principal, read in
/// this transaction after their rows were locked: one statement per
/// [`BATCH_ROWS`](super::BATCH_ROWS) principals, not one per write set.
async fn pending_ids(
    txn: &DatabaseTransaction,
    principals: &[String],
) -> Result<HashMap<String, Vec<String>>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for chunk in principals.chunks(super::BATCH_ROWS) {
        let rows: Vec<(String, String)> = grant::Entity::find()
            .select_only()
            .columns([grant::Column::RecipientId, grant::Column::Id])
            .filter(grant::Column::RecipientId.is_in(chunk.to_vec()))
            .filter(grant::Column::Legacy.eq(true))
            .into_tuple()
            .all(txn)
            .await
            .map_err(db("read the pending grants"))?;
        for (recipient, id) in rows {
            out.entry(recipient).or_default().push(id);
        }
    }
    Ok(out)
}

/// The migration state of `id` among the locked rows, if it is there.
fn state_of(
    found: &HashMap<String, principal::Model>,
    id: PrincipalId,
) -> Result<Option<MigrationState>> {
    found
        .get(&id.to_string())
        .map(|row| super::convert::parse("migration state", &row.migration_state))
        .transpose()
}

/// Every holder the write set wraps to its current key still has that key.
async fn check_current_keys(txn: &DatabaseTransaction, write: &MigrationWrite) -> Result<()> {
    let key_ids: Vec<String> = write
        .current_keys
        .iter()
        .map(|(_, k)| k.to_string())
        .collect();
    let mut current: HashMap<String, crate::entity::key_pair::Model> = HashMap::new();
    for chunk in key_ids.chunks(super::BATCH_ROWS) {
        let rows = crate::entity::key_pair::Entity::find()
            .filter(crate::entity::key_pair::Column::Id.is_in(chunk.to_vec()))
            .all(txn)
            .await
            .map_err(db("load the holders' key pairs"))?;
        current.extend(rows.into_iter().map(|k| (k.id.clone(), k)));
    }
    for (holder, key_pair_id) in &write.current_keys {
        let ok = current.get(&key_pair_id.to_string()).is_some_and(|k| {
            k.principal_id == holder.to_string() && k.state == KeyState::Current.as_str()
        });
        if !ok {
            return Err(Error::Conflict {
                principal: *holder,
                reason: "a holder's current key changed".to_owned(),
            });
        }
    }
    Ok(())
}

/// The principals' ids of a write set, sorted; refused if it names one
/// twice.
fn principal_ids(write: &MigrationWrite) -> Result<Vec<String>> {
    let mut ids: Vec<String> = write
        .principals
        .iter()
        .map(|p| p.principal.to_string())
        .collect();
    ids.sort();
    ids.dedup();
    if ids.len() != write.principals.len() {
        return Err(Error::Conflict {
            principal: first_principal(write),
            reason: "the write set names a principal twice".to_owned(),
        });
    }
    Ok(ids)
}

/// The principal a write set's conflict names: its first (nil for none).
fn first_principal(write: &MigrationWrite) -> PrincipalId {
    write
        .principals
        .first()
        .map_or(PrincipalId(uuid::Uuid::nil()), |p| p.principal)
}

/// Every principal a write set checks or changes: those it migrates, the
/// holders it wraps a new key to, and every recipient of a grant it
/// writes. The rows are locked; two write sets of one group that share
/// none of these cannot see each other's rows.
fn touched_by(write: &MigrationWrite) -> HashSet<PrincipalId> {
    write
        .principals
        .iter()
        .map(|p| p.principal)
        .chain(write.pending_holders.iter().copied())
        .chain(write.current_keys.iter().map(|(p, _)| *p))
        .chain(write.grants.iter().map(|g| g.recipient))
        .chain(write.membership_grants.iter().map(|g| g.recipient))
        .chain(write.key_pairs.iter().map(|k| k.principal))
        .chain(write.non_migratable.iter().map(|n| n.recipient))
        .collect()
}

/// The rows of the accepted write sets (each with its principals' ids):
/// new key pairs, grants and non-migratable entries, the principals marked
/// migrated, one audit event per write set.
async fn write_rows(
    txn: &DatabaseTransaction,
    accepted: &[(&MigrationWrite, Vec<String>)],
) -> Result<()> {
    let writes = || accepted.iter().map(|(w, _)| *w);
    insert_batched(
        txn,
        writes()
            .flat_map(|w| w.key_pairs.iter().map(key_pair_to))
            .collect(),
        "insert the new key pairs",
    )
    .await?;
    // Bound values a chunk at a time: a 40,000-grant write set never
    // has them all in memory at once.
    let grants: Vec<&GrantRecord> = writes()
        .flat_map(|w| w.grants.iter().chain(&w.membership_grants))
        .collect();
    // The write sets touch disjoint principals, so a recipient one of them
    // wraps to under its legacy key is no other's recipient.
    let legacy_to: HashSet<PrincipalId> = writes()
        .flat_map(|w| w.pending_holders.iter().copied())
        .collect();
    insert_grants(
        txn,
        &grants,
        &legacy_to,
        GrantOrigin::Migration,
        "insert the new grants",
    )
    .await?;
    insert_batched(
        txn,
        writes()
            .flat_map(|w| w.non_migratable.iter().map(non_migratable_to))
            .collect(),
        "record the non-migratable grants",
    )
    .await?;
    let ids: Vec<String> = accepted.iter().flat_map(|(_, ids)| ids.clone()).collect();
    for chunk in ids.chunks(super::BATCH_ROWS) {
        principal::Entity::update_many()
            .col_expr(
                principal::Column::MigrationState,
                Expr::value(MigrationState::Migrated.as_str()),
            )
            .filter(principal::Column::Id.is_in(chunk.to_vec()))
            .exec(txn)
            .await
            .map_err(db("mark the principals migrated"))?;
    }
    insert_batched(
        txn,
        writes().map(|w| audit_to(&w.audit)).collect(),
        "append the audit event",
    )
    .await
}
