//! The run's target (`migration.target`): what `rekey start
//! --target-scheme` chose, the kind of every new key pair and the scheme of
//! every grant the run writes. Set by start with the run id, cleared by
//! abort with it. A vault started before this column existed has no
//! target on its row; rekey reads that as `hpke-p256`, the only target
//! there was. Like every step it can run again on a vault that has it
//! (a vault whose version row was lost): the column is added once.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Migration_ {
    #[sea_orm(iden = "migration")]
    Table,
    Target,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.has_column("migration", "target").await? {
            return Ok(());
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Migration_::Table)
                    .add_column(ColumnDef::new(Migration_::Target).string_len(32).null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Migration_::Table)
                    .drop_column(Migration_::Target)
                    .to_owned(),
            )
            .await
    }
}
