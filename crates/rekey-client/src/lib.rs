//! rekey-client: the client side of the migration protocol
//! (`docs/PROTOCOL.md`). [`migrate`] is the one loop every client runs:
//! fetch the package, build and sign the bundle on the blocking pool,
//! submit it, and after a conflict fetch a new package and rebuild. It
//! runs over any [`MigrationApi`]: [`HttpClient`] talks to a `rekey serve`
//! (or to several of one vault, round-robin with failover: [`servers`]);
//! the demo's in-process clients call the engine directly.
//!
//! This crate links rekey-core and an HTTP client, nothing of the server or
//! the database.

pub mod http;
pub mod migrate;
pub mod servers;

pub use http::{ClientError, HttpClient};
pub use migrate::{
    ApiError, MIGRATE_ATTEMPTS, MigrateReport, MigrationApi, RoleConfirmations, confirm_roles,
    conflict_backoff, migrate,
};
