//! Simulated clients: a demo user logs in with its password and migrates,
//! through rekey-client's one migration loop, either in-process (the
//! engine on the vault's database) or over HTTP (a `rekey serve`, or
//! several of one vault: requests take them in turn and move on from one
//! that does not answer, `rekey_client::servers`).

use crate::credentials::{Credentials, DemoUser};
use crate::error::DemoError;
use crate::password::{KdfParams, master_secret};
use rekey_client::{HttpClient, MigrateReport, MigrationApi, migrate};
use rekey_core::auth::LoginAuthenticator;
use rekey_core::bundle::{BuildOptions, CheckError, MigrationPackage};
use rekey_core::confirm::{Receipt, RoleCheck};
use rekey_core::model::{KeyCustody, PrincipalKind};
use rekey_core::report::ApplyReport;
use rekey_core::{PrincipalId, VaultId};
use rekey_engine::{Engine, EngineError};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// The engine as a transport: package and submit without HTTP.
#[derive(Debug)]
pub struct InProcess<'a>(pub &'a Engine);

impl MigrationApi for InProcess<'_> {
    type Error = DemoError;

    async fn package(&self, principal: PrincipalId) -> Result<MigrationPackage, DemoError> {
        Ok(self.0.package(principal).await?)
    }

    async fn submit(
        &self,
        principal: PrincipalId,
        bundle: Vec<u8>,
    ) -> Result<ApplyReport, DemoError> {
        Ok(self.0.submit(principal, &bundle).await?)
    }

    async fn role_checks(&self, principal: PrincipalId) -> Result<Vec<RoleCheck>, DemoError> {
        Ok(self.0.role_checks(principal).await?)
    }

    async fn confirm(&self, principal: PrincipalId, receipt: Receipt) -> Result<(), DemoError> {
        Ok(self.0.confirm_role(principal, &receipt).await?)
    }
}

/// Where the simulated clients send their bundles.
#[derive(Debug, Clone)]
pub enum Via {
    /// Straight into the vault (the engine on its database).
    Vault(Engine),
    /// Through a `rekey serve` at this URL.
    Server(String),
    /// Through several `rekey serve` of one vault at these URLs: every
    /// request goes to the next server in turn (a login's session, package
    /// and bundle usually each to another one), and a request a server
    /// does not answer (connection refused or reset, 502/503/504) moves on
    /// to the next at once; the client pauses only when none answered (see
    /// `rekey_client::servers`). One URL is [`Via::Server`].
    Servers(Vec<String>),
}

/// A [`Via`] made ready for many logins: one HTTP client (its connections
/// and its servers' turn) shared by all.
#[derive(Debug, Clone)]
enum Transport {
    Vault(Engine),
    Http(HttpClient),
}

impl Transport {
    fn of(via: Via) -> Result<Self, DemoError> {
        Ok(match via {
            Via::Vault(engine) => Transport::Vault(engine),
            Via::Server(url) => Transport::Http(HttpClient::new(&url)?),
            Via::Servers(urls) => Transport::Http(HttpClient::with_servers(&urls)?),
        })
    }
}

/// Reports `(done, total)`.
pub type Progress = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// Logs the demo user `name` in and migrates it (and the roles it is the
/// first member of to log in), through `via`. `threads` caps the build's
/// RSA threads (`None`: every core); `progress` reports the legacy unwraps.
pub async fn login(
    via: &Via,
    vault: VaultId,
    name: &str,
    user: &DemoUser,
    threads: Option<usize>,
    progress: Progress,
) -> Result<MigrateReport, DemoError> {
    let transport = Transport::of(via.clone())?;
    login_with(&transport, vault, name, user, threads, progress).await
}

async fn login_with(
    transport: &Transport,
    vault: VaultId,
    name: &str,
    user: &DemoUser,
    threads: Option<usize>,
    progress: Progress,
) -> Result<MigrateReport, DemoError> {
    match transport {
        Transport::Vault(engine) => {
            login_in_process(engine, name, &user.password, threads, progress).await
        }
        Transport::Http(client) => {
            login_through(client, vault, user.id, &user.password, threads, progress).await
        }
    }
}

