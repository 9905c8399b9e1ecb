//! rekey-test-support: what the test suites of every crate share.
//!
//! - [`db`]: a throw-away database per test on SQLite, PostgreSQL or
//!   MariaDB/MySQL, dropped afterwards;
//! - [`lifecycle`]: the core lifecycle's steps between two phases, for
//!   tests that move a vault's phase by hand;
//! - [`fixtures`]: the fixed RSA keys (tests never generate RSA keys);
//! - [`seeded`]: a small legacy vault with a certificate and its key
//!   directory.
//!
//! # Tests that need a service
//!
//! A test that needs PostgreSQL, MariaDB or Chromium is marked
//! `#[ignore = "needs PostgreSQL (cargo xtask ci runs it)"]` (or the like),
//! so a plain `cargo test` on a machine without the service reports it as
//! *ignored* in libtest's own summary instead of a passing test that did
//! nothing. `cargo xtask ci` (and so `.ci/run`) runs the whole suite with
//! `--include-ignored`: there a missing service fails the test, naming the
//! address it tried.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod db;
pub mod fixtures;
pub mod lifecycle;
pub mod seeded;

/// A name no other test (of this or another process) uses: lower-case
/// letters, digits and `_`, so it also names a schema or database.
#[must_use]
pub fn unique(tag: &str) -> String {
    format!("rekey_{tag}_{}", uuid::Uuid::new_v4().simple())
}
