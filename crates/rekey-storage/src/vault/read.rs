//! Reading the vault: principals, key pairs, pending grants page by page,
//! progress, audit, non-migratable grants.

use super::convert::{
    audit_from, grant_from, key_pair_from, migration_from, non_migratable_from, principal_from,
};
use super::sql::{page, page_tuples, unique};
use super::{BATCH_ROWS, Vault};
use crate::entity::{
    audit, grant, key_pair, membership, migration, non_migratable, principal, record,
};
use crate::error::{Error, Result, db};
use rekey_core::ids::{GrantId, PrincipalId, RecordId, Subject};
use rekey_core::model::{
    AuditEvent, Counts, GrantOrigin, GrantRecord, KeyPairRecord, MigrationRow, MigrationState,
    NonMigratable, Principal, PrincipalKind, Progress, RecordRow, Resolution, UserStatus,
};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, JoinType, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

/// Rows per page when only grant ids are read (no envelopes: small rows).
pub const PENDING_IDS_PAGE: u64 = 10_000;

/// `columns` (the first one the grant id) of every pending grant of
/// `principal`, in id order, read on `conn` in keyset pages of `page_size`
/// rows; `id` gives a row's grant id, where the next page starts after.
pub(crate) async fn pending_grant_columns<T, C>(
    conn: &C,
    principal: PrincipalId,
    columns: &[grant::Column],
    page_size: u64,
    id: impl Fn(&T) -> &String,
) -> std::result::Result<Vec<T>, sea_orm::DbErr>
where
    T: sea_orm::TryGetableMany,
    C: ConnectionTrait,
{
    let page_size = std::cmp::max(page_size, 1);
    let mut out = Vec::new();
    loop {
        let mut q = grant::Entity::find()
            .select_only()
            .columns(columns.iter().copied())
            .filter(grant::Column::RecipientId.eq(principal.to_string()))
            .filter(grant::Column::Legacy.eq(true));
        if let Some(last) = out.last() {
            q = q.filter(grant::Column::Id.gt(id(last).clone()));
        }
        let page: Vec<T> = page_tuples(conn, q.order_by_asc(grant::Column::Id), page_size).await?;
        let full = page.len() as u64 == page_size;
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// A cursor over one principal's pending (legacy-scheme) grants, a page at
/// a time, in grant-id order (keyset pagination: each page is one indexed
/// query starting after the last id seen).
#[derive(Debug)]
pub struct PendingGrants {
    vault: Vault,
    principal: PrincipalId,
    page_size: u64,
    after: Option<GrantId>,
    done: bool,
}

impl PendingGrants {
    /// The next page, or `None` when every pending grant has been returned.
    pub async fn next_page(&mut self) -> Result<Option<Vec<GrantRecord>>> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .vault
            .pending_grants_page(self.principal, self.after, self.page_size)
            .await?;
        if (page.len() as u64) < self.page_size {
            self.done = true;
        }
        match page.last() {
            Some(last) => {
                self.after = Some(last.id);
                Ok(Some(page))
            }
            None => {
                self.done = true;
                Ok(None)
            }
        }
    }
}

impl Vault {
    /// The migration row: phase, version, start, snapshot.
    pub async fn migration(&self) -> Result<MigrationRow> {
        let row = unique(&self.db, migration::Entity::find_by_id(1))
            .await
            .map_err(db("read the migration phase"))?
            .ok_or_else(|| Error::corrupt("migration row", "missing"))?;
        migration_from(row)
    }

    /// One principal.
    pub async fn principal(&self, id: PrincipalId) -> Result<Option<Principal>> {
        unique(&self.db, principal::Entity::find_by_id(id.to_string()))
            .await
            .map_err(db("load a principal"))?
            .map(principal_from)
            .transpose()
    }

    /// Users with a given status (e.g. deactivated and deleted users for
    /// preparation), by id.
    pub async fn users_by_status(&self, status: UserStatus) -> Result<Vec<Principal>> {
        principal::Entity::find()
            .filter(principal::Column::Kind.eq(PrincipalKind::User.as_str()))
            .filter(principal::Column::Status.eq(status.as_str()))
            .order_by_asc(principal::Column::Id)
            .all(&self.db)
            .await
            .map_err(db("list users by status"))?
            .into_iter()
            .map(principal_from)
            .collect()
    }

    /// Principals in a migration state, a page at a time (`after` = the last
    /// id of the previous page).
    pub async fn principals_in_state(
        &self,
        state: MigrationState,
        after: Option<PrincipalId>,
        limit: u64,
    ) -> Result<Vec<Principal>> {
        let mut q =
            principal::Entity::find().filter(principal::Column::MigrationState.eq(state.as_str()));
        if let Some(after) = after {
            q = q.filter(principal::Column::Id.gt(after.to_string()));
        }
        page(&self.db, q.order_by_asc(principal::Column::Id), limit)
            .await
            .map_err(db("list principals by migration state"))?
            .into_iter()
            .map(principal_from)
            .collect()
    }

    /// A principal's key pairs (legacy and new).
    pub async fn key_pairs(&self, principal: PrincipalId) -> Result<Vec<KeyPairRecord>> {
        key_pair::Entity::find()
            .filter(key_pair::Column::PrincipalId.eq(principal.to_string()))
            .order_by_asc(key_pair::Column::Id)
            .all(&self.db)
            .await
            .map_err(db("load the key pairs"))?
            .into_iter()
            .map(key_pair_from)
            .collect()
    }

    /// The roles a user belongs to, in id order.
    pub async fn roles_of(&self, member: PrincipalId) -> Result<Vec<PrincipalId>> {
        let pairs = self.memberships_of_members(&[member]).await?;
        Ok(pairs.into_iter().map(|(role, _)| role).collect())
    }

    /// The members of a role, in id order.
    pub async fn members_of(&self, role: PrincipalId) -> Result<Vec<PrincipalId>> {
        let pairs = self.memberships_of_roles(&[role]).await?;
        Ok(pairs.into_iter().map(|(_, member)| member).collect())
    }

    /// Every membership of these roles, as `(role, member)` pairs ordered
    /// by role then member: [`Vault::members_of`] for many roles in a few
    /// queries.
    pub async fn memberships_of_roles(
        &self,
        roles: &[PrincipalId],
    ) -> Result<Vec<(PrincipalId, PrincipalId)>> {
        self.memberships_where(membership::Column::RoleId, roles)
            .await
    }

    /// Every membership of these members, as `(role, member)` pairs
    /// ordered by role then member: [`Vault::roles_of`] for many members in
    /// a few queries.
    pub async fn memberships_of_members(
        &self,
        members: &[PrincipalId],
    ) -> Result<Vec<(PrincipalId, PrincipalId)>> {
        self.memberships_where(membership::Column::MemberId, members)
            .await
    }

    async fn memberships_where(
        &self,
        column: membership::Column,
        ids: &[PrincipalId],
    ) -> Result<Vec<(PrincipalId, PrincipalId)>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(BATCH_ROWS) {
            let rows = membership::Entity::find()
                .filter(column.is_in(chunk.iter().map(ToString::to_string)))
                .all(&self.db)
                .await
                .map_err(db("load memberships"))?;
            for m in rows {
                out.push((
                    super::convert::parse("principal id", &m.role_id)?,
                    super::convert::parse("principal id", &m.member_id)?,
                ));
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// One page of a principal's pending grants: legacy-scheme grants
    /// addressed to it, ordered by id, starting after `after`.
    pub async fn pending_grants_page(
        &self,
        principal: PrincipalId,
        after: Option<GrantId>,
        limit: u64,
    ) -> Result<Vec<GrantRecord>> {
        self.grants_page_where_legacy(principal, true, after, limit)
            .await
    }

    /// One page of a principal's grants flagged legacy (`legacy`) or not,
    /// ordered by id, starting after `after`: the pending ones, or (in a
    /// completed vault) those a next migration would re-wrap.
    pub async fn grants_page_where_legacy(
        &self,
        principal: PrincipalId,
        legacy: bool,
        after: Option<GrantId>,
        limit: u64,
    ) -> Result<Vec<GrantRecord>> {
        let mut q = grant::Entity::find()
            .filter(grant::Column::RecipientId.eq(principal.to_string()))
            .filter(grant::Column::Legacy.eq(legacy));
        if let Some(after) = after {
            q = q.filter(grant::Column::Id.gt(after.to_string()));
        }
        page(&self.db, q.order_by_asc(grant::Column::Id), limit)
            .await
            .map_err(db("load pending grants"))?
            .into_iter()
            .map(grant_from)
            .collect()
    }

    /// The ids and subjects of a principal's pending grants, without their
    /// envelopes: what the server needs to check a bundle's coverage.
    /// Read in keyset pages of `page_size` rows.
    pub async fn pending_grant_subjects(
        &self,
        principal: PrincipalId,
        page_size: u64,
    ) -> Result<Vec<(GrantId, Subject)>> {
        let rows: Vec<(String, String, String)> = pending_grant_columns(
            &self.db,
            principal,
            &[
                grant::Column::Id,
                grant::Column::SubjectKind,
                grant::Column::SubjectId,
            ],
            page_size,
            |(id, _, _)| id,
        )
        .await
        .map_err(db("load pending grant ids"))?;
        rows.iter()
            .map(|(id, kind, subject_id)| {
                Ok((
                    super::convert::parse::<GrantId>("grant id", id)?,
                    super::convert::subject(kind, subject_id)?,
                ))
            })
            .collect()
    }

    /// A cursor over a principal's pending grants, `page_size` at a time.
    #[must_use]
    pub fn pending_grants(&self, principal: PrincipalId, page_size: u64) -> PendingGrants {
        PendingGrants {
            vault: self.clone(),
            principal,
            page_size: std::cmp::max(page_size, 1),
            after: None,
            done: false,
        }
    }

    /// The grants addressed to a principal that the migration wrote (new
    /// grants, membership grants), by id.
    pub async fn migrated_grants(&self, principal: PrincipalId) -> Result<Vec<GrantRecord>> {
        grant::Entity::find()
            .filter(grant::Column::RecipientId.eq(principal.to_string()))
            .filter(grant::Column::Origin.eq(GrantOrigin::Migration.as_str()))
            .order_by_asc(grant::Column::Id)
            .all(&self.db)
            .await
            .map_err(db("load migrated grants"))?
            .into_iter()
            .map(grant_from)
            .collect()
    }

    /// How many grants have this origin (after finalize, the ones the
    /// migration wrote are all that is left to count).
    pub async fn count_grants(&self, origin: GrantOrigin) -> Result<u64> {
        let n = grant::Entity::find()
            .filter(grant::Column::Origin.eq(origin.as_str()))
            .select_only()
            .column_as(grant::Column::Id.count(), "n")
            .into_tuple::<i64>()
            .one(&self.db)
            .await
            .map_err(db("count grants"))?;
        Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    /// How far the migration is: principals per kind and legacy grants,
    /// migrated versus remaining.
    pub async fn progress(&self) -> Result<Progress> {
        let mut progress = Progress::default();
        let rows: Vec<(String, String, i64)> = principal::Entity::find()
            .select_only()
            .column(principal::Column::Kind)
            .column(principal::Column::MigrationState)
            .column_as(principal::Column::Id.count(), "n")
            .group_by(principal::Column::Kind)
            .group_by(principal::Column::MigrationState)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db("count principals"))?;
        for (kind, state, n) in rows {
            let kind: PrincipalKind = super::convert::parse("principal kind", &kind)?;
            let state: MigrationState = super::convert::parse("migration state", &state)?;
            let n = u64::try_from(n).unwrap_or(0);
            let counts = match kind {
                PrincipalKind::User => &mut progress.users,
                PrincipalKind::Role => &mut progress.roles,
                PrincipalKind::Service => &mut progress.services,
            };
            add(counts, state, n);
            if state == MigrationState::Blocked {
                progress.blocked += n;
            }
        }

        // Legacy grants that existed at start, by their recipient's state.
        let g = Alias::new("g");
        let p = Alias::new("p");
        let stmt = Query::select()
            .column((p.clone(), principal::Column::MigrationState))
            .expr(Expr::col((g.clone(), grant::Column::Id)).count())
            .from_as(grant::Entity, g.clone())
            .join_as(
                JoinType::InnerJoin,
                principal::Entity,
                p.clone(),
                Expr::col((g.clone(), grant::Column::RecipientId))
                    .equals((p.clone(), principal::Column::Id)),
            )
            .and_where(Expr::col((g.clone(), grant::Column::Legacy)).eq(true))
            // Present at start: `legacy`, or `earlier` when a completed
            // vault migrates again (not the pending holders' grants the
            // run wrote itself).
            .and_where(
                Expr::col((g.clone(), grant::Column::Origin)).ne(GrantOrigin::Migration.as_str()),
            )
            .group_by_col((p, principal::Column::MigrationState))
            .to_owned();
        let rows = self.db.query_all(&stmt).await.map_err(db("count grants"))?;
        for row in rows {
            let state: String = row.try_get_by_index(0).map_err(db("count grants"))?;
            let n: i64 = row.try_get_by_index(1).map_err(db("count grants"))?;
            let state: MigrationState = super::convert::parse("migration state", &state)?;
            add(&mut progress.grants, state, u64::try_from(n).unwrap_or(0));
        }

        progress.unresolved_non_migratable = non_migratable::Entity::find()
            .filter(non_migratable::Column::Resolution.eq(Resolution::Unresolved.as_str()))
            .select_only()
            .column_as(non_migratable::Column::GrantId.count(), "n")
            .into_tuple::<i64>()
            .one(&self.db)
            .await
            .map_err(db("count non-migratable grants"))?
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        progress.unconfirmed_role_members = self.count(super::evidence::UNCONFIRMED).await?;
        Ok(progress)
    }

    /// Grants that could not be migrated, by grant id.
    pub async fn non_migratable(&self) -> Result<Vec<NonMigratable>> {
        non_migratable::Entity::find()
            .order_by_asc(non_migratable::Column::GrantId)
            .all(&self.db)
            .await
            .map_err(db("list non-migratable grants"))?
            .into_iter()
            .map(non_migratable_from)
            .collect()
    }

    /// Audit events with a sequence number greater than `after`, oldest
    /// first, at most `limit`.
    pub async fn audit_events(&self, after: u64, limit: u64) -> Result<Vec<(u64, AuditEvent)>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        Ok(page(
            &self.db,
            audit::Entity::find()
                .filter(audit::Column::Id.gt(after))
                .order_by_asc(audit::Column::Id),
            limit,
        )
        .await
        .map_err(db("read the audit log"))?
        .into_iter()
        .map(audit_from)
        .collect())
    }

    /// How many audit events of `action` fell in each of `buckets`
    /// consecutive windows of `width_ms` from `since` (events after the
    /// last window count in it). One grouped query: the status page asks
    /// every two seconds.
    pub async fn audit_counts(
        &self,
        action: &str,
        since: rekey_core::model::Timestamp,
        width_ms: i64,
        buckets: usize,
    ) -> Result<Vec<u64>> {
        let mut out = vec![0u64; buckets];
        if buckets == 0 || width_ms <= 0 {
            return Ok(out);
        }
        let div = if self.backend == super::Backend::MySql {
            "DIV"
        } else {
            "/"
        };
        let sql = format!(
            "SELECT (at - {since}) {div} {width_ms} AS b, COUNT(*) FROM audit \
             WHERE action = $1 AND at >= {since} GROUP BY (at - {since}) {div} {width_ms}",
            since = since.0
        );
        let sql = if self.backend == super::Backend::Postgres {
            sql
        } else {
            sql.replace("$1", "?")
        };
        let rows = self
            .db
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                self.db_backend(),
                sql,
                [action.into()],
            ))
            .await
            .map_err(db("count audit events"))?;
        for row in rows {
            let b: i64 = row.try_get_by_index(0).map_err(db("count audit events"))?;
            let n: i64 = row.try_get_by_index(1).map_err(db("count audit events"))?;
            let i = usize::try_from(b).unwrap_or(0).min(buckets - 1);
            out[i] += u64::try_from(n).unwrap_or(0);
        }
        Ok(out)
    }

    /// One record.
    pub async fn record(&self, id: RecordId) -> Result<Option<RecordRow>> {
        Ok(unique(&self.db, record::Entity::find_by_id(id.to_string()))
            .await
            .map_err(db("load a record"))?
            .map(|m| RecordRow {
                id,
                ciphertext: m.ciphertext,
            }))
    }
}

fn add(counts: &mut Counts, state: MigrationState, n: u64) {
    match state {
        MigrationState::Migrated => counts.migrated += n,
        MigrationState::Pending | MigrationState::Blocked => counts.remaining += n,
        MigrationState::Exempt => {}
    }
}
