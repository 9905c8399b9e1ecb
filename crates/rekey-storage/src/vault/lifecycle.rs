//! Moving the phase (compare-and-swap), starting, aborting, finalizing.

use super::convert::{audit_to, migration_from, non_migratable_to};
use super::{BATCH_ROWS, Vault};
use crate::entity::{
    audit, certificate, grant, key_pair, migration, non_migratable, principal, record,
    role_confirmation,
};
use crate::error::{Error, Result, db};
use rekey_core::Target;
use rekey_core::ids::{GrantId, PrincipalId, RecordId, RunId};
use rekey_core::lifecycle::Transition;
use rekey_core::model::{
    AuditEvent, GrantOrigin, KeyState, MigrationRow, MigrationState, NonMigratable, Phase,
    PreviousRun, PrincipalKind, RecordRow, Resolution,
};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};

impl Vault {
    /// Persists `step`, a move the core lifecycle allowed, if the migration
    /// row is still in its `from` phase at `expected_version`
    /// (compare-and-swap: of two concurrent callers from the same version
    /// exactly one wins, the other gets [`Error::PhaseConflict`]). Appends
    /// `audit` in the same transaction.
    pub async fn transition(
        &self,
        step: Transition,
        expected_version: i64,
        audit: &AuditEvent,
    ) -> Result<MigrationRow> {
        let (txn, _turn) = self.begin_migration_txn().await?;
        self.cas(&txn, step.from(), expected_version, step.to())
            .await?;
        append(&txn, audit).await?;
        let row = read_migration(&txn).await?;
        self.commit_migration_txn(txn).await?;
        Ok(row)
    }

    async fn cas(
        &self,
        txn: &DatabaseTransaction,
        from: Phase,
        expected_version: i64,
        to: Phase,
    ) -> Result<()> {
        let res = migration::Entity::update_many()
            .col_expr(migration::Column::Phase, Expr::value(to.as_str()))
            .col_expr(
                migration::Column::Version,
                Expr::col(migration::Column::Version).add(1),
            )
            .filter(migration::Column::Id.eq(1))
            .filter(migration::Column::Phase.eq(from.as_str()))
            .filter(migration::Column::Version.eq(expected_version))
            .exec(txn)
            .await
            .map_err(db("move the migration phase"))?;
        if res.rows_affected == 1 {
            return Ok(());
        }
        let found = read_migration(txn).await?;
        Err(Error::PhaseConflict {
            expected: from,
            expected_version,
            found: found.phase,
            found_version: found.version,
        })
    }

