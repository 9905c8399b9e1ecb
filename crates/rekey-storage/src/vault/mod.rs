//! The vault: opening a database, and the domain operations on it.
//!
//! Every method speaks the domain (`pending_grants`, `apply`, `transition`,
//! `progress`); SQL and sea-orm stay inside this module tree.

mod auth;
mod confirm;
mod convert;
mod evidence;
mod facts;
mod lifecycle;
mod purge;
mod queries;
mod read;
mod seed;
mod sql;
mod write_set;

pub use confirm::{ConfirmedBy, RoleConfirmation};
pub use evidence::FinalizeEvidence;
pub use purge::PurgeCounts;
pub use read::{PENDING_IDS_PAGE, PendingGrants};
pub use seed::{SeedData, SeedReport};
pub use write_set::{GroupOutcome, MigrationWrite, PrincipalMigration};

use crate::error::{Error, Result, db, redact_url};
use crate::schema::{Migrator, VERSIONS_TABLE};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    TransactionTrait,
};
use sea_orm_migration::{MigratorTrait, SchemaManager};
use std::sync::Arc;
use std::time::Duration;

/// Rows per multi-row INSERT. Every backend accepts this many bind
/// parameters for our widest table (grant: 9 columns).
pub const BATCH_ROWS: usize = 1000;

/// Which database engine a vault lives in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite, a local file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
}

/// Where a database's schema stands relative to this build.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum SchemaStatus {
    /// No tables at all: `init` creates the vault.
    Empty,
    /// The schema of this build.
    Current,
    /// An older rekey schema; `init` upgrades it.
    Behind {
        /// Schema migrations not applied yet.
        pending: usize,
    },
    /// Upgraded by a newer rekey: this build must not touch it.
    Newer {
        /// Applied schema migrations this build does not know.
        unknown: Vec<String>,
    },
    /// Tables that are not a rekey vault.
    Foreign {
        /// What gave it away.
        reason: String,
    },
}

/// An open vault. Cheap to clone (a connection pool).
#[derive(Clone, Debug)]
pub struct Vault {
    db: DatabaseConnection,
    backend: Backend,
    url: String,
    /// SQLite: this process's writers take turns here before they ask the
    /// file for its write lock (see [`Vault::write_turn`]).
    writers: Option<Arc<tokio::sync::Mutex<()>>>,
}

/// How long a SQLite writer waits for another to finish before it fails
/// as "locked": a 100,000-grant write set takes seconds.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// A writer's turn among this process's writers of a SQLite vault, held
/// until its transaction ends (`None` on the other backends: their row
/// locks let writers run side by side).
pub(crate) type WriteTurn = Option<tokio::sync::OwnedMutexGuard<()>>;

