//! The migration loop of one account, over any transport: fetch the
//! package, build the bundle, submit it, and rebuild after a conflict.

use rekey_core::bundle::{
    BuildError, BuildOptions, BuildOutput, BuildReport, MigrationPackage, OpenedGrants, Unlock,
    build_bundle_reusing,
};
use rekey_core::confirm::{Receipt, RoleCheck, confirm_role};
use rekey_core::report::ApplyReport;
use rekey_core::{MasterSecret, PrincipalId};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How many times [`migrate`] builds before giving up on conflicts. A
/// conflict means another client's bundle was applied meanwhile (the vault
/// is read-only otherwise), so the migration as a whole always moves on;
/// the cap only bounds how long one client keeps rebuilding while many
/// logins that share its roles commit around it. A 10,000-user vault with
/// users logging in by name (members of the same roles together) needed
/// more than 5.
pub const MIGRATE_ATTEMPTS: usize = 30;

/// The longest pause, in milliseconds per retry so far, before a rebuild.
const BACKOFF_MS_PER_RETRY: u64 = 5;
/// Retries after which the pause stops growing (at most 100 ms).
const BACKOFF_GROWS_FOR: usize = 20;

/// The pause before rebuild number `retry` (from 1): a random share of up
/// to 5 ms per retry so far (at most 100 ms), so that clients racing for
/// the same roles stop rebuilding in lockstep. A rebuild reopens no grant
/// opened before, so it is much shorter than the first build.
#[must_use]
pub fn conflict_backoff(retry: usize) -> Duration {
    backoff_share(retry, rand_core::RngCore::next_u32(&mut rand_core::OsRng))
}

/// [`conflict_backoff`] with its random draw given: `draw / 2^32` of the
/// cap for `retry`.
fn backoff_share(retry: usize, draw: u32) -> Duration {
    let retries = u64::try_from(retry.clamp(1, BACKOFF_GROWS_FOR)).unwrap_or(1);
    let cap_us = BACKOFF_MS_PER_RETRY * 1000 * retries;
    Duration::from_micros((cap_us * u64::from(draw)) >> 32)
}

/// What went wrong for a transport, as [`migrate`] needs to know it.
pub trait ApiError: From<BuildError> + Send + 'static {
    /// The vault changed under the client: fetch a new package, rebuild.
    fn is_conflict(&self) -> bool;
    /// The account has migrated already (an earlier login, or an answer
    /// lost on the way): nothing to build.
    fn is_already_migrated(&self) -> bool;
    /// The server did not keep a role receipt (`receipt_refused`): the
    /// role stays unconfirmed, the login itself went through.
    fn is_receipt_refused(&self) -> bool;
    /// The bundle builder stopped without an answer (it panicked).
    fn builder_failed() -> Self;
}

/// The two calls of the migration protocol a client makes.
pub trait MigrationApi: Sync {
    /// The transport's error.
    type Error: ApiError;

    /// The migration package of `principal`, checked as untrusted input.
    fn package(
        &self,
        principal: PrincipalId,
    ) -> impl Future<Output = Result<MigrationPackage, Self::Error>> + Send;

    /// Submits the encoded signed bundle of `principal`.
    fn submit(
        &self,
        principal: PrincipalId,
        bundle: Vec<u8>,
    ) -> impl Future<Output = Result<ApplyReport, Self::Error>> + Send;

    /// The migrated roles `principal` has to confirm
    /// ([`rekey_core::confirm`]), checked as untrusted input.
    fn role_checks(
        &self,
        principal: PrincipalId,
    ) -> impl Future<Output = Result<Vec<RoleCheck>, Self::Error>> + Send;

