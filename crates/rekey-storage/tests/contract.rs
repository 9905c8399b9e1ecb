//! The storage contract suite: one body (`contract/suite.rs`), included
//! once per database like rustls' per-provider test modules, each test on
//! a throw-away database of its own (`rekey_test_support::db`).
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

#[path = "contract/fixtures.rs"]
mod fixtures;

// The same body three times, each with its own `contract_test!`: SQLite
// always runs; PostgreSQL and MariaDB are `#[ignore]`d unless asked for
// (`cargo test -- --include-ignored`, as `cargo xtask ci` does), so a run
// without them reports them as ignored rather than passing.

mod sqlite {
    macro_rules! contract_test {
        ($name:ident, |$t:ident| $body:block) => {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let $t = TestDb::create(Backend::Sqlite).await;
                $body
            }
        };
    }
    include!("contract/suite.rs");
}

mod postgres {
    macro_rules! contract_test {
        ($name:ident, |$t:ident| $body:block) => {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs PostgreSQL (cargo xtask ci runs it)"]
            async fn $name() {
                let $t = TestDb::create(Backend::Postgres).await;
                $body
            }
        };
    }
    include!("contract/suite.rs");
}

mod mysql {
    macro_rules! contract_test {
        ($name:ident, |$t:ident| $body:block) => {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs MariaDB (cargo xtask ci runs it)"]
            async fn $name() {
                let $t = TestDb::create(Backend::MySql).await;
                $body
            }
        };
    }
    include!("contract/suite.rs");
}

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
        // Opening never creates the file; the message says what does.
        assert!(err.to_string().contains("rekey init"), "{err}");
        assert!(!path.exists(), "opening created {}", path.display());
    }
}
