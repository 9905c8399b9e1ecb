//! An index on grant (legacy, id), for finalize.
//!
//! Finalize deletes the legacy grants in id order, a batch per transaction.
//! Without this index each batch walks the primary key past every grant the
//! migration wrote: new grant ids are time-ordered (UUIDv7, `019…` as
//! text), so most legacy ids sort after all of them, and a vault of a
//! million grants read the new rows once per batch (finalize went
//! quadratic). With it, each batch reads only the rows it deletes. The cost
//! while users migrate is one append per new grant, at the right-hand end
//! of the `legacy = false` range (time-ordered ids).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Grant {
    Table,
    Id,
    Legacy,
}

/// The index's name.
const NAME: &str = "grant_legacy_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NAME)
                    .table(Grant::Table)
                    .col(Grant::Legacy)
                    .col(Grant::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(NAME).table(Grant::Table).to_owned())
            .await
    }
}
