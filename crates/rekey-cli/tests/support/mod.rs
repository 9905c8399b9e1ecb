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

pub use rekey_test_support::db::{Backend, block_on};

/// The database of one test's vault: a SQLite file in the test's
/// directory, or a throw-away PostgreSQL schema (dropped with this).
#[derive(Debug)]
pub struct VaultDb {
    pub url: String,
    _db: Option<rekey_test_support::db::TestDb>,
}

impl VaultDb {
    pub fn new(backend: Backend, dir: &Path) -> Self {
        match backend {
            Backend::Sqlite => Self {
                url: format!("sqlite://{}?mode=rwc", dir.join("vault.db").display()),
                _db: None,
            },
            other => {
                let db = rekey_test_support::db::TestDb::create_blocking(other);
                Self {
                    url: db.url.clone(),
                    _db: Some(db),
                }
            }
        }
    }
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
            std::fs::copy(rekey_test_support::fixtures::demo_key_cache(), &cache).unwrap();
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
        self.back_up();
    }

    /// Backs up the certificate keys the vault names now (the legacy
    /// ones before a first start, the new ones before a vault migrates
    /// again), at a low scrypt work factor, as `rekey cert backup` does.
    pub fn back_up(&self) {
        block_on(async {
            let vault = self.vault().await;
            rekey_keys::backup_with(
                &vault,
                &self.key_dir(),
                &self.dir.join("certs.age"),
                &rekey_keys::Passphrase::new(PASSPHRASE.into()),
                &rekey_keys::BackupOptions {
                    work_factor: Some(10),
                    actor: "test".into(),
                },
            )
            .await
            .unwrap();
            vault.close().await.unwrap();
        });
    }

    pub fn credentials(&self) -> rekey_demo::Credentials {
        rekey_demo::Credentials::load(&self.dir.join("c.json")).unwrap()
    }

    pub fn key_dir(&self) -> rekey_keys::KeyDir {
        rekey_keys::KeyDir::open(self.dir.join("keys")).unwrap()
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