    /// Hands in `principal`'s receipt for one role.
    fn confirm(
        &self,
        principal: PrincipalId,
        receipt: Receipt,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Reports `(done, total)` legacy unwraps while a bundle builds.
pub type BuildProgress = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// What [`migrate`] did.
#[derive(Debug, Clone, Default)]
pub struct MigrateReport {
    /// What the accepted build did.
    pub build: BuildReport,
    /// What the server applied.
    pub applied: ApplyReport,
    /// Rebuilds after conflicts.
    pub retries: usize,
    /// Size of the accepted bundle in bytes.
    pub bundle_bytes: usize,
    /// What the role confirmations after the migration found.
    pub roles: RoleConfirmations,
}

/// What [`confirm_roles`] did.
#[derive(Debug, Clone, Default)]
pub struct RoleConfirmations {
    /// Roles confirmed (a receipt handed in).
    pub confirmed: usize,
    /// Roles that do not open for this account as another member migrated
    /// them, with the reason: the administrator must not finalize (it
    /// refuses) and should abort.
    pub refused: Vec<(PrincipalId, String)>,
}

/// Migrates `principal`: fetches its package, builds the bundle with its
/// master secret on the blocking pool, submits it, and after a conflict
/// fetches a new package and rebuilds (at most [`MIGRATE_ATTEMPTS`] builds,
/// pausing [`conflict_backoff`] between them). A rebuild reopens no grant
/// opened before. An account found migrated already (by the package, or
/// by a bundle sent again after its answer was lost) still hands in its
/// role receipts, then the loop ends with that refusal; any other refusal
/// ends it at once.
pub async fn migrate<A: MigrationApi>(
    api: &A,
    principal: PrincipalId,
    master: MasterSecret,
    options: BuildOptions,
    progress: BuildProgress,
) -> Result<MigrateReport, A::Error> {
    let master = Arc::new(master);
    let memo = Arc::new(OpenedGrants::new());
    let mut retries = 0;
    loop {
        let package = match api.package(principal).await {
            Ok(p) => p,
            // Nothing to build; the roles other members migrated since may
            // still wait for this account's receipt.
            Err(e) if e.is_already_migrated() => {
                return after_migrated(api, principal, &master, e).await;
            }
            Err(e) => return Err(e),
        };
        let (secret, memo, progress) = (master.clone(), memo.clone(), progress.clone());
        let built = tokio::task::spawn_blocking(move || {
            build_bundle_reusing(
                &package,
                Unlock::MasterSecret(&secret),
                options,
                &*progress,
                &memo,
            )
        })
        .await
        .map_err(|_| A::Error::builder_failed())??;
        // Only the encoded bytes go on: the decoded bundle is dropped
        // before the server side decodes its own copy.
        let BuildOutput { bundle, report, .. } = built;
        let bytes = bundle.encode();
        drop(bundle);
        let bundle_bytes = bytes.len();
        match api.submit(principal, bytes).await {
            Ok(applied) => {
                let roles = confirm_roles(api, principal, &master).await?;
                return Ok(MigrateReport {
                    build: report,
                    applied,
                    retries,
                    bundle_bytes,
                    roles,
                });
            }
            Err(e) if e.is_conflict() && retries + 1 < MIGRATE_ATTEMPTS => {
                retries += 1;
                tokio::time::sleep(conflict_backoff(retries)).await;
            }
            // This bundle was applied already: its answer was lost (the
            // connection broke, and the transport sent it again, perhaps to
            // another server of the vault). The roles still wait for this
            // account's receipts.
            Err(e) if e.is_already_migrated() => {
                return after_migrated(api, principal, &master, e).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `principal` has migrated already (`e` says so): hands in its role
/// receipts ([`confirm_roles`]), then answers `e`.
async fn after_migrated<A: MigrationApi>(
    api: &A,
    principal: PrincipalId,
    master: &Arc<MasterSecret>,
    e: A::Error,
) -> Result<MigrateReport, A::Error> {
    let roles = confirm_roles(api, principal, master).await?;
    if !roles.refused.is_empty() {
        tracing::warn!(
            refused = roles.refused.len(),
            "roles do not open for this account"
        );
    }
    Err(e)
}

/// Checks every migrated role `principal` has to confirm, with its master
/// secret, on the blocking pool, and hands in a receipt for each that
/// opens as it should. A role that does not is reported, not fatal: this
/// account's own migration stands, and finalization waits for the
/// administrator.
pub async fn confirm_roles<A: MigrationApi>(
    api: &A,
    principal: PrincipalId,
    master: &Arc<MasterSecret>,
) -> Result<RoleConfirmations, A::Error> {
    let mut out = RoleConfirmations::default();
    for check in api.role_checks(principal).await? {
        let role = check.role;
        let master = master.clone();
        let checked = tokio::task::spawn_blocking(move || confirm_role(&check, &master))
            .await
            .map_err(|_| A::Error::builder_failed())?;
        match checked {
            Ok(receipt) => match api.confirm(principal, receipt).await {
                Ok(()) => out.confirmed += 1,
                Err(e) if e.is_receipt_refused() => {
                    tracing::warn!(role = %role, "the server did not keep this account's role receipt");
                    out.refused
                        .push((role, "the server refused the receipt".to_owned()));
                }
                Err(e) => return Err(e),
            },
            Err(e) => {
                tracing::warn!(role = %role, error = %e, "a migrated role does not open for this account");
                out.refused.push((role, e.to_string()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_grows_with_each_retry_up_to_its_cap() {
        let longest = |retry| backoff_share(retry, u32::MAX);
        // With the largest draw the pause grows from one retry to the next
        // until the cap, and not after.
        for retry in 1..BACKOFF_GROWS_FOR {
            assert!(longest(retry) < longest(retry + 1), "retry {retry}");
        }
        assert_eq!(longest(BACKOFF_GROWS_FOR), longest(1000));
        assert!(longest(1) < Duration::from_millis(5));
        assert!(longest(1) > Duration::from_micros(4990));
        assert!(longest(1000) < Duration::from_millis(100));
        // Retry 0 is treated as the first.
        assert_eq!(longest(0), longest(1));
        // The draw picks a share of the cap: none, half, nearly all.
        assert_eq!(backoff_share(10, 0), Duration::ZERO);
        assert_eq!(backoff_share(10, 1 << 31), Duration::from_millis(25));
        // Real draws differ (jitter), and stay under the cap.
        let draws: std::collections::BTreeSet<_> = (0..200).map(|_| conflict_backoff(10)).collect();
        assert!(draws.len() > 1);
        assert!(draws.iter().all(|d| *d < Duration::from_millis(50)));
    }
}
