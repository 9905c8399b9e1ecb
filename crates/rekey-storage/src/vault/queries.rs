//! Reads the migration engine needs beyond the basic ones: principals by
//! name, kind or id list, key pairs of many principals, every grant of a
//! principal, and records page by page.

use super::Vault;
use super::convert::{grant_from, key_pair_from, principal_from};
use super::sql::{page, unique};
use crate::entity::{grant, key_pair, migration, principal, record};
use crate::error::{Error, Result, db};
use rekey_core::ids::{KeyPairId, PrincipalId, RecordId, VaultId};
use rekey_core::model::{GrantRecord, KeyPairRecord, Principal, PrincipalKind, RecordRow};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};

impl Vault {
    /// The vault's identity: every grant binding names it. Made at `init`.
    pub async fn vault_id(&self) -> Result<VaultId> {
        Ok(self.migration().await?.vault)
    }

    /// Gives an empty vault the identity its seed data was made for (the
    /// demo generates keys bound to a vault id before seeding). Refused once
    /// the vault holds any principal.
    pub async fn set_vault_id(&self, id: VaultId) -> Result<()> {
        let principals = principal::Entity::find()
            .count(&self.db)
            .await
            .map_err(db("count principals"))?;
        if principals > 0 {
            return Err(Error::Conflict {
                principal: PrincipalId(uuid::Uuid::nil()),
                reason: "the vault already holds data; its identity cannot change".to_owned(),
            });
        }
        // The migration row is rekey's own: written in a migration
        // transaction, past its guard.
        let (txn, _turn) = self.begin_migration_txn().await?;
        migration::Entity::update_many()
            .col_expr(migration::Column::VaultId, Expr::value(id.to_string()))
            .filter(migration::Column::Id.eq(1))
            .exec(&txn)
            .await
            .map_err(db("set the vault id"))?;
        self.commit_migration_txn(txn).await
    }

    /// The principal with this name, if any.
    pub async fn principal_by_name(&self, name: &str) -> Result<Option<Principal>> {
        unique(
            &self.db,
            principal::Entity::find().filter(principal::Column::Name.eq(name)),
        )
        .await
        .map_err(db("find a principal by name"))?
        .map(principal_from)
        .transpose()
    }

    /// Every principal of one kind, by id.
    pub async fn principals_of_kind(&self, kind: PrincipalKind) -> Result<Vec<Principal>> {
        principal::Entity::find()
            .filter(principal::Column::Kind.eq(kind.as_str()))
            .order_by_asc(principal::Column::Id)
            .all(&self.db)
            .await
            .map_err(db("list principals"))?
            .into_iter()
            .map(principal_from)
            .collect()
    }

    /// The principals with these ids (unknown ids are skipped).
    pub async fn principals(&self, ids: &[PrincipalId]) -> Result<Vec<Principal>> {
        self.where_in::<principal::Entity, _, _>(
            principal::Column::Id,
            ids,
            "load principals",
            principal_from,
        )
        .await
    }

    /// The records of these ids (those that exist).
    pub async fn records(&self, ids: &[RecordId]) -> Result<Vec<RecordRow>> {
        self.where_in::<record::Entity, _, _>(record::Column::Id, ids, "load records", |row| {
            Ok(RecordRow {
                id: super::convert::parse("record id", &row.id)?,
                ciphertext: row.ciphertext,
            })
        })
        .await
    }

    /// The key pairs of these ids (those that exist).
    pub async fn key_pairs_by_id(&self, ids: &[KeyPairId]) -> Result<Vec<KeyPairRecord>> {
        self.where_in::<key_pair::Entity, _, _>(
            key_pair::Column::Id,
            ids,
            "load key pairs",
            key_pair_from,
        )
        .await
    }

    /// Which of `ids` name a key pair the vault already has.
    pub async fn key_pair_ids_taken(&self, ids: &[KeyPairId]) -> Result<Vec<KeyPairId>> {
        Ok(self
            .key_pairs_by_id(ids)
            .await?
            .into_iter()
            .map(|kp| kp.id)
            .collect())
    }