    /// Starts the migration: persists `step` (`legacy` → `server_phase`,
    /// or `completed` → `server_phase` for a migrated vault migrating
    /// again, as the core lifecycle allowed it) with compare-and-swap, sets
    /// every principal pending except the given blocked and exempt ones,
    /// and records who started it, when, the run and its target, and the
    /// snapshot of what must be migrated. One transaction.
    ///
    /// From `completed`, the previous migration's material becomes this
    /// run's legacy material, in the same transaction: its key pairs
    /// `current` → `legacy`, every grant flagged legacy (those it wrote
    /// `migration` → `earlier`), each principal's state kept in
    /// `previous_migration_state` and the completed run kept on the
    /// migration row, so that [`Vault::abort`] can put back exactly the
    /// completed vault. Refused if the completed vault still holds legacy
    /// material (it cannot, unless written around the guard).
    #[allow(
        clippy::too_many_arguments,
        reason = "each is one fact the start transaction records; a struct would only rename them"
    )]
    pub async fn start(
        &self,
        step: Transition,
        expected_version: i64,
        run: RunId,
        target: Target,
        blocked: &[PrincipalId],
        exempt: &[PrincipalId],
        audit: &AuditEvent,
    ) -> Result<MigrationRow> {
        let again = match (step.from(), step.to()) {
            (Phase::Legacy, Phase::ServerPhase) => false,
            (Phase::Completed, Phase::ServerPhase) => true,
            (from, _) => {
                return Err(Error::WrongPhase {
                    phase: from,
                    operation: "start the migration",
                });
            }
        };
        let (txn, _turn) = self.begin_migration_txn().await?;
        let before = read_migration(&txn).await?;
        self.cas(&txn, step.from(), expected_version, step.to())
            .await?;
        if again {
            rebase_on_completed(&txn, before).await?;
        }
        set_migration_states(&txn, blocked, exempt).await?;
        if again {
            // Exempt in the completed vault (purged, or written off): it
            // holds no key pair, so it has nothing to migrate this time
            // either, whatever its account status says.
            principal::Entity::update_many()
                .col_expr(
                    principal::Column::MigrationState,
                    Expr::value(MigrationState::Exempt.as_str()),
                )
                .filter(
                    principal::Column::PreviousMigrationState.eq(MigrationState::Exempt.as_str()),
                )
                .exec(&txn)
                .await
                .map_err(db("keep the exempt principals exempt"))?;
        }
        record_start(&txn, run, target, audit).await?;
        append(&txn, audit).await?;
        let row = read_migration(&txn).await?;
        self.commit_migration_txn(txn).await?;
        Ok(row)
    }

    /// Sets principals' migration states (e.g. a blocked user written off
    /// as exempt), in batches, in one transaction with its audit event.
    pub async fn set_migration_state(
        &self,
        principals: &[PrincipalId],
        state: MigrationState,
        audit: &AuditEvent,
    ) -> Result<()> {
        let (txn, _turn) = self.begin_migration_txn().await?;
        for chunk in principals.chunks(BATCH_ROWS) {
            principal::Entity::update_many()
                .col_expr(
                    principal::Column::MigrationState,
                    Expr::value(state.as_str()),
                )
                .filter(principal::Column::Id.is_in(chunk.iter().map(ToString::to_string)))
                .exec(&txn)
                .await
                .map_err(db("set the principals' migration state"))?;
        }
        append(&txn, audit).await?;
        self.commit_migration_txn(txn).await
    }

    /// Aborts the migration: in one migration transaction, deletes every
    /// key pair, grant and certificate the migration wrote, its
    /// non-migratable entries and its role confirmations, sets all
    /// principals pending again and the phase back to `legacy`
    /// (compare-and-swap on `expected_version`). Legacy rows were never
    /// modified, so the vault is exactly as before the start.
    ///
    /// A run that started from a completed vault goes back to that vault
    /// instead: the legacy flags, `earlier` origins, key states, principal
    /// states and the completed run's row are put back as they were, and
    /// the phase is `completed` again. Refused once finalizing has begun.
    pub async fn abort(&self, expected_version: i64, audit: &AuditEvent) -> Result<MigrationRow> {
        let (txn, _turn) = self.begin_migration_txn().await?;
        let current = read_migration(&txn).await?;
        if !matches!(
            current.phase,
            Phase::ServerPhase | Phase::AwaitingCertificates | Phase::UserPhase
        ) {
            return Err(Error::WrongPhase {
                phase: current.phase,
                operation: "abort the migration",
            });
        }
        let back_to = if current.previous.is_some() {
            Phase::Completed
        } else {
            Phase::Legacy
        };
        self.cas(&txn, current.phase, expected_version, back_to)
            .await?;
        delete_run_rows(&txn, current.run).await?;
        if let Some(previous) = current.previous.clone() {
            restore_completed(&txn, previous).await?;
            append(&txn, audit).await?;
            let row = read_migration(&txn).await?;
            self.commit_migration_txn(txn).await?;
            return Ok(row);
        }
        principal::Entity::update_many()
            .col_expr(
                principal::Column::MigrationState,
                Expr::value(MigrationState::Pending.as_str()),
            )
            .exec(&txn)
            .await
            .map_err(db("reset the principals"))?;
        migration::Entity::update_many()
            .col_expr(
                migration::Column::StartedAt,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(
                migration::Column::StartedBy,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                migration::Column::SnapshotUsers,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(
                migration::Column::SnapshotRoles,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(
                migration::Column::SnapshotServices,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(
                migration::Column::SnapshotGrants,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(
                migration::Column::RunId,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                migration::Column::Target,
                Expr::value(Option::<String>::None),
            )
            .filter(migration::Column::Id.eq(1))
            .exec(&txn)
            .await
            .map_err(db("reset the migration row"))?;
        append(&txn, audit).await?;
        let row = read_migration(&txn).await?;
        self.commit_migration_txn(txn).await?;
        Ok(row)
    }

    /// Deletes up to `limit` rows of legacy material in one migration
    /// transaction: first certificates of legacy key pairs, then
    /// legacy-scheme grants, then legacy key pairs. Returns how many rows
    /// went; `0` means nothing legacy is left. Resumable: call until `0`,
    /// from any server, after any interruption. Only while finalizing.
    pub async fn delete_legacy_batch(&self, limit: u64) -> Result<u64> {
        let limit = std::cmp::max(limit, 1);
        let (txn, _turn) = self.begin_migration_txn().await?;
        let current = read_migration(&txn).await?;
        if current.phase != Phase::Finalizing {
            return Err(Error::WrongPhase {
                phase: current.phase,
                operation: "delete legacy material",
            });
        }
        let mut deleted = 0u64;

        let legacy_pairs: Vec<String> = key_pair::Entity::find()
            .select_only()
            .column(key_pair::Column::Id)
            .filter(key_pair::Column::State.eq(KeyState::Legacy.as_str()))
            .order_by_asc(key_pair::Column::Id)
            .limit(limit)
            .into_tuple()
            .all(&txn)
            .await
            .map_err(db("list legacy key pairs"))?;
        if !legacy_pairs.is_empty() {
            deleted += certificate::Entity::delete_many()
                .filter(certificate::Column::KeyPairId.is_in(legacy_pairs.clone()))
                .exec(&txn)
                .await
                .map_err(db("delete legacy certificates"))?
                .rows_affected;
        }

        if deleted < limit {
            deleted += delete_legacy_grants(&txn, limit - deleted).await?;
        }
        if deleted < limit {
            let remaining_grants = grant::Entity::find()
                .select_only()
                .column(grant::Column::Id)
                .filter(grant::Column::Legacy.eq(true))
                .limit(1)
                .into_tuple::<String>()
                .one(&txn)
                .await
                .map_err(db("look for legacy grants"))?;
            if remaining_grants.is_none() {
                let take = usize::try_from(limit - deleted).unwrap_or(usize::MAX);
                let ids: Vec<String> = legacy_pairs.into_iter().take(take).collect();
                for chunk in ids.chunks(BATCH_ROWS) {
                    deleted += key_pair::Entity::delete_many()
                        .filter(key_pair::Column::Id.is_in(chunk.to_vec()))
                        .exec(&txn)
                        .await
                        .map_err(db("delete legacy key pairs"))?
                        .rows_affected;
                }
            }
        }
        self.commit_migration_txn(txn).await?;
        Ok(deleted)
    }

    /// Deletes all the legacy material, `batch` rows at a time, calling
    /// `progress(deleted_so_far)` after each batch; answers how many rows
    /// went. Only while finalizing; resumable (call again after any
    /// interruption).
    ///
    /// PostgreSQL and MySQL: one transaction per batch
    /// ([`Vault::delete_legacy_batch`]). SQLite: one transaction for all
    /// of it, in which the `grant` table's secondary indexes are dropped
    /// before the deletes and created again from their own stored
    /// definitions after them, so other connections never see the table
    /// without them. Deleting half of a large table row by row updates
    /// five B-trees at random places; building four of them once is
    /// several times faster (2.4 million grants, 1.2 million deleted:
    /// 25 s instead of 92 s on a 2-core EPYC, measured with the `sqlite3`
    /// shell). The transaction's temporary files (statement journals,
    /// index sorts) go to disk, not memory: with the connection's
    /// `temp_store = memory` the same run peaked at 242 MB to 726 MB
    /// instead of 16 MB. Other writers wait for the whole transaction, up
    /// to the busy timeout.
    pub async fn delete_legacy(&self, batch: u64, progress: &(dyn Fn(u64) + Sync)) -> Result<u64> {
        if self.backend != super::Backend::Sqlite {
            let mut deleted = 0u64;
            loop {
                let n = self.delete_legacy_batch(batch).await?;
                deleted += n;
                progress(deleted);
                if n == 0 {
                    return Ok(deleted);
                }
            }
        }
        // Set before the first write, or the transaction's statement
        // journals stay in memory (242 MB instead of 16 MB at the size
        // above).
        let (txn, _turn) = self
            .begin_migration_txn_after(Some("PRAGMA temp_store = FILE"))
            .await?;
        let current = read_migration(&txn).await?;
        if current.phase != Phase::Finalizing {
            // The connection goes back to the pool as it came.
            txn.execute_unprepared(RESTORE_TEMP_STORE)
                .await
                .map_err(db("restore the temporary store"))?;
            return Err(Error::WrongPhase {
                phase: current.phase,
                operation: "delete legacy material",
            });
        }
        let indexes = sqlite_grant_indexes(&txn).await?;
        for (name, _) in &indexes {
            txn.execute_unprepared(&format!("DROP INDEX \"{}\"", name.replace('"', "\"\"")))
                .await
                .map_err(db("drop a grant index for the deletes"))?;
        }
        let mut deleted = delete_legacy_certificates(&txn).await?;
        // Legacy grants in rowid ranges: each range is one sequential pass
        // over the table's pages, and the count moves the progress bar.
        let mut after = 0i64;
        loop {
            let row = txn
                .query_one_raw(Statement::from_sql_and_values(
                    sea_orm::DbBackend::Sqlite,
                    "SELECT MAX(rowid) FROM (SELECT rowid FROM \"grant\" \
                     WHERE rowid > ?1 AND legacy = 1 ORDER BY rowid LIMIT ?2)",
                    [
                        after.into(),
                        i64::try_from(std::cmp::max(batch, 1))
                            .unwrap_or(i64::MAX)
                            .into(),
                    ],
                ))
                .await
                .map_err(db("list legacy grants"))?;
            let last: Option<i64> = match row {
                Some(r) => r.try_get_by_index(0).map_err(db("list legacy grants"))?,
                None => None,
            };
            let Some(last) = last else { break };
            deleted += txn
                .execute_raw(Statement::from_sql_and_values(
                    sea_orm::DbBackend::Sqlite,
                    "DELETE FROM \"grant\" WHERE rowid > ?1 AND rowid <= ?2 AND legacy = 1",
                    [after.into(), last.into()],
                ))
                .await
                .map_err(db("delete legacy grants"))?
                .rows_affected();
            after = last;
            progress(deleted);
        }
        // Grants of a legacy key pair's private key die with the key pair.
        deleted += txn
            .execute_unprepared(
                "DELETE FROM \"grant\" WHERE subject_kind = 'private_key' \
                 AND subject_id IN (SELECT id FROM key_pair WHERE state = 'legacy')",
            )
            .await
            .map_err(db("delete grants of legacy keys"))?
            .rows_affected();
        deleted += key_pair::Entity::delete_many()
            .filter(key_pair::Column::State.eq(KeyState::Legacy.as_str()))
            .exec(&txn)
            .await
            .map_err(db("delete legacy key pairs"))?
            .rows_affected;
        progress(deleted);
        for (_, sql) in &indexes {
            txn.execute_unprepared(sql)
                .await
                .map_err(db("rebuild a grant index"))?;
        }
        // A database error before this line leaves this one pooled
        // connection on FILE: its statement journals then go to a
        // temporary file, nothing more.
        txn.execute_unprepared(RESTORE_TEMP_STORE)
            .await
            .map_err(db("restore the temporary store"))?;
        self.commit_migration_txn(txn).await?;
        // Every deleted page went through the write-ahead log, which keeps
        // its largest size until something truncates it: 1.25 GB beside a
        // 2.57 GB vault after 10,000 users. Copy it into the file and cut
        // it back to nothing now. A reader still holding an older snapshot
        // makes SQLite stop short (the log then stays until a later
        // checkpoint); that loses nothing, so it is not an error.
        self.db
            .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
            .await
            .map_err(db("truncate the write-ahead log"))?;
        Ok(deleted)
    }

    /// Appends one audit event.
    pub async fn append_audit(&self, event: &AuditEvent) -> Result<()> {
        append(&self.db, event).await
    }

    /// Records the administrator's decision about a non-migratable grant.
    pub async fn resolve_non_migratable(
        &self,
        grant: GrantId,
        resolution: Resolution,
        audit: &AuditEvent,
    ) -> Result<()> {
        let (txn, _turn) = self.begin_migration_txn().await?;
        let res = non_migratable::Entity::update_many()
            .col_expr(
                non_migratable::Column::Resolution,
                Expr::value(resolution.as_str()),
            )
            .col_expr(
                non_migratable::Column::ResolvedBy,
                Expr::value(audit.actor.clone()),
            )
            .filter(non_migratable::Column::GrantId.eq(grant.to_string()))
            .exec(&txn)
            .await
            .map_err(db("resolve a non-migratable grant"))?;
        if res.rows_affected == 0 {
            return Err(Error::NotFound {
                what: "non-migratable grant",
                id: grant.to_string(),
            });
        }
        append(&txn, audit).await?;
        self.commit_migration_txn(txn).await
    }

    /// Adds non-migratable entries outside a write set (e.g. the server
    /// phase finding a grant addressed to a service that does not open).
    pub async fn add_non_migratable(&self, entries: &[NonMigratable]) -> Result<()> {
        let (txn, _turn) = self.begin_migration_txn().await?;
        super::sql::insert_batched(
            &txn,
            entries.iter().map(non_migratable_to).collect(),
            "record the non-migratable grants",
        )
        .await?;
        self.commit_migration_txn(txn).await
    }

    /// Writes a record (insert or replace). During migration the database
    /// refuses it: [`Error::ReadOnly`].
    pub async fn put_record(&self, row: &RecordRow) -> Result<()> {
        record::Entity::insert(record::ActiveModel {
            id: Set(row.id.to_string()),
            ciphertext: Set(row.ciphertext.clone()),
        })
        .on_conflict(
            OnConflict::column(record::Column::Id)
                .update_column(record::Column::Ciphertext)
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await
        .map_err(db("write a record"))?;
        Ok(())
    }

    /// Deletes a record. During migration: [`Error::ReadOnly`].
    pub async fn delete_record(&self, id: RecordId) -> Result<()> {
        record::Entity::delete_by_id(id.to_string())
            .exec(&self.db)
            .await
            .map_err(db("delete a record"))?;
        Ok(())
    }
}

pub(super) async fn append<C: ConnectionTrait>(conn: &C, event: &AuditEvent) -> Result<()> {
    audit::Entity::insert(audit_to(event))
        .exec_without_returning(conn)
        .await
        .map_err(db("append an audit event"))?;
    Ok(())
}

async fn read_migration<C: ConnectionTrait>(conn: &C) -> Result<MigrationRow> {
    let row = super::sql::unique(conn, migration::Entity::find_by_id(1))
        .await
        .map_err(db("read the migration phase"))?
        .ok_or_else(|| Error::corrupt("migration row", "missing"))?;
    migration_from(row)
}

/// Every row a run wrote: its role confirmations, the certificates of its
/// key pairs, its grants, its key pairs, and its non-migratable entries
/// (those naming a grant still in the vault: a completed run's entries
/// name grants its finalize deleted, and stay).
async fn delete_run_rows(txn: &DatabaseTransaction, run: Option<RunId>) -> Result<()> {
    if let Some(run) = run {
        role_confirmation::Entity::delete_many()
            .filter(role_confirmation::Column::RunId.eq(run.to_string()))
            .exec(txn)
            .await
            .map_err(db("delete the run's role confirmations"))?;
    }
    let new_pairs = key_pair::Entity::find()
        .select_only()
        .column(key_pair::Column::Id)
        .filter(key_pair::Column::State.ne(KeyState::Legacy.as_str()));
    certificate::Entity::delete_many()
        .filter(
            certificate::Column::KeyPairId.in_subquery(sea_orm::QueryTrait::into_query(new_pairs)),
        )
        .exec(txn)
        .await
        .map_err(db("delete the new certificates"))?;
    grant::Entity::delete_many()
        .filter(grant::Column::Origin.eq(GrantOrigin::Migration.as_str()))
        .exec(txn)
        .await
        .map_err(db("delete the new grants"))?;
    key_pair::Entity::delete_many()
        .filter(key_pair::Column::State.ne(KeyState::Legacy.as_str()))
        .exec(txn)
        .await
        .map_err(db("delete the new key pairs"))?;
    non_migratable::Entity::delete_many()
        .filter(
            non_migratable::Column::GrantId.in_subquery(sea_orm::QueryTrait::into_query(
                grant::Entity::find()
                    .select_only()
                    .column(grant::Column::Id),
            )),
        )
        .exec(txn)
        .await
        .map_err(db("delete the non-migratable list"))?;
    Ok(())
}

/// A start from `completed`: the completed migration's material becomes
/// the new run's legacy material (see [`Vault::start`]).
async fn rebase_on_completed(txn: &DatabaseTransaction, completed: MigrationRow) -> Result<()> {
    let leftover = grant::Entity::find()
        .select_only()
        .column(grant::Column::Id)
        .filter(grant::Column::Legacy.eq(true))
        .limit(1)
        .into_tuple::<String>()
        .one(txn)
        .await
        .map_err(db("look for legacy grants"))?;
    let leftover_keys = key_pair::Entity::find()
        .select_only()
        .column(key_pair::Column::Id)
        .filter(key_pair::Column::State.ne(KeyState::Current.as_str()))
        .limit(1)
        .into_tuple::<String>()
        .one(txn)
        .await
        .map_err(db("look for legacy key pairs"))?;
    if leftover.is_some() || leftover_keys.is_some() {
        return Err(Error::corrupt(
            "completed vault",
            "it still holds legacy grants or key pairs, which finalize deleted (a write around the guard?); nothing was changed",
        ));
    }
    let run = completed
        .run
        .ok_or_else(|| Error::corrupt("migration row", "a completed vault without its run id"))?;
    let previous = PreviousRun {
        run,
        target: completed.target,
        started_at: completed.started_at,
        started_by: completed.started_by,
        snapshot: completed.snapshot,
        previous: completed.previous.map(Box::new),
    };
    let json = serde_json::to_string(&previous)
        .map_err(|e| Error::corrupt("previous run", e.to_string()))?;
    migration::Entity::update_many()
        .col_expr(migration::Column::PreviousRun, Expr::value(json))
        .filter(migration::Column::Id.eq(1))
        .exec(txn)
        .await
        .map_err(db("keep the completed run"))?;
    principal::Entity::update_many()
        .col_expr(
            principal::Column::PreviousMigrationState,
            Expr::col(principal::Column::MigrationState),
        )
        .exec(txn)
        .await
        .map_err(db("keep the principals' states"))?;
    grant::Entity::update_many()
        .col_expr(
            grant::Column::Origin,
            Expr::value(GrantOrigin::Earlier.as_str()),
        )
        .filter(grant::Column::Origin.eq(GrantOrigin::Migration.as_str()))
        .exec(txn)
        .await
        .map_err(db("mark the earlier migration's grants"))?;
    grant::Entity::update_many()
        .col_expr(grant::Column::Legacy, Expr::value(true))
        .exec(txn)
        .await
        .map_err(db("flag the grants legacy"))?;
    key_pair::Entity::update_many()
        .col_expr(
            key_pair::Column::State,
            Expr::value(KeyState::Legacy.as_str()),
        )
        .exec(txn)
        .await
        .map_err(db("make the key pairs legacy"))?;
    Ok(())
}

/// The inverse of [`rebase_on_completed`], after the run's own rows are
/// gone: the completed vault exactly as it was.
async fn restore_completed(txn: &DatabaseTransaction, previous: PreviousRun) -> Result<()> {
    key_pair::Entity::update_many()
        .col_expr(
            key_pair::Column::State,
            Expr::value(KeyState::Current.as_str()),
        )
        .filter(key_pair::Column::State.eq(KeyState::Legacy.as_str()))
        .exec(txn)
        .await
        .map_err(db("make the key pairs current again"))?;
    grant::Entity::update_many()
        .col_expr(grant::Column::Legacy, Expr::value(false))
        .exec(txn)
        .await
        .map_err(db("clear the legacy flags"))?;
    grant::Entity::update_many()
        .col_expr(
            grant::Column::Origin,
            Expr::value(GrantOrigin::Migration.as_str()),
        )
        .filter(grant::Column::Origin.eq(GrantOrigin::Earlier.as_str()))
        .exec(txn)
        .await
        .map_err(db("restore the earlier migration's grants"))?;
    principal::Entity::update_many()
        .col_expr(
            principal::Column::MigrationState,
            Expr::col(principal::Column::PreviousMigrationState),
        )
        .col_expr(
            principal::Column::PreviousMigrationState,
            Expr::value(Option::<String>::None),
        )
        .filter(principal::Column::PreviousMigrationState.is_not_null())
        .exec(txn)
        .await
        .map_err(db("restore the principals' states"))?;
    let earlier = previous
        .previous
        .map(|p| serde_json::to_string(&*p))
        .transpose()
        .map_err(|e| Error::corrupt("previous run", e.to_string()))?;
    let snapshot = previous.snapshot;
    migration::Entity::update_many()
        .col_expr(
            migration::Column::StartedAt,
            Expr::value(previous.started_at.map(|t| t.as_millis())),
        )
        .col_expr(
            migration::Column::StartedBy,
            Expr::value(previous.started_by),
        )
        .col_expr(
            migration::Column::SnapshotUsers,
            Expr::value(snapshot.map(|s| count_of(s.users))),
        )
        .col_expr(
            migration::Column::SnapshotRoles,
            Expr::value(snapshot.map(|s| count_of(s.roles))),
        )
        .col_expr(
            migration::Column::SnapshotServices,
            Expr::value(snapshot.map(|s| count_of(s.services))),
        )
        .col_expr(
            migration::Column::SnapshotGrants,
            Expr::value(snapshot.map(|s| count_of(s.grants))),
        )
        .col_expr(
            migration::Column::RunId,
            Expr::value(previous.run.to_string()),
        )
        .col_expr(
            migration::Column::Target,
            Expr::value(previous.target.name()),
        )
        .col_expr(migration::Column::PreviousRun, Expr::value(earlier))
        .filter(migration::Column::Id.eq(1))
        .exec(txn)
        .await
        .map_err(db("restore the completed run"))?;
    Ok(())
}

fn count_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Every principal pending, except the blocked and the exempt ones.
async fn set_migration_states(
    txn: &DatabaseTransaction,
    blocked: &[PrincipalId],
    exempt: &[PrincipalId],
) -> Result<()> {
    principal::Entity::update_many()
        .col_expr(
            principal::Column::MigrationState,
            Expr::value(MigrationState::Pending.as_str()),
        )
        .exec(txn)
        .await
        .map_err(db("reset the principals' migration state"))?;
    for (ids, state) in [
        (blocked, MigrationState::Blocked),
        (exempt, MigrationState::Exempt),
    ] {
        for chunk in ids.chunks(BATCH_ROWS) {
            principal::Entity::update_many()
                .col_expr(
                    principal::Column::MigrationState,
                    Expr::value(state.as_str()),
                )
                .filter(principal::Column::Id.is_in(chunk.iter().map(ToString::to_string)))
                .exec(txn)
                .await
                .map_err(db("set the principals' migration state"))?;
        }
    }
    Ok(())
}

/// Who started the run and when, and the snapshot of what it must
/// migrate (principals by kind and legacy grants, exempt ones left out).
async fn record_start(
    txn: &DatabaseTransaction,
    run: RunId,
    target: Target,
    audit: &AuditEvent,
) -> Result<()> {
    let snapshot_of = |kind: PrincipalKind| {
        principal::Entity::find()
            .filter(principal::Column::Kind.eq(kind.as_str()))
            .filter(principal::Column::MigrationState.ne(MigrationState::Exempt.as_str()))
            .select_only()
            .column_as(principal::Column::Id.count(), "n")
            .into_tuple::<i64>()
    };
    let users = snapshot_of(PrincipalKind::User)
        .one(txn)
        .await
        .map_err(db("snapshot the users"))?;
    let roles = snapshot_of(PrincipalKind::Role)
        .one(txn)
        .await
        .map_err(db("snapshot the roles"))?;
    let services = snapshot_of(PrincipalKind::Service)
        .one(txn)
        .await
        .map_err(db("snapshot the services"))?;
    let exempt_ids = principal::Entity::find()
        .select_only()
        .column(principal::Column::Id)
        .filter(principal::Column::MigrationState.eq(MigrationState::Exempt.as_str()));
    let grants = grant::Entity::find()
        .filter(grant::Column::Legacy.eq(true))
        .filter(grant::Column::Origin.ne(GrantOrigin::Migration.as_str()))
        .filter(
            grant::Column::RecipientId.not_in_subquery(sea_orm::QueryTrait::into_query(exempt_ids)),
        )
        .select_only()
        .column_as(grant::Column::Id.count(), "n")
        .into_tuple::<i64>()
        .one(txn)
        .await
        .map_err(db("snapshot the grants"))?;
    migration::Entity::update_many()
        .col_expr(
            migration::Column::StartedAt,
            Expr::value(audit.at.as_millis()),
        )
        .col_expr(
            migration::Column::StartedBy,
            Expr::value(audit.actor.clone()),
        )
        .col_expr(
            migration::Column::SnapshotUsers,
            Expr::value(users.unwrap_or(0)),
        )
        .col_expr(
            migration::Column::SnapshotRoles,
            Expr::value(roles.unwrap_or(0)),
        )
        .col_expr(
            migration::Column::SnapshotServices,
            Expr::value(services.unwrap_or(0)),
        )
        .col_expr(
            migration::Column::SnapshotGrants,
            Expr::value(grants.unwrap_or(0)),
        )
        .col_expr(migration::Column::RunId, Expr::value(run.to_string()))
        .col_expr(migration::Column::Target, Expr::value(target.name()))
        .filter(migration::Column::Id.eq(1))
        .exec(txn)
        .await
        .map_err(db("record the start"))?;
    Ok(())
}

/// Up to `limit` grants that go with the legacy material: legacy-scheme
/// grants, then grants of a legacy key pair's private key (re-wrapped to
/// new keys during the migration, they die with the key pair).
async fn delete_legacy_grants(txn: &DatabaseTransaction, limit: u64) -> Result<u64> {
    let mut deleted = 0u64;
    {
        let ids: Vec<String> = grant::Entity::find()
            .select_only()
            .column(grant::Column::Id)
            .filter(grant::Column::Legacy.eq(true))
            .order_by_asc(grant::Column::Id)
            .limit(limit - deleted)
            .into_tuple()
            .all(txn)
            .await
            .map_err(db("list legacy grants"))?;
        for chunk in ids.chunks(BATCH_ROWS) {
            deleted += grant::Entity::delete_many()
                .filter(grant::Column::Id.is_in(chunk.to_vec()))
                .exec(txn)
                .await
                .map_err(db("delete legacy grants"))?
                .rows_affected;
        }
    }

    if deleted < limit {
        // Grants of a legacy key pair's private key (re-wrapped to new
        // keys during the migration) die with the key pair.
        let legacy_subject_ids: Vec<String> = grant::Entity::find()
            .select_only()
            .column(grant::Column::Id)
            .filter(grant::Column::SubjectKind.eq("private_key"))
            .filter(
                grant::Column::SubjectId.in_subquery(sea_orm::QueryTrait::into_query(
                    key_pair::Entity::find()
                        .select_only()
                        .column(key_pair::Column::Id)
                        .filter(key_pair::Column::State.eq(KeyState::Legacy.as_str())),
                )),
            )
            .order_by_asc(grant::Column::Id)
            .limit(limit - deleted)
            .into_tuple()
            .all(txn)
            .await
            .map_err(db("list grants of legacy keys"))?;
        for chunk in legacy_subject_ids.chunks(BATCH_ROWS) {
            deleted += grant::Entity::delete_many()
                .filter(grant::Column::Id.is_in(chunk.to_vec()))
                .exec(txn)
                .await
                .map_err(db("delete grants of legacy keys"))?
                .rows_affected;
        }
    }
    Ok(deleted)
}

/// The connection's own setting (`Vault::connect`), put back at the end
/// of SQLite's one-transaction finalize and of finalize's evidence read.
pub(super) const RESTORE_TEMP_STORE: &str = "PRAGMA temp_store = MEMORY";

/// Certificates of legacy key pairs (SQLite's one-transaction finalize).
async fn delete_legacy_certificates(txn: &DatabaseTransaction) -> Result<u64> {
    Ok(txn
        .execute_unprepared(
            "DELETE FROM certificate WHERE key_pair_id IN \
             (SELECT id FROM key_pair WHERE state = 'legacy')",
        )
        .await
        .map_err(db("delete legacy certificates"))?
        .rows_affected())
}

/// The `grant` table's secondary indexes on SQLite, each with the exact
/// statement that created it (the primary key's index has none and stays).
async fn sqlite_grant_indexes(txn: &DatabaseTransaction) -> Result<Vec<(String, String)>> {
    let rows = txn
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' \
             AND tbl_name = 'grant' AND sql IS NOT NULL ORDER BY name",
        ))
        .await
        .map_err(db("list the grant indexes"))?;
    rows.iter()
        .map(|r| {
            let name: String = r
                .try_get_by_index(0)
                .map_err(db("list the grant indexes"))?;
            let sql: String = r
                .try_get_by_index(1)
                .map_err(db("list the grant indexes"))?;
            Ok((name, sql))
        })
        .collect()
}