impl Vault {
    /// Connects to an existing database without looking at its schema and
    /// without writing to it: a SQLite file must exist (whatever `mode` the
    /// URL asks for) and keeps its journal mode.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, false).await
    }

    /// [`Vault::connect`], or with `create`: a missing SQLite file is
    /// created, readable by its owner only, and put in WAL mode.
    async fn connect_with(url: &str, create: bool) -> Result<Self> {
        let shown = redact_url(url);
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Backend::MySql
        } else {
            return Err(Error::UnsupportedUrl { url: shown });
        };
        let url = if let Some(rest) = url.strip_prefix("mariadb://") {
            format!("mysql://{rest}")
        } else {
            url.to_owned()
        };
        if create && backend == Backend::Sqlite {
            create_owner_only(&url, &shown)?;
        }
        let mut options = ConnectOptions::new(url);
        options
            .connect_timeout(Duration::from_secs(5))
            // Also how long an unreachable server is retried before the
            // "could not connect" error: keep it short.
            .acquire_timeout(Duration::from_secs(5))
            .max_connections(8)
            .sqlx_logging(false);
        if backend == Backend::Sqlite {
            // WAL lets status reads run beside a long migration write (it
            // is set once, by `init`, and kept by the file); a writer waits
            // up to a minute for another (a 100,000-grant write set takes
            // seconds) instead of failing as "locked".
            options.map_sqlx_sqlite_opts(move |o| {
                let o = o.create_if_missing(create);
                let o = if create {
                    o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                } else {
                    o
                };
                o.busy_timeout(SQLITE_BUSY_TIMEOUT)
                    // Statement journals (a write that may need a partial
                    // rollback) stay in memory instead of a temporary file
                    // opened and closed per transaction.
                    .pragma("temp_store", "memory")
                    // sqlx's worker thread hands rows over a bounded
                    // channel (50 by default): a 1,000-row page then
                    // stalls the worker twenty times. One page fits.
                    .row_buffer_size(1024)
            });
        }
        let db = Database::connect(options)
            .await
            .map_err(|e| Error::Unreachable {
                url: shown.clone(),
                source: Box::new(e),
            })?;
        Ok(Self {
            db,
            backend,
            url: shown,
            writers: (backend == Backend::Sqlite).then(Arc::default),
        })
    }

    /// Opens an existing vault: the database must answer and hold the
    /// schema of this build.
    pub async fn open(url: &str) -> Result<Self> {
        let vault = Self::connect(url).await?;
        match vault.schema_status().await? {
            SchemaStatus::Current => Ok(vault),
            status => Err(vault.status_error(status)),
        }
    }

    /// Opens a vault, creating its schema in an empty database (and a
    /// missing SQLite file, mode 0600) or upgrading an older one. Refuses databases that are not rekey vaults and vaults
    /// from a newer rekey.
    pub async fn init(url: &str) -> Result<Self> {
        let vault = Self::connect_with(url, true).await?;
        match vault.schema_status().await? {
            SchemaStatus::Empty | SchemaStatus::Behind { .. } | SchemaStatus::Current => {
                Migrator::up(&vault.db, None)
                    .await
                    .map_err(db("create the vault schema"))?;
                Ok(vault)
            }
            status => Err(vault.status_error(status)),
        }
    }

    fn status_error(&self, status: SchemaStatus) -> Error {
        let url = self.url.clone();
        match status {
            SchemaStatus::Empty => Error::NotInitialised { url },
            SchemaStatus::Behind { pending } => Error::SchemaOutdated { url, pending },
            SchemaStatus::Newer { unknown } => Error::SchemaTooNew {
                url,
                unknown: unknown.join(", "),
            },
            SchemaStatus::Foreign { reason } => Error::NotAVault { url, reason },
            SchemaStatus::Current => Error::NotAVault {
                url,
                reason: "unexpected schema state".to_owned(),
            },
        }
    }

    /// Where the database's schema stands relative to this build.
    pub async fn schema_status(&self) -> Result<SchemaStatus> {
        let manager = SchemaManager::new(&self.db);
        let has_history = manager
            .has_table(VERSIONS_TABLE)
            .await
            .map_err(db("read the schema history"))?;
        if !has_history {
            let tables = self.table_count().await?;
            return Ok(if tables == 0 {
                SchemaStatus::Empty
            } else {
                SchemaStatus::Foreign {
                    reason: format!("it holds {tables} tables but no rekey schema history"),
                }
            });
        }
        let rows = self
            .db
            .query_all_raw(sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                format!("SELECT version FROM {VERSIONS_TABLE}"),
            ))
            .await
            .map_err(db("read the schema history"))?;
        let mut applied = Vec::with_capacity(rows.len());
        for row in rows {
            let v: String = row
                .try_get_by_index(0)
                .map_err(db("read the schema history"))?;
            applied.push(v);
        }
        let known: Vec<String> = Migrator::migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        let unknown: Vec<String> = applied
            .iter()
            .filter(|v| !known.contains(v))
            .cloned()
            .collect();
        let first_known = known.first().map(String::as_str).unwrap_or_default();
        if applied.is_empty() {
            let tables = self.table_count().await?;
            // Only the history table itself: an interrupted first init.
            return Ok(if tables <= 1 {
                SchemaStatus::Empty
            } else {
                SchemaStatus::Foreign {
                    reason: "its schema history is empty".to_owned(),
                }
            });
        }
        if !applied.iter().any(|v| v == first_known) {
            return Ok(SchemaStatus::Foreign {
                reason: "its schema history belongs to another application".to_owned(),
            });
        }
        if !unknown.is_empty() {
            return Ok(SchemaStatus::Newer { unknown });
        }
        let pending = known.iter().filter(|k| !applied.contains(k)).count();
        Ok(if pending == 0 {
            SchemaStatus::Current
        } else {
            SchemaStatus::Behind { pending }
        })
    }

    async fn table_count(&self) -> Result<i64> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()"
            }
            Backend::MySql => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()"
            }
        };
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                sql,
            ))
            .await
            .map_err(db("list the database's tables"))?;
        match row {
            Some(row) => row
                .try_get_by_index::<i64>(0)
                .map_err(db("list the database's tables")),
            None => Ok(0),
        }
    }

    /// Removes the whole rekey schema (every table, trigger and row).
    /// Destructive: for tests and for throwing away a demo vault.
    pub async fn drop_schema(&self) -> Result<()> {
        Migrator::down(&self.db, None)
            .await
            .map_err(db("remove the vault schema"))
    }

    /// The database engine.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL the vault was opened with, password removed.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes the connection pool.
    pub async fn close(self) -> Result<()> {
        self.db.close().await.map_err(db("close the vault"))
    }

    /// Begins a transaction of the migration itself: the read-only triggers
    /// let its writes through (see the crate docs for the mechanism).
    async fn begin_migration_txn(&self) -> Result<(DatabaseTransaction, WriteTurn)> {
        self.begin_migration_txn_after(None).await
    }

    /// Waits for this process's turn to write a SQLite vault (nothing on
    /// the other backends). SQLite has one write lock per file, and a
    /// connection that finds it taken polls: its busy handler sleeps 1, 2,
    /// 5, 10, 15, 20, 25 ms and so on between tries, so a writer often
    /// sleeps on after the lock came free. Measured on a 4-client
    /// `login-all` of the 1,000-user demo vault: 2,325 such sleeps, 10 s in
    /// all. Writers of one process queue here instead and start the moment
    /// the one before them ends; the file's lock (and its busy timeout)
    /// still orders them against other processes. Taken before a pooled
    /// connection, so waiting writers hold none. A writer that waited the
    /// busy timeout goes on without its turn and meets SQLite's own wait
    /// and its "locked" error, as it would have without the queue.
    pub(crate) async fn write_turn(&self) -> WriteTurn {
        let writers = self.writers.clone()?;
        tokio::time::timeout(SQLITE_BUSY_TIMEOUT, writers.lock_owned())
            .await
            .ok()
    }

    /// [`Self::begin_migration_txn`], running `first` (a connection
    /// setting such as a `PRAGMA`) before the transaction writes anything:
    /// SQLite applies some settings only to journals opened after them.
    async fn begin_migration_txn_after(
        &self,
        first: Option<&str>,
    ) -> Result<(DatabaseTransaction, WriteTurn)> {
        let turn = self.write_turn().await;
        let txn = self
            .db
            .begin()
            .await
            .map_err(db("begin a migration transaction"))?;
        if let Some(sql) = first {
            txn.execute_unprepared(sql)
                .await
                .map_err(db("prepare the migration transaction"))?;
        }
        let marker = match self.backend {
            Backend::Sqlite => "INSERT INTO migration_session (conn_id) VALUES (0)",
            Backend::Postgres => "SET LOCAL rekey.migration_writer = 'on'",
            Backend::MySql => "INSERT INTO migration_session (conn_id) VALUES (CONNECTION_ID())",
        };
        txn.execute_unprepared(marker)
            .await
            .map_err(db("mark the migration transaction"))?;
        Ok((txn, turn))
    }

    /// On SQLite, takes the database's write lock at the start of a
    /// transaction that reads before it writes. Otherwise its first write
    /// must upgrade a read snapshot, and when another connection committed
    /// in between (a server's heartbeat) SQLite refuses at once with
    /// `SQLITE_BUSY`, without waiting the busy timeout: seen as a
    /// `500` on `POST /v1/admin/users/{name}/purge` under load. A write
    /// statement that matches no row takes the lock like any write.
    pub(crate) async fn take_write_lock(&self, txn: &DatabaseTransaction) -> Result<()> {
        if self.backend == Backend::Sqlite {
            txn.execute_unprepared("DELETE FROM migration_session WHERE 0")
                .await
                .map_err(db("take the write lock"))?;
        }
        Ok(())
    }

    /// Removes the writer marker and commits.
    async fn commit_migration_txn(&self, txn: DatabaseTransaction) -> Result<()> {
        let unmark = match self.backend {
            Backend::Sqlite => Some("DELETE FROM migration_session"),
            Backend::Postgres => None,
            Backend::MySql => Some("DELETE FROM migration_session WHERE conn_id = CONNECTION_ID()"),
        };
        if let Some(sql) = unmark {
            txn.execute_unprepared(sql)
                .await
                .map_err(db("unmark the migration transaction"))?;
        }
        txn.commit()
            .await
            .map_err(db("commit the migration transaction"))
    }

    /// `SELECT … FOR UPDATE` where the backend has it (SQLite holds the
    /// database write lock for the whole transaction instead).
    fn lock_suffix(&self, shared: bool) -> &'static str {
        match (self.backend, shared) {
            (Backend::Sqlite, _) => "",
            (Backend::Postgres, true) => " FOR SHARE",
            (Backend::MySql, true) => " LOCK IN SHARE MODE",
            (_, false) => " FOR UPDATE",
        }
    }

    fn db_backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }
}

/// Creates the SQLite file a URL names, if missing, readable and writable
/// by its owner only (the vault holds wrapped keys and the session key);
/// SQLite gives its `-wal` and `-shm` files the same mode.
fn create_owner_only(url: &str, shown: &str) -> Result<()> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || std::path::Path::new(path).exists() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Unreachable {
            url: shown.to_owned(),
            source: Box::new(e),
        }),
    }
}
