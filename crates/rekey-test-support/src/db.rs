//! One throw-away database per test: a SQLite file in the temporary
//! directory, a fresh PostgreSQL schema, or a fresh MariaDB/MySQL database,
//! dropped when the [`TestDb`] is (also when the test panics).
//!
//! The servers are the ones at `postgres://root@127.0.0.1:5432/test` and
//! `mysql://root@127.0.0.1:3306/test`, or wherever
//! `REKEY_TEST_POSTGRES_URL` / `REKEY_TEST_MYSQL_URL` point. A test that
//! needs one is `#[ignore]`d by default (see the crate docs); when it runs
//! and the server does not answer, it fails naming the address.

use rekey_storage::Vault;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use std::time::Duration;

/// Where a test's vault lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL schema.
    Postgres,
    /// A MariaDB/MySQL database.
    MySql,
}

impl Backend {
    /// Its name, for messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
            Backend::MySql => "MariaDB/MySQL",
        }
    }

    /// The administrator's URL of the server (`None` for SQLite).
    #[must_use]
    pub fn admin_url(self) -> Option<String> {
        let (var, default) = match self {
            Backend::Sqlite => return None,
            Backend::Postgres => (
                "REKEY_TEST_POSTGRES_URL",
                "postgres://root@127.0.0.1:5432/test",
            ),
            Backend::MySql => ("REKEY_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
        };
        Some(std::env::var(var).unwrap_or_else(|_| default.to_owned()))
    }
}

/// A database for one test, dropped with it.
#[derive(Debug)]
pub struct TestDb {
    /// Its backend.
    pub backend: Backend,
    /// The URL of this test's own database, schema or file.
    pub url: String,
    admin_url: String,
    name: String,
}

async fn admin(url: &str) -> Result<DatabaseConnection, String> {
    let mut o = ConnectOptions::new(url.to_owned());
    o.connect_timeout(Duration::from_secs(3))
        .acquire_timeout(Duration::from_secs(10))
        .max_connections(1)
        .sqlx_logging(false);
    Database::connect(o).await.map_err(|e| e.to_string())
}

impl TestDb {
    /// A fresh, empty database. Panics, naming the server, when the
    /// backend's server does not answer.
    pub async fn create(backend: Backend) -> Self {
        let name = crate::unique("t");
        let Some(admin_url) = backend.admin_url() else {
            let path = std::env::temp_dir().join(format!("{name}.db"));
            // An empty file is an empty SQLite database, as a fresh schema
            // is an empty PostgreSQL one: `Vault::connect` opens only what
            // exists.
            std::fs::File::create(&path)
                .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
            return Self {
                backend,
                url: format!("sqlite://{}?mode=rwc", path.display()),
                admin_url: path.display().to_string(),
                name,
            };
        };
        let conn = admin(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "this test needs {} at {} and it does not answer ({e}); start it, \
                 or run the tests without --include-ignored to leave this one out",
                backend.name(),
                rekey_storage::redact_url(&admin_url)
            )
        });
        let url = if backend == Backend::Postgres {
            conn.execute_unprepared(&format!("CREATE SCHEMA {name}"))
                .await
                .expect("create a test schema");
            let sep = if admin_url.contains('?') { '&' } else { '?' };
            format!("{admin_url}{sep}options[search_path]={name}")
        } else {
            conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create a test database");
            with_database(&admin_url, &name)
        };
        let _ = conn.close().await;
        Self {
            backend,
            url,
            admin_url,
            name,
        }
    }

    /// [`TestDb::create`] from synchronous code.
    #[must_use]
    pub fn create_blocking(backend: Backend) -> Self {
        block_on(Self::create(backend))
    }

    /// The vault, schema created.
    pub async fn vault(&self) -> Vault {
        Vault::init(&self.url).await.expect("init the vault")
    }

    /// A plain second connection, as another program would have.
    pub async fn raw(&self) -> DatabaseConnection {
        let mut o = ConnectOptions::new(self.url.clone());
        o.max_connections(1).sqlx_logging(false);
        Database::connect(o).await.expect("raw connection")
    }

    /// The database file, on SQLite.
    #[must_use]
    pub fn sqlite_file(&self) -> Option<&std::path::Path> {
        (self.backend == Backend::Sqlite).then(|| std::path::Path::new(self.admin_url.as_str()))
    }

    /// `table` quoted for this backend, for raw SQL.
    #[must_use]
    pub fn q(&self, table: &str) -> String {
        match self.backend {
            Backend::MySql => format!("`{table}`"),
            _ => format!("\"{table}\""),
        }
    }

    async fn destroy(backend: Backend, admin_url: String, name: String) {
        match backend {
            Backend::Sqlite => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let _ = std::fs::remove_file(format!("{admin_url}{suffix}"));
                }
            }
            Backend::Postgres | Backend::MySql => {
                let Ok(conn) = admin(&admin_url).await else {
                    return;
                };
                let sql = if backend == Backend::Postgres {
                    format!("DROP SCHEMA IF EXISTS {name} CASCADE")
                } else {
                    format!("DROP DATABASE IF EXISTS {name}")
                };
                let _ = conn.execute_unprepared(&sql).await;
                let _ = conn.close().await;
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (backend, admin_url, name) = (
            self.backend,
            std::mem::take(&mut self.admin_url),
            std::mem::take(&mut self.name),
        );
        // On a thread of its own: a drop inside an async test must not
        // block on that test's runtime.
        let _ =
            std::thread::spawn(move || block_on(Self::destroy(backend, admin_url, name))).join();
    }
}

/// Runs a future to completion on a runtime of its own.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime")
        .block_on(f)
}

/// `mysql://u@h:p/old?x` with the database replaced.
fn with_database(url: &str, name: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let host_end = base[start..].find('/').map_or(base.len(), |i| start + i);
    format!("{}/{name}{query}", &base[..host_end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            super::with_database("mysql://root@h:3306/test?ssl=0", "x"),
            "mysql://root@h:3306/x?ssl=0"
        );
        assert_eq!(super::with_database("mysql://h", "x"), "mysql://h/x");
    }
}