/// Logs the user `name` in with `password` against the engine directly.
pub async fn login_in_process(
    engine: &Engine,
    name: &str,
    password: &str,
    threads: Option<usize>,
    progress: Progress,
) -> Result<MigrateReport, DemoError> {
    // The same refusals a vault's login would give, before the password
    // hash.
    let p = engine
        .principal_by_name(name)
        .await?
        .filter(|p| p.kind == PrincipalKind::User)
        .ok_or_else(|| DemoError::UnknownUser(name.to_owned()))?;
    if p.custody != KeyCustody::E2ee {
        return Err(DemoError::NotE2ee(name.to_owned()));
    }
    let vault = engine.vault_id().await?;
    let kdf = match engine.client_kdf().await? {
        Some(json) => KdfParams::from_json(&json)?,
        None => KdfParams::RECOMMENDED,
    };
    let master = derive(password, vault, p.id, kdf).await?;
    migrate(&InProcess(engine), p.id, master, options(threads), progress).await
}

/// Logs the user `id` in with `password` through the `rekey serve` at
/// `url`, as a real client does: the vault's KDF parameters, the master
/// secret, a session opened with the login authenticator, then the
/// migration. Packages of any vault but `vault` are refused.
pub async fn login_over_http(
    url: &str,
    vault: VaultId,
    id: PrincipalId,
    password: &str,
    threads: Option<usize>,
    progress: Progress,
) -> Result<MigrateReport, DemoError> {
    login_through(
        &HttpClient::new(url)?,
        vault,
        id,
        password,
        threads,
        progress,
    )
    .await
}

/// [`login_over_http`] through `client` (one server or several; see
/// [`HttpClient::with_servers`]).
pub async fn login_through(
    client: &HttpClient,
    vault: VaultId,
    id: PrincipalId,
    password: &str,
    threads: Option<usize>,
    progress: Progress,
) -> Result<MigrateReport, DemoError> {
    let client = client.clone().expect_vault(vault);
    let kdf = KdfParams::from_json(&client.client_kdf().await?)?;
    let master = derive(password, vault, id, kdf).await?;
    let authenticator = LoginAuthenticator::derive(&master, vault, id)?;
    let client = client.open_session(id, &authenticator).await?;
    Ok(migrate(&client, id, master, options(threads), progress).await?)
}

fn options(threads: Option<usize>) -> BuildOptions {
    BuildOptions { threads }
}

/// The user's master secret, derived on the blocking pool (Argon2id is
/// deliberately slow).
async fn derive(
    password: &str,
    vault: VaultId,
    id: PrincipalId,
    kdf: KdfParams,
) -> Result<rekey_core::MasterSecret, DemoError> {
    let password = zeroize::Zeroizing::new(password.to_owned());
    tokio::task::spawn_blocking(move || master_secret(&password, vault, id, &kdf))
        .await
        .map_err(|_| DemoError::Internal("the password hash failed"))?
}

impl DemoError {
    /// Someone else migrated this user already (a role member's bundle, or
    /// an earlier run): not a failure for a run of logins.
    #[must_use]
    pub fn is_already_migrated(&self) -> bool {
        match self {
            DemoError::Engine(EngineError::Bundle(CheckError::SubmitterMigrated(_))) => true,
            DemoError::Client(e) => e.code() == Some("already_migrated"),
            _ => false,
        }
    }
}

/// What a run of logins did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoginSummary {
    /// Users who logged in.
    pub users: usize,
    /// Users found migrated already.
    pub already_migrated: usize,
    /// Grants written.
    pub grants: usize,
    /// Legacy grants unwrapped by the accepted builds.
    pub legacy_unwraps: usize,
    /// Rebuilds after conflicts.
    pub conflicts_rebuilt: usize,
    /// Role receipts handed in (members confirming roles others migrated).
    pub roles_confirmed: usize,
    /// Roles that did not open for a member as another member migrated
    /// them: `member: role: reason`. Finalize refuses while any is left.
    pub roles_refused: Vec<String>,
    /// Wall time.
    pub seconds: f64,
}

impl LoginSummary {
    fn add(&mut self, name: &str, r: &MigrateReport) {
        self.grants += r.applied.grants;
        self.legacy_unwraps += r.build.grants_rewrapped;
        self.conflicts_rebuilt += r.retries;
        self.roles_confirmed += r.roles.confirmed;
        self.roles_refused.extend(
            r.roles
                .refused
                .iter()
                .map(|(role, why)| format!("{name}: role {role}: {why}")),
        );
    }

