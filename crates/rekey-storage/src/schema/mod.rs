//! Schema migrations (sea-orm-migration), one file per table group, each
//! with `up` and `down`. Applied versions are recorded in
//! `seaql_migrations`; a version this build does not know means the vault
//! was upgraded by a newer rekey.
#![allow(unreachable_pub, missing_debug_implementations)]

use sea_orm_migration::prelude::*;

mod m20250601_000001_principals_and_keys;
mod m20250601_000002_environment;
mod m20250601_000003_migration_state;
mod m20250601_000004_read_only_triggers;
mod m20261201_000005_grant_legacy_index;
mod m20261201_000006_guard_writer_first;
mod m20261206_000007_guard_the_vault;
mod m20261206_000008_login_verifiers;
mod m20261206_000009_role_confirmations;
mod m20261206_000010_run_target;
mod m20261207_000011_migrate_again;

/// Every schema migration of this build, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250601_000001_principals_and_keys::Migration),
            Box::new(m20250601_000002_environment::Migration),
            Box::new(m20250601_000003_migration_state::Migration),
            Box::new(m20250601_000004_read_only_triggers::Migration),
            Box::new(m20261201_000005_grant_legacy_index::Migration),
            Box::new(m20261201_000006_guard_writer_first::Migration),
            Box::new(m20261206_000007_guard_the_vault::Migration),
            Box::new(m20261206_000008_login_verifiers::Migration),
            Box::new(m20261206_000009_role_confirmations::Migration),
            Box::new(m20261206_000010_run_target::Migration),
            Box::new(m20261207_000011_migrate_again::Migration),
        ]
    }
}

/// The name of the table sea-orm-migration records applied versions in.
pub const VERSIONS_TABLE: &str = "seaql_migrations";

/// A 36-character identifier column (a UUID in text form).
pub(crate) fn id_col<T: IntoIden>(name: T) -> ColumnDef {
    let mut c = ColumnDef::new(name);
    c.string_len(36).not_null();
    c
}

/// A short text column.
pub(crate) fn text_col<T: IntoIden>(name: T, len: u32) -> ColumnDef {
    let mut c = ColumnDef::new(name);
    c.string_len(len).not_null();
    c
}

/// A nullable timestamp column (milliseconds since the epoch).
pub(crate) fn time_col<T: IntoIden>(name: T) -> ColumnDef {
    let mut c = ColumnDef::new(name);
    c.big_integer().null();
    c
}
