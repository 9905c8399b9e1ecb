//! Shared by the binary's crash and fault tests: running `rekey`, a demo
//! vault seeded from the fixture key cache on SQLite or a fresh
//! PostgreSQL schema, a seeded RNG, and the ledger of what must not be
//! lost.
#![allow(dead_code, unreachable_pub)]

pub mod ledger;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Users in the demo vaults: with the roles and the 3 services exactly the
/// 16 keys of the fixture key cache (`tests/fixtures/demo-keys-2048.cache`).
pub const USERS: usize = 10;
pub const ROLES: usize = 3;
/// The backup passphrase of the test vaults.
pub const PASSPHRASE: &str = "crash test backup passphrase";

pub fn require_dbs() -> bool {
    std::env::var("REKEY_REQUIRE_DBS").is_ok_and(|v| v == "1")
}

/// A number from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// splitmix64: small, seeded, good enough to pick kill moments.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5eed_5eed_5eed_5eed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A name no other test (of this or another process) uses.
pub fn unique() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// A fresh directory for one test.
pub fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rekey-{tag}-{}", unique()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Where a test vault lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    pub fn name(self) -> &'static str {
        match self {
            Db::Sqlite => "SQLite",
            Db::Postgres => "PostgreSQL",
        }
    }
}

/// A database for one vault: a SQLite file in `dir`, or a fresh
/// PostgreSQL schema (dropped on drop). `None` with a visible "skipped"
/// line when PostgreSQL does not answer (a failure under
/// REKEY_REQUIRE_DBS=1).
pub struct TestDb {
    pub url: String,
    schema: Option<(String, String)>,
}

impl TestDb {
    pub fn create(db: Db, dir: &Path) -> Option<Self> {
        match db {
            Db::Sqlite => Some(Self {
                url: format!("sqlite://{}?mode=rwc", dir.join("vault.db").display()),
                schema: None,
            }),
            Db::Postgres => {
                let base = postgres_base();
                let schema = format!("rekey_crash_{}", unique());
                match block_on(pg_exec(&base, &format!("CREATE SCHEMA {schema}"))) {
                    Ok(()) => Some(Self {
                        url: format!("{base}?options[search_path]={schema}"),
                        schema: Some((base, schema)),
                    }),
                    Err(e) => {
                        assert!(
                            !require_dbs(),
                            "no PostgreSQL at {base} ({e}), and REKEY_REQUIRE_DBS=1 requires it"
                        );
                        eprintln!("skipped: no PostgreSQL at {base} ({e})");
                        None
                    }
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = &self.schema {
            let _ = block_on(pg_exec(
                base,
                &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
            ));
        }
    }
}

pub fn postgres_base() -> String {
    std::env::var("REKEY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

pub async fn pg_exec(url: &str, sql: &str) -> Result<(), sea_orm::DbErr> {
    use sea_orm::ConnectionTrait;
    let mut o = sea_orm::ConnectOptions::new(url.to_owned());
    o.connect_timeout(Duration::from_secs(3))
        .max_connections(1)
        .sqlx_logging(false);
    let conn = sea_orm::Database::connect(o).await?;
    conn.execute_unprepared(sql).await?;
    conn.close().await
}

/// Runs a future to completion on a small runtime of its own (the tests
/// are plain `#[test]`s driving processes).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The `rekey` binary on one vault, run in `dir` (key directory
/// `dir/keys`, credentials `dir/c.json`, key cache copied from the fixture).
#[derive(Clone, Debug)]
pub struct Rekey {
    pub dir: PathBuf,
    pub url: String,
}

impl Rekey {
    pub fn new(dir: &Path, url: &str) -> Self {
        let cache = dir.join("keys.cache");
        if !cache.exists() {
            std::fs::copy(
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/demo-keys-2048.cache"
                ),
                &cache,
            )
            .unwrap();
        }
        Self {
            dir: dir.to_owned(),
            url: url.to_owned(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rekey"));
        c.current_dir(&self.dir)
            .args(["--db", &self.url, "--key-dir", "keys"])
            .args(args)
            .env_remove("REKEY_DATABASE_URL")
            .env_remove("REKEY_KEY_DIR")
            .env_remove("REKEY_PASSWORD")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and asserts exit 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rekey {args:?}: {:?}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Seeds the demo vault (the fixture keys, no RSA generation) with
    /// `rekey demo seed`, then backs up the certificate keys with the
    /// library's `rekey cert backup` at a low scrypt work factor (the
    /// command's own takes seconds); the vault is ready to start.
    pub fn seed(&self, seed: u64) {
        let users = USERS.to_string();
        let roles = ROLES.to_string();
        let seed = seed.to_string();
        self.ok(&[
            "demo",
            "--users",
            &users,
            "--roles",
            &roles,
            "--records",
            "60",
            "--seed",
            &seed,
            "--key-cache",
            "keys.cache",
            "seed",
            "--credentials",
            "c.json",
        ]);
        block_on(async {
            let vault = self.vault().await;
            rekey_preflight::backup_with(
                &vault,
                &self.dir.join("keys"),
                &self.dir.join("certs.age"),
                &rekey_preflight::Passphrase::new(PASSPHRASE.into()),
                &rekey_preflight::BackupOptions {
                    work_factor: Some(10),
                    actor: "test".into(),
                },
            )
            .await
            .unwrap();
            vault.close().await.unwrap();
        });
    }

    pub fn credentials(&self) -> rekey_engine::demo::Credentials {
        rekey_engine::demo::Credentials::load(&self.dir.join("c.json")).unwrap()
    }

    pub fn key_dir(&self) -> rekey_engine::KeyDir {
        rekey_engine::KeyDir::open(self.dir.join("keys")).unwrap()
    }

    pub async fn vault(&self) -> rekey_storage::Vault {
        rekey_storage::Vault::open(&self.url).await.unwrap()
    }
}

/// How a child ended: killed by us, or exited with this status.
#[derive(Debug)]
pub enum End {
    Killed,
    Exited(std::process::ExitStatus, String),
}

/// Waits up to `delay`; kills the child with SIGKILL if it is still
/// running then. Reports whether the kill interrupted it.
pub fn kill_after(mut child: Child, delay: Option<Duration>) -> End {
    use std::os::unix::process::ExitStatusExt;
    let deadline = delay.map(|d| Instant::now() + d);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return End::Exited(status, stderr_of(&mut child));
        }
        match deadline {
            Some(t) if Instant::now() >= t => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                return if status.signal() == Some(9) {
                    End::Killed
                } else {
                    End::Exited(status, stderr_of(&mut child))
                };
            }
            _ => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn stderr_of(child: &mut Child) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
