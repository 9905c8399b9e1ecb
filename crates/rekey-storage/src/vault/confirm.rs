//! Role confirmations (`rekey_core::confirm`): who has confirmed which
//! role key, and how.

use super::Vault;
use crate::entity::role_confirmation;
use crate::error::{Result, db};
use rekey_core::ids::{KeyPairId, PrincipalId, RunId};
use rekey_core::model::Timestamp;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

/// How a member came to count as confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmedBy {
    /// Its client checked the role and signed a receipt.
    Receipt,
    /// Its own bundle migrated the role.
    Built,
    /// The administrator accepted it unconfirmed.
    Waived,
}

impl ConfirmedBy {
    fn as_str(self) -> &'static str {
        match self {
            ConfirmedBy::Receipt => "receipt",
            ConfirmedBy::Built => "built",
            ConfirmedBy::Waived => "waived",
        }
    }
}

/// One confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleConfirmation {
    /// The role.
    pub role: PrincipalId,
    /// The member.
    pub holder: PrincipalId,
    /// The role's key pair confirmed.
    pub key_pair: KeyPairId,
    /// The run.
    pub run: RunId,
    /// How.
    pub how: ConfirmedBy,
    /// Grants the member's client compared.
    pub checked: u32,
    /// The receipt's signature.
    pub signature: Option<Vec<u8>>,
}

impl Vault {
    /// Records confirmations; one already recorded stays as it was.
    pub async fn add_role_confirmations(&self, rows: &[RoleConfirmation]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now().as_millis();
        let _turn = self.write_turn().await;
        role_confirmation::Entity::insert_many(rows.iter().map(|c| {
            role_confirmation::ActiveModel {
                role_id: Set(c.role.to_string()),
                holder_id: Set(c.holder.to_string()),
                key_pair_id: Set(c.key_pair.to_string()),
                run_id: Set(c.run.to_string()),
                how: Set(c.how.as_str().to_owned()),
                checked: Set(i64::from(c.checked)),
                signature: Set(c.signature.clone()),
                confirmed_at: Set(now),
            }
        }))
        .on_conflict(
            OnConflict::columns([
                role_confirmation::Column::RoleId,
                role_confirmation::Column::HolderId,
                role_confirmation::Column::KeyPairId,
            ])
            // See `put_setting`: `do_nothing` is not MariaDB SQL.
            .do_nothing_on([role_confirmation::Column::RoleId])
            .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await
        .map_err(db("record a role confirmation"))?;
        Ok(())
    }

    /// The key pairs of `roles` that `holder` has confirmed. Looked up
    /// by role first, the primary key's order: a search by holder alone
    /// would scan every confirmation of the vault at each login.
    pub async fn confirmed_by(
        &self,
        holder: PrincipalId,
        roles: &[PrincipalId],
    ) -> Result<Vec<KeyPairId>> {
        if roles.is_empty() {
            return Ok(Vec::new());
        }
        role_confirmation::Entity::find()
            .filter(role_confirmation::Column::RoleId.is_in(roles.iter().map(ToString::to_string)))
            .filter(role_confirmation::Column::HolderId.eq(holder.to_string()))
            .all(&self.db)
            .await
            .map_err(db("read role confirmations"))?
            .into_iter()
            .map(|r| super::convert::parse("key pair id", &r.key_pair_id))
            .collect()
    }
}
