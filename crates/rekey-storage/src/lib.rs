//! rekey-storage: the vault behind one domain API, with one sea-orm
//! implementation for SQLite, PostgreSQL and MySQL/MariaDB.
//!
//! ```text
//! Vault::init("sqlite://vault.db")           create (file mode 0600) or upgrade the schema
//! Vault::open(url)                            an existing vault of this build; writes nothing
//! vault.pending_grants(user, 1000)            a cursor, page by page
//! vault.apply(&write_set)                     one transaction, batched INSERTs
//! vault.apply_group(&[&a, &b])                several in one (group commit)
//! vault.transition(step, version, &audit)     compare-and-swap on the phase
//! vault.progress()                            migrated vs remaining
//! ```
//!
//! Opening answers with one clear error for a database that does not answer
//! ([`Error::Unreachable`]), an empty one ([`Error::NotInitialised`]), one
//! that holds something else ([`Error::NotAVault`]) and one upgraded by a
//! newer rekey ([`Error::SchemaTooNew`]); each names the URL without its
//! password.
//!
//! # Read-only mode, enforced by the database
//!
//! Triggers on `record`, `grant`, `key_pair` and `membership` refuse
//! INSERT, UPDATE and DELETE while the phase (the one row of `migration`)
//! is `server_phase`, `awaiting_certificates`, `user_phase` or
//! `finalizing`, with the message `rekey: vault is being migrated
//! (read-only)` ([`Error::ReadOnly`] in this crate). Writes made by the
//! migration's own transactions ([`Vault::apply`], [`Vault::abort`],
//! [`Vault::delete_legacy_batch`], [`Vault::delete_legacy`]) pass, by a
//! mechanism per database:
//!
//! - **SQLite**: the migration transaction first inserts a marker row into
//!   `migration_session` and deletes it again just before committing. The
//!   triggers (`BEFORE … WHEN NOT EXISTS (SELECT 1 FROM migration_session)
//!   AND <the phase is one of them>`, `RAISE(ABORT, …)`) let a write
//!   through only if a marker is visible. The marker is asked about first
//!   (schema step 6), so the migration's own rows cost one lookup each.
//!   SQLite has one writer at a time and other connections never see
//!   uncommitted rows, so only the migration's own transaction can see its
//!   marker; a crash rolls the marker back.
//! - **PostgreSQL**: the migration transaction runs `SET LOCAL
//!   rekey.migration_writer = 'on'`, which ends with the transaction. One
//!   statement-level trigger per table (`FOR EACH STATEMENT`, also on
//!   TRUNCATE, so a 100,000-row INSERT costs one check) calls
//!   `rekey_read_only_guard()`, which raises unless
//!   `current_setting('rekey.migration_writer', true) = 'on'`. The
//!   function's `search_path` is fixed at creation, so it always reads its
//!   own schema's phase.
//! - **MySQL/MariaDB**: the migration transaction inserts a marker row
//!   keyed by `CONNECTION_ID()` into `migration_session` and deletes it
//!   before committing; row triggers `SIGNAL SQLSTATE '45000'` unless a
//!   marker for the current connection exists. Uncommitted rows are
//!   invisible to other transactions and the key is the connection, so no
//!   other session can borrow the marker; a session variable was rejected
//!   because a pooled connection could keep it after an error.
//!
//! A program with direct database access can still forge a marker; the
//! guard stops accidents and ordinary writers (another server, a script,
//! the record API), not an attacker who owns the database.
//!
//! # Bulk writes
//!
//! Inserts go in multi-row statements of [`BATCH_ROWS`] rows: applying a
//! 100,000-grant write set is about a hundred INSERT statements in one
//! transaction. Pending grants are read with keyset pagination on the
//! `(recipient_id, legacy, id)` index, never the whole table.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod entity;
pub mod error;
mod schema;
mod vault;

pub use error::{Error, GUARD_MESSAGE, READ_ONLY_MESSAGE, Result, redact_url};
pub use vault::{
    BATCH_ROWS, Backend, ConfirmedBy, FinalizeEvidence, GroupOutcome, MigrationWrite,
    PENDING_IDS_PAGE, PendingGrants, PrincipalMigration, PurgeCounts, RoleConfirmation,
    SchemaStatus, SeedData, SeedReport, Vault,
};
