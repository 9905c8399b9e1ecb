//! migration (the one phase row), migration_session (the writer marker of
//! the read-only triggers), non_migratable, audit.

use super::{id_col, text_col, time_col};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MigrationTable {
    #[sea_orm(iden = "migration")]
    Table,
    Id,
    Phase,
    Version,
    StartedAt,
    StartedBy,
    SnapshotUsers,
    SnapshotRoles,
    SnapshotServices,
    SnapshotGrants,
    VaultId,
    RunId,
}

#[derive(DeriveIden)]
enum MigrationSession {
    Table,
    ConnId,
}

#[derive(DeriveIden)]
enum NonMigratable {
    Table,
    GrantId,
    RecipientId,
    Reason,
    Resolution,
    ResolvedBy,
}

#[derive(DeriveIden)]
enum Audit {
    Table,
    Id,
    At,
    Actor,
    Action,
    Details,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    // A frozen schema step: it must create exactly what it created when it
    // shipped, so it is kept whole rather than split.
    #[allow(clippy::too_many_lines)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MigrationTable::Table)
                    .col(
                        ColumnDef::new(MigrationTable::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(text_col(MigrationTable::Phase, 32))
                    .col(
                        ColumnDef::new(MigrationTable::Version)
                            .big_integer()
                            .not_null(),
                    )
                    .col(time_col(MigrationTable::StartedAt))
                    .col(
                        ColumnDef::new(MigrationTable::StartedBy)
                            .string_len(255)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(MigrationTable::SnapshotUsers)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(MigrationTable::SnapshotRoles)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(MigrationTable::SnapshotServices)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(MigrationTable::SnapshotGrants)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(MigrationTable::VaultId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(MigrationTable::RunId).string_len(36).null())
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(MigrationTable::Table)
                    .columns([
                        MigrationTable::Id,
                        MigrationTable::Phase,
                        MigrationTable::Version,
                        MigrationTable::VaultId,
                    ])
                    .values_panic([
                        1.into(),
                        "legacy".into(),
                        0i64.into(),
                        uuid::Uuid::new_v4().to_string().into(),
                    ])
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MigrationSession::Table)
                    .col(
                        ColumnDef::new(MigrationSession::ConnId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NonMigratable::Table)
                    .col(id_col(NonMigratable::GrantId).primary_key())
                    .col(id_col(NonMigratable::RecipientId))
                    .col(text_col(NonMigratable::Reason, 255))
                    .col(text_col(NonMigratable::Resolution, 16))
                    .col(
                        ColumnDef::new(NonMigratable::ResolvedBy)
                            .string_len(255)
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Audit::Table)
                    .col(
                        ColumnDef::new(Audit::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Audit::At).big_integer().not_null())
                    .col(text_col(Audit::Actor, 255))
                    .col(text_col(Audit::Action, 64))
                    .col(ColumnDef::new(Audit::Details).text().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Audit::Table.into_iden(),
            NonMigratable::Table.into_iden(),
            MigrationSession::Table.into_iden(),
            MigrationTable::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