    fn merge(&mut self, other: &LoginSummary) {
        self.already_migrated += other.already_migrated;
        self.grants += other.grants;
        self.legacy_unwraps += other.legacy_unwraps;
        self.conflicts_rebuilt += other.conflicts_rebuilt;
        self.roles_confirmed += other.roles_confirmed;
        self.roles_refused
            .extend(other.roles_refused.iter().cloned());
    }

    /// Grants written per second.
    #[must_use]
    pub fn grants_per_second(&self) -> f64 {
        self.grants as f64 / self.seconds.max(1e-3)
    }
}

/// Every demo user logs in, `concurrency` at a time (each build on one
/// thread, so the logins share the cores); `progress(done, total)` after
/// each. The first failure stops the others after the login they are in,
/// and is returned with the user's name. Over HTTP the logins share one
/// client: through [`Via::Servers`] their requests spread over the
/// servers in turn, and a server that stops answering is left out while
/// the others take its share.
pub async fn login_all(
    via: Via,
    credentials: Credentials,
    concurrency: usize,
    progress: Progress,
) -> Result<LoginSummary, DemoError> {
    let total = credentials.users.len();
    let started = Instant::now();
    let transport = Transport::of(via)?;
    // A fixed pool of workers takes users from one queue: a task per user,
    // spawned up front, would hold every user's login future at once.
    let queue = Arc::new(std::sync::Mutex::new(credentials.users.into_iter()));
    let failed = Arc::new(AtomicBool::new(false));
    // The failure that happened first, not the first worker's: a later
    // one is often a consequence of it (a lock its failed write held).
    let first_failure = Arc::new(std::sync::Mutex::new(None));
    let done = Arc::new(AtomicUsize::new(0));
    let vault = credentials.vault;
    let mut workers = Vec::new();
    for _ in 0..concurrency.clamp(1, total.max(1)) {
        let worker = Worker {
            transport: transport.clone(),
            vault,
            queue: queue.clone(),
            failed: failed.clone(),
            first_failure: first_failure.clone(),
            done: done.clone(),
            total,
            progress: progress.clone(),
        };
        workers.push(tokio::spawn(worker.run()));
    }
    let mut all = LoginSummary {
        users: total,
        ..LoginSummary::default()
    };
    let mut panicked = false;
    for w in workers {
        match w.await {
            Ok(sum) => all.merge(&sum),
            Err(_) => panicked = true,
        }
    }
    let first = first_failure.lock().ok().and_then(|mut f| f.take());
    if let Some(e) = first {
        return Err(e);
    }
    if panicked {
        return Err(DemoError::Internal("a login task panicked"));
    }
    all.seconds = started.elapsed().as_secs_f64();
    Ok(all)
}

/// One login worker of [`login_all`].
struct Worker {
    transport: Transport,
    vault: VaultId,
    queue: Arc<std::sync::Mutex<std::collections::btree_map::IntoIter<String, DemoUser>>>,
    failed: Arc<AtomicBool>,
    first_failure: Arc<std::sync::Mutex<Option<DemoError>>>,
    done: Arc<AtomicUsize>,
    total: usize,
    progress: Progress,
}

impl Worker {
    /// Logs users in until the queue is empty or a login failed; a failure
    /// goes to `first_failure` unless one got there before it.
    async fn run(self) -> LoginSummary {
        let mut sum = LoginSummary::default();
        let quiet: Progress = Arc::new(|_, _| {});
        while !self.failed.load(Ordering::Relaxed) {
            // The lock is held only to take the next user.
            let next = self.queue.lock().map(|mut q| q.next()).unwrap_or(None);
            let Some((name, user)) = next else { break };
            let r = login_with(
                &self.transport,
                self.vault,
                &name,
                &user,
                Some(1),
                quiet.clone(),
            )
            .await;
            (self.progress)(self.done.fetch_add(1, Ordering::Relaxed) + 1, self.total);
            match r {
                Ok(report) => sum.add(&name, &report),
                Err(e) if e.is_already_migrated() => sum.already_migrated += 1,
                Err(e) => {
                    // The others finish the login they are in, then stop.
                    self.failed.store(true, Ordering::Relaxed);
                    if let Ok(mut first) = self.first_failure.lock() {
                        first.get_or_insert(DemoError::ForUser {
                            user: name,
                            source: Box::new(e),
                        });
                    }
                    break;
                }
            }
        }
        sum
    }
}
