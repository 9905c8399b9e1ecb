//! Role confirmations (`rekey_core::confirm`): one row per role, member
//! and role key pair, written when the member's client confirmed that the
//! role as migrated opens for it (`receipt`, with the signature by the
//! role's new key), when the member's own bundle migrated the role
//! (`built`), or when the administrator accepted an unconfirmed member
//! (`waived`). Finalization refuses while a migrated role has an e2ee
//! member without a row for its current key pair.

use super::id_col;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RoleConfirmation {
    Table,
    RoleId,
    HolderId,
    KeyPairId,
    RunId,
    How,
    Checked,
    Signature,
    ConfirmedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RoleConfirmation::Table)
                    .if_not_exists()
                    .col(id_col(RoleConfirmation::RoleId))
                    .col(id_col(RoleConfirmation::HolderId))
                    .col(id_col(RoleConfirmation::KeyPairId))
                    .col(id_col(RoleConfirmation::RunId))
                    .col(
                        ColumnDef::new(RoleConfirmation::How)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RoleConfirmation::Checked)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(RoleConfirmation::Signature).blob().null())
                    .col(
                        ColumnDef::new(RoleConfirmation::ConfirmedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(RoleConfirmation::RoleId)
                            .col(RoleConfirmation::HolderId)
                            .col(RoleConfirmation::KeyPairId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(RoleConfirmation::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
