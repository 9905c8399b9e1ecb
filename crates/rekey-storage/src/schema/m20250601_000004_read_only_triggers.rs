//! The read-only guard: triggers on record, grant, key_pair and membership
//! that refuse INSERT, UPDATE and DELETE while the phase is one of
//! `server_phase`, `awaiting_certificates`, `user_phase`, `finalizing`,
//! unless the write comes from the migration's own transaction. See the
//! crate documentation for the mechanism per database.

use crate::error::READ_ONLY_MESSAGE;
use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tables the guard protects.
pub(crate) const GUARDED: [&str; 4] = ["record", "grant", "key_pair", "membership"];
const EVENTS: [&str; 3] = ["INSERT", "UPDATE", "DELETE"];
/// The phases in which the vault is read-only.
const PHASES: [&str; 4] = [
    "server_phase",
    "awaiting_certificates",
    "user_phase",
    "finalizing",
];

/// The phases as an SQL list: `('server_phase', …)`.
fn phase_list() -> String {
    let quoted: Vec<String> = PHASES.iter().map(|p| format!("'{p}'")).collect();
    format!("({})", quoted.join(", "))
}

/// In what order a row trigger (SQLite, MySQL) asks its two questions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Guard {
    /// Schema step 4: "is the phase read-only?" first. SQLite tests the
    /// phase with an `IN` list, which it answers by building a temporary
    /// b-tree, once per row written.
    PhaseFirst,
    /// Schema step 6: "is this the migration's own transaction?" first,
    /// so the migration's writes (thousands of rows per bundle) stop
    /// there; the phase is tested with plain comparisons.
    WriterFirst,
}

fn sqlite_when(guard: Guard) -> String {
    let writer = "NOT EXISTS (SELECT 1 FROM migration_session)";
    match guard {
        Guard::PhaseFirst => format!(
            "(SELECT phase FROM migration WHERE id = 1) IN {} AND {writer}",
            phase_list()
        ),
        Guard::WriterFirst => {
            let any: Vec<String> = PHASES.iter().map(|p| format!("phase = '{p}'")).collect();
            format!(
                "{writer} AND EXISTS (SELECT 1 FROM migration WHERE id = 1 AND ({}))",
                any.join(" OR ")
            )
        }
    }
}

fn mysql_if(guard: Guard) -> String {
    let phase = format!(
        "(SELECT phase FROM migration WHERE id = 1) IN {}",
        phase_list()
    );
    let writer = "NOT EXISTS (SELECT 1 FROM migration_session WHERE conn_id = CONNECTION_ID())";
    match guard {
        Guard::PhaseFirst => format!("{phase} AND {writer}"),
        Guard::WriterFirst => format!("{writer} AND {phase}"),
    }
}

/// The CREATE TRIGGER statements of the row triggers (SQLite, MySQL) on
/// the tables of this step.
pub(crate) fn row_triggers(backend: DbBackend, guard: Guard) -> Vec<String> {
    row_triggers_on(backend, guard, &GUARDED)
}

/// The CREATE TRIGGER statements of the row triggers (SQLite, MySQL) on
/// `tables`.
pub(crate) fn row_triggers_on(backend: DbBackend, guard: Guard, tables: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for &table in tables {
        for event in EVENTS {
            let ev = event.to_lowercase();
            out.push(match backend {
                DbBackend::MySql => format!(
                    "CREATE TRIGGER rekey_ro_{table}_{ev} BEFORE {event} ON `{table}` FOR EACH ROW \
                     BEGIN \
                       IF {} THEN \
                         SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{READ_ONLY_MESSAGE}'; \
                       END IF; \
                     END",
                    mysql_if(guard)
                ),
                _ => format!(
                    "CREATE TRIGGER rekey_ro_{table}_{ev} BEFORE {event} ON \"{table}\" \
                     WHEN {} \
                     BEGIN SELECT RAISE(ABORT, '{READ_ONLY_MESSAGE}'); END",
                    sqlite_when(guard)
                ),
            });
        }
    }
    out
}

/// The DROP TRIGGER statements of the row triggers (SQLite, MySQL) of
/// this step.
pub(crate) fn drop_row_triggers() -> Vec<String> {
    drop_row_triggers_on(&GUARDED)
}

/// The DROP TRIGGER statements of the row triggers (SQLite, MySQL) on
/// `tables`.
pub(crate) fn drop_row_triggers_on(tables: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for &table in tables {
        for event in EVENTS {
            out.push(format!(
                "DROP TRIGGER IF EXISTS rekey_ro_{table}_{}",
                event.to_lowercase()
            ));
        }
    }
    out
}

fn postgres_up() -> Vec<String> {
    let phases = phase_list();
    let mut out = vec![format!(
        "CREATE FUNCTION rekey_read_only_guard() RETURNS trigger LANGUAGE plpgsql \
         SET search_path FROM CURRENT AS $guard$ \
         BEGIN \
           IF coalesce(current_setting('rekey.migration_writer', true), '') <> 'on' \
              AND EXISTS (SELECT 1 FROM migration WHERE id = 1 AND phase IN {phases}) THEN \
             RAISE EXCEPTION '{READ_ONLY_MESSAGE}' USING ERRCODE = 'object_not_in_prerequisite_state'; \
           END IF; \
           RETURN NULL; \
         END $guard$"
    )];
    for table in GUARDED {
        out.push(format!(
            "CREATE TRIGGER rekey_ro_{table} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE \
             ON \"{table}\" FOR EACH STATEMENT EXECUTE PROCEDURE rekey_read_only_guard()"
        ));
    }
    out
}

fn down(backend: DbBackend) -> Vec<String> {
    match backend {
        DbBackend::Postgres => {
            let mut out: Vec<String> = GUARDED
                .iter()
                .map(|table| format!("DROP TRIGGER IF EXISTS rekey_ro_{table} ON \"{table}\""))
                .collect();
            out.push("DROP FUNCTION IF EXISTS rekey_read_only_guard()".to_owned());
            out
        }
        _ => drop_row_triggers(),
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements = match manager.get_database_backend() {
            DbBackend::Postgres => postgres_up(),
            backend => row_triggers(backend, Guard::PhaseFirst),
        };
        let conn = manager.get_connection();
        for sql in statements {
            conn.execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        for sql in down(manager.get_database_backend()) {
            conn.execute_unprepared(&sql).await?;
        }
        Ok(())
    }
}
