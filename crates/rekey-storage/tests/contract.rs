//! The storage contract suite: one body (`contract/suite.rs`), included
//! once per database like rustls' per-provider test modules. SQLite always
//! runs (a temporary file per test); PostgreSQL and MariaDB/MySQL run when
//! reachable (default `postgres://root@127.0.0.1:5432/test` and
//! `mysql://root@127.0.0.1:3306/test`, overridden by
//! `REKEY_TEST_POSTGRES_URL` / `REKEY_TEST_MYSQL_URL`), each test in its own
//! schema or database, dropped afterwards. `REKEY_REQUIRE_DBS=1` turns a
//! missing server into a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    // The suite is included once per database on purpose.
    clippy::duplicate_mod
)]

#[path = "contract/fixtures.rs"]
mod fixtures;
#[path = "contract/harness.rs"]
mod harness;

// The same body three times; each copy finds its database from its module
// name (`contract::sqlite`, …).
#[path = "contract/suite.rs"]
mod mysql;
#[path = "contract/suite.rs"]
mod postgres;
#[path = "contract/suite.rs"]
mod sqlite;

/// Errors that do not depend on a database being there.
mod open_errors {
    use rekey_storage::{Error, Vault};

    #[tokio::test]
    async fn unreachable_url_names_it_without_password() {
        let err = Vault::open("postgres://admin:hunter2@127.0.0.1:1/vault")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("postgres://admin:***@127.0.0.1:1/vault"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(
            msg.contains("Check that the database server is running"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn unsupported_url_is_refused() {
        let err = Vault::open("oracle://x@y/z").await.unwrap_err();
        assert!(matches!(err, Error::UnsupportedUrl { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn missing_sqlite_file_says_how_to_create_it() {
        let path = std::env::temp_dir().join(format!("rekey-missing-{}.db", uuid::Uuid::new_v4()));
        let err = Vault::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
        assert!(err.to_string().contains("mode=rwc"), "{err}");
    }
}
