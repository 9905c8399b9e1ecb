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
const READ_ONLY_PHASES: &str =
    "('server_phase', 'awaiting_certificates', 'user_phase', 'finalizing')";

fn sqlite_up() -> Vec<String> {
    let mut out = Vec::new();
    for table in GUARDED {
        for event in EVENTS {
            out.push(format!(
                "CREATE TRIGGER rekey_ro_{table}_{ev} BEFORE {event} ON \"{table}\" \
                 WHEN (SELECT phase FROM migration WHERE id = 1) IN {READ_ONLY_PHASES} \
                 AND NOT EXISTS (SELECT 1 FROM migration_session) \
                 BEGIN SELECT RAISE(ABORT, '{READ_ONLY_MESSAGE}'); END",
                ev = event.to_lowercase()
            ));
        }
    }
    out
}

fn mysql_up() -> Vec<String> {
    let mut out = Vec::new();
    for table in GUARDED {
        for event in EVENTS {
            out.push(format!(
                "CREATE TRIGGER rekey_ro_{table}_{ev} BEFORE {event} ON `{table}` FOR EACH ROW \
                 BEGIN \
                   IF (SELECT phase FROM migration WHERE id = 1) IN {READ_ONLY_PHASES} \
                      AND NOT EXISTS (SELECT 1 FROM migration_session WHERE conn_id = CONNECTION_ID()) THEN \
                     SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{READ_ONLY_MESSAGE}'; \
                   END IF; \
                 END",
                ev = event.to_lowercase()
            ));
        }
    }
    out
}

fn postgres_up() -> Vec<String> {
    let mut out = vec![format!(
        "CREATE FUNCTION rekey_read_only_guard() RETURNS trigger LANGUAGE plpgsql \
         SET search_path FROM CURRENT AS $guard$ \
         BEGIN \
           IF coalesce(current_setting('rekey.migration_writer', true), '') <> 'on' \
              AND EXISTS (SELECT 1 FROM migration WHERE id = 1 AND phase IN {READ_ONLY_PHASES}) THEN \
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
    let mut out = Vec::new();
    match backend {
        DbBackend::Postgres => {
            for table in GUARDED {
                out.push(format!(
                    "DROP TRIGGER IF EXISTS rekey_ro_{table} ON \"{table}\""
                ));
            }
            out.push("DROP FUNCTION IF EXISTS rekey_read_only_guard()".to_owned());
        }
        _ => {
            for table in GUARDED {
                for event in EVENTS {
                    out.push(format!(
                        "DROP TRIGGER IF EXISTS rekey_ro_{table}_{}",
                        event.to_lowercase()
                    ));
                }
            }
        }
    }
    out
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements = match manager.get_database_backend() {
            DbBackend::Postgres => postgres_up(),
            DbBackend::MySql => mysql_up(),
            _ => sqlite_up(),
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
