//! One throw-away database per test, on each backend.

use rekey_storage::Vault;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use std::future::Future;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
    MySql,
}

impl Db {
    /// The database a copy of the suite runs on, from its module path.
    pub fn from_module(path: &str) -> Self {
        match path.rsplit("::").next() {
            Some("postgres") => Db::Postgres,
            Some("mysql") => Db::MySql,
            _ => Db::Sqlite,
        }
    }
}

#[derive(Clone, Debug)]
pub struct TestDb {
    pub backend: Db,
    /// The URL of this test's own database/schema.
    pub url: String,
    admin_url: String,
    name: String,
}

fn require_dbs() -> bool {
    std::env::var("REKEY_REQUIRE_DBS").is_ok_and(|v| v == "1")
}

async fn admin(url: &str) -> Option<DatabaseConnection> {
    let mut o = ConnectOptions::new(url.to_owned());
    o.connect_timeout(Duration::from_secs(3))
        .acquire_timeout(Duration::from_secs(10))
        .max_connections(1)
        .sqlx_logging(false);
    Database::connect(o).await.ok()
}

impl TestDb {
    /// A fresh, empty database for one test, or `None` (with a visible
    /// "skipped" line) when the server is not there.
    pub async fn create(backend: Db) -> Option<Self> {
        let name = format!("rekey_t_{}", uuid::Uuid::new_v4().simple());
        match backend {
            Db::Sqlite => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                Some(Self {
                    backend,
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    admin_url: path.display().to_string(),
                    name,
                })
            }
            Db::Postgres | Db::MySql => {
                let (var, default, what, addr) = if backend == Db::Postgres {
                    (
                        "REKEY_TEST_POSTGRES_URL",
                        "postgres://root@127.0.0.1:5432/test",
                        "PostgreSQL",
                        "127.0.0.1:5432",
                    )
                } else {
                    (
                        "REKEY_TEST_MYSQL_URL",
                        "mysql://root@127.0.0.1:3306/test",
                        "MariaDB/MySQL",
                        "127.0.0.1:3306",
                    )
                };
                let admin_url = std::env::var(var).unwrap_or_else(|_| default.to_owned());
                let Some(conn) = admin(&admin_url).await else {
                    let at = if std::env::var(var).is_ok() {
                        rekey_storage::redact_url(&admin_url)
                    } else {
                        addr.to_owned()
                    };
                    assert!(
                        !require_dbs(),
                        "no {what} at {at}, and REKEY_REQUIRE_DBS=1 requires it"
                    );
                    eprintln!("skipped: no {what} at {at}");
                    return None;
                };
                let url = if backend == Db::Postgres {
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
                Some(Self {
                    backend,
                    url,
                    admin_url,
                    name,
                })
            }
        }
    }

    /// Runs a test body on this database, then drops the database even if
    /// the body panicked.
    pub async fn run<F, Fut>(self, body: F)
    where
        F: FnOnce(TestDb) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let outcome = tokio::spawn(body(self.clone())).await;
        self.destroy().await;
        if let Err(e) = outcome {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
            panic!("test body failed: {e}");
        }
    }

    async fn destroy(&self) {
        match self.backend {
            Db::Sqlite => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", self.admin_url));
                }
            }
            Db::Postgres => {
                if let Some(conn) = admin(&self.admin_url).await {
                    let _ = conn
                        .execute_unprepared(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
                        .await;
                    let _ = conn.close().await;
                }
            }
            Db::MySql => {
                if let Some(conn) = admin(&self.admin_url).await {
                    let _ = conn
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {}", self.name))
                        .await;
                    let _ = conn.close().await;
                }
            }
        }
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

    /// `"grant"` quoted for this backend, for raw SQL.
    pub fn q(&self, table: &str) -> String {
        match self.backend {
            Db::MySql => format!("`{table}`"),
            _ => format!("\"{table}\""),
        }
    }
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
