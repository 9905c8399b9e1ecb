//! The guard reaches every table a migration depends on, and TRUNCATE.
//!
//! - `principal` and `non_migratable` get the read-only guard of step 4
//!   (step 6's form): while the vault migrates only the migration's own
//!   transactions change a principal's migration state or a non-migratable
//!   grant. Before, a raw `UPDATE principal SET migration_state =
//!   'migrated'` went through, and finalize trusted it.
//! - The `migration` row (the phase, the run) is written by the
//!   migration's own transactions only, in every phase: a raw `UPDATE
//!   migration SET phase = 'legacy'` no longer turns read-only mode off.
//! - MariaDB/MySQL fire no row trigger on TRUNCATE. InnoDB refuses to
//!   truncate a table another table references by foreign key, so an
//!   empty table, `rekey_truncate_guard`, references every guarded table
//!   (an empty child costs a parent's deletes one index probe). A session
//!   that turns `foreign_key_checks` off can still truncate: that takes
//!   the database administrator, who can also forge the writer marker.
//!   PostgreSQL's statement triggers already fire on TRUNCATE; SQLite has
//!   none (a `DELETE` without `WHERE` fires the row triggers).
//! - An index on `grant (recipient_id, subject_id)`: finalize asks, for
//!   every legacy grant, whether its recipient holds a replacement.

use super::m20250601_000004_read_only_triggers::{Guard, drop_row_triggers_on, row_triggers_on};
use crate::error::GUARD_MESSAGE;
use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tables that join the read-only guard in this step.
const NEWLY_GUARDED: [&str; 2] = ["principal", "non_migratable"];
const EVENTS: [&str; 3] = ["INSERT", "UPDATE", "DELETE"];
/// Every table a TRUNCATE must not empty (MariaDB/MySQL), with the column
/// the guard table's foreign key references.
const TRUNCATE_GUARDED: [(&str, &str); 7] = [
    ("record", "id"),
    ("grant", "id"),
    ("key_pair", "id"),
    ("principal", "id"),
    ("certificate", "key_pair_id"),
    ("non_migratable", "grant_id"),
    ("migration", "id"),
];
const REPLACEMENT_INDEX: &str = "grant_recipient_subject";

/// The triggers that keep the `migration` row to the migration's own
/// transactions (SQLite, MySQL).
fn migration_row_triggers(backend: DbBackend) -> Vec<String> {
    EVENTS
        .iter()
        .map(|event| {
            let ev = event.to_lowercase();
            match backend {
                DbBackend::MySql => format!(
                    "CREATE TRIGGER rekey_guard_migration_{ev} BEFORE {event} ON `migration` \
                     FOR EACH ROW BEGIN \
                       IF NOT EXISTS (SELECT 1 FROM migration_session WHERE conn_id = CONNECTION_ID()) THEN \
                         SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{GUARD_MESSAGE}'; \
                       END IF; \
                     END"
                ),
                _ => format!(
                    "CREATE TRIGGER rekey_guard_migration_{ev} BEFORE {event} ON \"migration\" \
                     WHEN NOT EXISTS (SELECT 1 FROM migration_session) \
                     BEGIN SELECT RAISE(ABORT, '{GUARD_MESSAGE}'); END"
                ),
            }
        })
        .collect()
}

fn drop_migration_row_triggers() -> Vec<String> {
    EVENTS
        .iter()
        .map(|e| {
            format!(
                "DROP TRIGGER IF EXISTS rekey_guard_migration_{}",
                e.to_lowercase()
            )
        })
        .collect()
}

/// The guard table whose foreign keys make InnoDB refuse TRUNCATE.
fn truncate_guard_up() -> Vec<String> {
    let mut columns = Vec::new();
    let mut keys = Vec::new();
    for (table, column) in TRUNCATE_GUARDED {
        let name = format!("{table}_ref");
        let kind = if table == "migration" {
            "INT"
        } else {
            "VARCHAR(36)"
        };
        columns.push(format!("`{name}` {kind} NULL"));
        keys.push(format!(
            "CONSTRAINT `rekey_truncate_guard_{table}` FOREIGN KEY (`{name}`) REFERENCES `{table}` (`{column}`)"
        ));
    }
    vec![format!(
        "CREATE TABLE IF NOT EXISTS rekey_truncate_guard ({}, {}) ENGINE=InnoDB",
        columns.join(", "),
        keys.join(", ")
    )]
}