    /// The key pairs of all these principals.
    pub async fn key_pairs_of(&self, ids: &[PrincipalId]) -> Result<Vec<KeyPairRecord>> {
        self.where_in::<key_pair::Entity, _, _>(
            key_pair::Column::PrincipalId,
            ids,
            "load key pairs",
            key_pair_from,
        )
        .await
    }

    /// The rows of `E` whose `column` is one of `ids`, each converted: one
    /// `IN` query per [`super::BATCH_ROWS`] ids, which keeps every statement
    /// under the backends' limits on bound parameters.
    async fn where_in<E, I, T>(
        &self,
        column: E::Column,
        ids: &[I],
        what: &'static str,
        convert: impl Fn(E::Model) -> Result<T>,
    ) -> Result<Vec<T>>
    where
        E: EntityTrait,
        I: ToString,
    {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(super::BATCH_ROWS) {
            let rows = E::find()
                .filter(column.is_in(chunk.iter().map(ToString::to_string)))
                .all(&self.db)
                .await
                .map_err(db(what))?;
            for row in rows {
                out.push(convert(row)?);
            }
        }
        Ok(out)
    }

    /// One key pair by id.
    pub async fn key_pair(&self, id: rekey_core::ids::KeyPairId) -> Result<Option<KeyPairRecord>> {
        unique(&self.db, key_pair::Entity::find_by_id(id.to_string()))
            .await
            .map_err(db("load a key pair"))?
            .map(key_pair_from)
            .transpose()
    }

    /// Every grant addressed to a principal, legacy and new.
    pub async fn grants_to(&self, principal: PrincipalId) -> Result<Vec<GrantRecord>> {
        self.grants_to_filtered(principal, None).await
    }

    /// The grants addressed to a principal that are legacy (`legacy`) or
    /// not: a migrated role's new grants without its legacy ones, which
    /// are as many and larger.
    pub async fn grants_to_where_legacy(
        &self,
        principal: PrincipalId,
        legacy: bool,
    ) -> Result<Vec<GrantRecord>> {
        self.grants_to_filtered(principal, Some(legacy)).await
    }

    /// The grants to `principal` in id order, only those whose legacy flag
    /// is `legacy` when given.
    async fn grants_to_filtered(
        &self,
        principal: PrincipalId,
        legacy: Option<bool>,
    ) -> Result<Vec<GrantRecord>> {
        let mut q =
            grant::Entity::find().filter(grant::Column::RecipientId.eq(principal.to_string()));
        if let Some(legacy) = legacy {
            q = q.filter(grant::Column::Legacy.eq(legacy));
        }
        q.order_by_asc(grant::Column::Id)
            .all(&self.db)
            .await
            .map_err(db("load a principal's grants"))?
            .into_iter()
            .map(grant_from)
            .collect()
    }

    /// Record ids in order after `after`, at most `limit` (without the
    /// ciphertexts: preflight looks for records no grant opens).
    pub async fn record_ids_page(
        &self,
        after: Option<RecordId>,
        limit: u64,
    ) -> Result<Vec<RecordId>> {
        let mut q = record::Entity::find()
            .select_only()
            .column(record::Column::Id);
        if let Some(after) = after {
            q = q.filter(record::Column::Id.gt(after.to_string()));
        }
        let ids: Vec<String> = q
            .order_by_asc(record::Column::Id)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db("load record ids"))?;
        ids.iter()
            .map(|id| super::convert::parse("record id", id))
            .collect()
    }

    /// Records in id order after `after`, at most `limit`.
    pub async fn records_page(
        &self,
        after: Option<RecordId>,
        limit: u64,
    ) -> Result<Vec<RecordRow>> {
        let mut q = record::Entity::find();
        if let Some(after) = after {
            q = q.filter(record::Column::Id.gt(after.to_string()));
        }
        let rows = page(&self.db, q.order_by_asc(record::Column::Id), limit)
            .await
            .map_err(db("load records"))?;
        rows.into_iter()
            .map(|m| {
                Ok(RecordRow {
                    id: super::convert::parse("record id", &m.id)?,
                    ciphertext: m.ciphertext,
                })
            })
            .collect()
    }
}
