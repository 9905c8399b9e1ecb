//! What a migrated vault needs to migrate again (to another target, or to
//! the same one with new keys) and still abort exactly:
//!
//! - `migration.previous_run`: the completed run the new run replaces, as
//!   JSON (`PreviousRun`: run id, target, start, snapshot, and its own
//!   previous run). Set by a start from `completed`; an abort puts it back
//!   on the row.
//! - `principal.previous_migration_state`: each principal's state in the
//!   completed vault, kept by that start for the abort to restore.
//!
//! Both columns are nullable and empty on a vault that never migrated
//! again. Like every step it can run again on a vault that has them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Migration_ {
    #[sea_orm(iden = "migration")]
    Table,
    PreviousRun,
}

#[derive(DeriveIden)]
enum Principal {
    Table,
    PreviousMigrationState,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !manager.has_column("migration", "previous_run").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Migration_::Table)
                        .add_column(ColumnDef::new(Migration_::PreviousRun).text().null())
                        .to_owned(),
                )
                .await?;
        }
        if !manager
            .has_column("principal", "previous_migration_state")
            .await?
        {
            manager
                .alter_table(
                    Table::alter()
                        .table(Principal::Table)
                        .add_column(
                            ColumnDef::new(Principal::PreviousMigrationState)
                                .string_len(16)
                                .null(),
                        )
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Principal::Table)
                    .drop_column(Principal::PreviousMigrationState)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Migration_::Table)
                    .drop_column(Migration_::PreviousRun)
                    .to_owned(),
            )
            .await
    }
}