fn postgres_up() -> Vec<String> {
    let mut out: Vec<String> = NEWLY_GUARDED
        .iter()
        .map(|table| {
            format!(
                "CREATE TRIGGER rekey_ro_{table} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE \
                 ON \"{table}\" FOR EACH STATEMENT EXECUTE PROCEDURE rekey_read_only_guard()"
            )
        })
        .collect();
    out.push(format!(
        "CREATE OR REPLACE FUNCTION rekey_migration_guard() RETURNS trigger LANGUAGE plpgsql AS $guard$ \
         BEGIN \
           IF coalesce(current_setting('rekey.migration_writer', true), '') <> 'on' THEN \
             RAISE EXCEPTION '{GUARD_MESSAGE}' USING ERRCODE = 'object_not_in_prerequisite_state'; \
           END IF; \
           RETURN NULL; \
         END $guard$"
    ));
    out.push(
        "CREATE TRIGGER rekey_guard_migration BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE \
         ON \"migration\" FOR EACH STATEMENT EXECUTE PROCEDURE rekey_migration_guard()"
            .to_owned(),
    );
    out
}

fn postgres_down() -> Vec<String> {
    let mut out: Vec<String> = NEWLY_GUARDED
        .iter()
        .map(|table| format!("DROP TRIGGER IF EXISTS rekey_ro_{table} ON \"{table}\""))
        .collect();
    out.push("DROP TRIGGER IF EXISTS rekey_guard_migration ON \"migration\"".to_owned());
    out.push("DROP FUNCTION IF EXISTS rekey_migration_guard()".to_owned());
    out
}

/// Each statement is safe to run twice: a vault whose version table lost
/// this step's row (restored from an older backup of that table, say) is
/// upgraded again without an error.
fn up_statements(backend: DbBackend) -> Vec<String> {
    let triggers = match backend {
        DbBackend::Postgres => postgres_down()
            .into_iter()
            .filter(|s| s.starts_with("DROP TRIGGER"))
            .collect(),
        _ => drop_row_triggers_on(&NEWLY_GUARDED)
            .into_iter()
            .chain(drop_migration_row_triggers())
            .collect::<Vec<_>>(),
    };
    triggers
        .into_iter()
        .chain(create_statements(backend))
        .collect()
}

fn create_statements(backend: DbBackend) -> Vec<String> {
    match backend {
        DbBackend::Postgres => postgres_up(),
        DbBackend::MySql => row_triggers_on(backend, Guard::WriterFirst, &NEWLY_GUARDED)
            .into_iter()
            .chain(migration_row_triggers(backend))
            .chain(truncate_guard_up())
            .collect(),
        _ => row_triggers_on(backend, Guard::WriterFirst, &NEWLY_GUARDED)
            .into_iter()
            .chain(migration_row_triggers(backend))
            .collect(),
    }
}

fn down_statements(backend: DbBackend) -> Vec<String> {
    match backend {
        DbBackend::Postgres => postgres_down(),
        DbBackend::MySql => std::iter::once("DROP TABLE IF EXISTS rekey_truncate_guard".to_owned())
            .chain(drop_row_triggers_on(&NEWLY_GUARDED))
            .chain(drop_migration_row_triggers())
            .collect(),
        _ => drop_row_triggers_on(&NEWLY_GUARDED)
            .into_iter()
            .chain(drop_migration_row_triggers())
            .collect(),
    }
}

#[derive(DeriveIden)]
enum Grant {
    Table,
    RecipientId,
    SubjectId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(REPLACEMENT_INDEX)
                    .table(Grant::Table)
                    .col(Grant::RecipientId)
                    .col(Grant::SubjectId)
                    .to_owned(),
            )
            .await?;
        let conn = manager.get_connection();
        for sql in up_statements(manager.get_database_backend()) {
            conn.execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        for sql in down_statements(manager.get_database_backend()) {
            conn.execute_unprepared(&sql).await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name(REPLACEMENT_INDEX)
                    .table(Grant::Table)
                    .to_owned(),
            )
            .await
    }
}
