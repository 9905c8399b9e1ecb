//! The read-only guard's row triggers (SQLite, MySQL) ask "is this the
//! migration's own transaction?" before "is the phase read-only?".
//!
//! Every row a bundle writes passes a BEFORE INSERT trigger. In step 4's
//! form the trigger first read the phase and tested it against an `IN`
//! list, which SQLite answers by building a temporary b-tree: one per row,
//! about a tenth of the database work of a login. Asked the other way
//! round, the migration's writes stop at the first question, and an
//! application's write outside the migration tests the phase with plain
//! comparisons. What the guard allows and refuses is unchanged.
//! PostgreSQL's statement trigger already asks in this order.

use super::m20250601_000004_read_only_triggers::{Guard, drop_row_triggers, row_triggers};
use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

async fn replace_triggers(manager: &SchemaManager<'_>, guard: Guard) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    if backend == DbBackend::Postgres {
        return Ok(());
    }
    let conn = manager.get_connection();
    for sql in drop_row_triggers()
        .into_iter()
        .chain(row_triggers(backend, guard))
    {
        conn.execute_unprepared(&sql).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace_triggers(manager, Guard::WriterFirst).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace_triggers(manager, Guard::PhaseFirst).await
    }
}
