//! The administrator's remedies for users that can never log in (preflight
//! blocks on them): restore one, or purge it. Both write in an ordinary
//! transaction, so the read-only guards refuse them while a migration runs
//! whatever the caller checked.

use super::Vault;
use super::lifecycle::append;
use crate::entity::role_confirmation;
use crate::entity::{grant, key_pair, login_verifier, membership, non_migratable, principal};
use crate::error::{Result, db};
use rekey_core::ids::{PrincipalId, RecordId};
use rekey_core::model::{AuditEvent, UserStatus};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, Statement, TransactionTrait,
};

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    /// Grants addressed to the user, and grants of its private keys.
    pub grants: u64,
    /// Its key pairs.
    pub key_pairs: u64,
    /// Its role memberships.
    pub memberships: u64,
}

impl Vault {
    /// Records for which `user` holds the only grant of the record key
    /// (no other principal that is not purged holds one): a purge leaves
    /// them unreadable.
    pub async fn sole_reader_records(&self, user: PrincipalId) -> Result<Vec<RecordId>> {
        let g = if self.backend == super::Backend::MySql {
            "`grant`"
        } else {
            "\"grant\""
        };
        // `user` is a typed id: its text is a UUID, safe to inline.
        let sql = format!(
            "SELECT DISTINCT g.subject_id FROM {g} g \
             WHERE g.recipient_id = '{user}' AND g.subject_kind = 'record_key' \
             AND NOT EXISTS (SELECT 1 FROM {g} o JOIN principal p ON p.id = o.recipient_id \
                             WHERE o.subject_kind = 'record_key' AND o.subject_id = g.subject_id \
                             AND o.recipient_id <> g.recipient_id AND p.status <> 'purged') \
             ORDER BY g.subject_id"
        );
        let rows = self
            .db
            .query_all_raw(Statement::from_string(self.db_backend(), sql))
            .await
            .map_err(db("find records only this user reads"))?;
        rows.into_iter()
            .map(|row| {
                let id: String = row
                    .try_get_by_index(0)
                    .map_err(db("find records only this user reads"))?;
                super::convert::parse("record id", &id)
            })
            .collect()
    }

    /// Sets a user's account status (e.g. restores a deactivated user),
    /// with its audit event, in one transaction.
    pub async fn set_user_status(
        &self,
        user: PrincipalId,
        status: UserStatus,
        audit: &AuditEvent,
    ) -> Result<()> {
        let txn = self.db.begin().await.map_err(db("begin a transaction"))?;
        principal::Entity::update_many()
            .col_expr(principal::Column::Status, Expr::value(status.as_str()))
            .filter(principal::Column::Id.eq(user.to_string()))
            .exec(&txn)
            .await
            .map_err(db("set the user's status"))?;
        append(&txn, audit).await?;
        txn.commit().await.map_err(db("commit the user's status"))
    }

    /// Purges a user: its grants, the grants of its private keys, its key
    /// pairs, memberships, role receipts and login verifier are deleted and
    /// its row is kept with status `purged` (the audit log and other rows
    /// still name it), with `audit`, in one transaction.
    pub async fn purge_user(&self, user: PrincipalId, audit: &AuditEvent) -> Result<PurgeCounts> {
        let id = user.to_string();
        let txn = self.db.begin().await.map_err(db("begin a transaction"))?;
        self.take_write_lock(&txn).await?;
        let key_pairs: Vec<String> = key_pair::Entity::find()
            .filter(key_pair::Column::PrincipalId.eq(&id))
            .all(&txn)
            .await
            .map_err(db("find the user's key pairs"))?
            .into_iter()
            .map(|k| k.id)
            .collect();
        let doomed = Condition::any()
            .add(grant::Column::RecipientId.eq(&id))
            .add(
                Condition::all()
                    .add(grant::Column::SubjectKind.eq("private_key"))
                    .add(grant::Column::SubjectId.is_in(key_pairs.clone())),
            );
        let grant_ids: Vec<String> = grant::Entity::find()
            .filter(doomed.clone())
            .all(&txn)
            .await
            .map_err(db("find the user's grants"))?
            .into_iter()
            .map(|g| g.id)
            .collect();
        for chunk in grant_ids.chunks(super::BATCH_ROWS) {
            non_migratable::Entity::delete_many()
                .filter(non_migratable::Column::GrantId.is_in(chunk.to_vec()))
                .exec(&txn)
                .await
                .map_err(db("delete the user's non-migratable entries"))?;
        }
        let grants = grant::Entity::delete_many()
            .filter(doomed)
            .exec(&txn)
            .await
            .map_err(db("delete the user's grants"))?
            .rows_affected;
        let memberships = membership::Entity::delete_many()
            .filter(membership::Column::MemberId.eq(&id))
            .exec(&txn)
            .await
            .map_err(db("delete the user's memberships"))?
            .rows_affected;
        role_confirmation::Entity::delete_many()
            .filter(role_confirmation::Column::HolderId.eq(&id))
            .exec(&txn)
            .await
            .map_err(db("delete the user's role receipts"))?;
        login_verifier::Entity::delete_many()
            .filter(login_verifier::Column::PrincipalId.eq(&id))
            .exec(&txn)
            .await
            .map_err(db("delete the user's login verifier"))?;
        let key_pairs = key_pair::Entity::delete_many()
            .filter(key_pair::Column::PrincipalId.eq(&id))
            .exec(&txn)
            .await
            .map_err(db("delete the user's key pairs"))?
            .rows_affected;
        principal::Entity::update_many()
            .col_expr(
                principal::Column::Status,
                Expr::value(UserStatus::Purged.as_str()),
            )
            .filter(principal::Column::Id.eq(&id))
            .exec(&txn)
            .await
            .map_err(db("mark the user purged"))?;
        append(&txn, audit).await?;
        txn.commit().await.map_err(db("commit the purge"))?;
        Ok(PurgeCounts {
            grants,
            key_pairs,
            memberships,
        })
    }
}
