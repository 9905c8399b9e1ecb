//! Who a client request comes from. The migration API serves an
//! account's package and takes its bundle only from a client
//! authenticated as that account:
//!
//! - [`BuiltinSessions`], rekey's own login: the client proves its master
//!   secret with its login authenticator at `POST /v1/session` and sends
//!   the session token it gets as `Authorization: Bearer TOKEN`
//!   (`docs/PROTOCOL.md`, "Authentication");
//! - or the vault's own session login, for a vault that embeds rekey: it
//!   implements [`ClientAuth`] over its own cookies or tokens and gives it
//!   to [`crate::AppState::with_client_auth`]; `POST /v1/session` then
//!   answers 404.
//!
//! Failed logins are counted per account and per client address
//! ([`LoginLimits`]); past the limit a login is refused with `429` before any
//! password work. The counters live in this process: with several servers
//! behind a load balancer each counts its own (documented in README).

use crate::error::ServerError;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use rekey_core::PrincipalId;
use rekey_core::auth::{FailureLimiter, TokenError};
use rekey_engine::{Engine, EngineError};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Mutex;

/// The future an authenticator answers with.
pub type AuthFuture<'a> =
    Pin<Box<dyn Future<Output = Result<PrincipalId, ServerError>> + Send + 'a>>;

/// How a deployment authenticates the clients of the migration API.
pub trait ClientAuth: Send + Sync + std::fmt::Debug {
    /// The account the request's credentials name; a refusal is `401`.
    fn principal<'a>(&'a self, headers: &'a HeaderMap) -> AuthFuture<'a>;

    /// Whether this is rekey's built-in login (`POST /v1/session` serves
    /// it).
    fn is_builtin(&self) -> bool {
        false
    }
}

/// rekey's built-in client login: session tokens from `POST /v1/session`.
#[derive(Debug, Clone)]
pub struct BuiltinSessions {
    engine: Engine,
}

impl BuiltinSessions {
    /// Sessions of the engine's vault.
    #[must_use]
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

/// The bearer token of `Authorization: Bearer TOKEN`, if there is one.
#[must_use]
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

impl ClientAuth for BuiltinSessions {
    fn principal<'a>(&'a self, headers: &'a HeaderMap) -> AuthFuture<'a> {
        Box::pin(async move {
            let token = bearer(headers).ok_or(ServerError::SessionRequired)?;
            match self.engine.check_session(token).await {
                Ok(p) => Ok(p),
                Err(EngineError::Session(e)) => Err(ServerError::SessionRefused(e)),
                Err(e) => Err(ServerError::from_engine(e)),
            }
        })
    }

    fn is_builtin(&self) -> bool {
        true
    }
}

/// Failed logins allowed per account in [`WINDOW_MS`].
pub const PER_ACCOUNT: u32 = 5;
/// Failed logins allowed per client address in [`WINDOW_MS`].
pub const PER_ADDRESS: u32 = 20;
/// The window failed logins are counted in (15 minutes).
pub const WINDOW_MS: i64 = 15 * 60 * 1000;

/// The failed-login counters of this process.
#[derive(Debug)]
pub struct LoginLimits {
    inner: Mutex<Counters>,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            inner: Mutex::new((
                FailureLimiter::new(PER_ACCOUNT, WINDOW_MS),
                FailureLimiter::new(PER_ADDRESS, WINDOW_MS),
            )),
        }
    }
}

type Counters = (FailureLimiter<PrincipalId>, FailureLimiter<IpAddr>);

impl LoginLimits {
    /// The counters; a panic elsewhere while they were held leaves them
    /// consistent (every update is one map operation), so a poisoned lock
    /// is taken as it is rather than failing open or closed.
    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Ok` if a login of `principal` from `address` may be tried now,
    /// else the refusal with its wait.
    pub fn check(
        &self,
        principal: PrincipalId,
        address: Option<IpAddr>,
        now_ms: i64,
    ) -> Result<(), ServerError> {
        let mut g = self.lock();
        let (accounts, addresses) = &mut *g;
        let wait = accounts
            .check(&principal, now_ms)
            .err()
            .into_iter()
            .chain(address.and_then(|a| addresses.check(&counted_as(a), now_ms).err()))
            .max();
        match wait {
            Some(ms) => Err(ServerError::TooManyAttempts {
                retry_after_s: u64::try_from((ms + 999) / 1000).unwrap_or(1),
            }),
            None => Ok(()),
        }
    }

    /// Counts a failed login.
    pub fn failed(&self, principal: PrincipalId, address: Option<IpAddr>, now_ms: i64) {
        let mut g = self.lock();
        g.0.fail(principal, now_ms);
        if let Some(a) = address {
            g.1.fail(counted_as(a), now_ms);
        }
    }

    /// A successful login clears the account's count.
    pub fn succeeded(&self, principal: PrincipalId) {
        self.lock().0.succeed(&principal);
    }
}

/// The address failures are counted under: an IPv4 address as it is
/// (also when mapped into IPv6), an IPv6 address by its /64 network, the
/// block one subscriber is usually given (counting single addresses would
/// let one client try from 2^64 of them).
#[must_use]
pub fn counted_as(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(std::net::Ipv6Addr::from(seg))
            }
        },
    }
}

impl ServerError {
    /// The refusal of a session token.
    #[must_use]
    pub fn code_of_token(e: TokenError) -> &'static str {
        match e {
            TokenError::Invalid => "session_invalid",
            TokenError::Expired => "session_expired",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_by_their_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(counted_as(a), counted_as(b));
        assert_ne!(counted_as(a), counted_as(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(counted_as(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn logins_past_the_limit_are_refused_with_the_wait_and_others_go_on() {
        let limits = LoginLimits::default();
        let p = PrincipalId::from_bytes([1; 16]);
        let q = PrincipalId::from_bytes([2; 16]);
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..PER_ACCOUNT {
            limits.check(p, Some(addr), 0).unwrap();
            limits.failed(p, Some(addr), 0);
        }
        match limits.check(p, Some(addr), 1_000) {
            Err(ServerError::TooManyAttempts { retry_after_s }) => {
                assert_eq!(
                    retry_after_s,
                    u64::try_from((WINDOW_MS - 1_000) / 1000).unwrap()
                );
            }
            other => panic!("{other:?}"),
        }
        // Another account from the same address is not yet limited...
        limits.check(q, Some(addr), 1_000).unwrap();
        // ... until the address has failed PER_ADDRESS times.
        for i in 0..PER_ADDRESS - PER_ACCOUNT {
            limits.failed(
                PrincipalId::from_bytes([10 + u8::try_from(i).unwrap(); 16]),
                Some(addr),
                0,
            );
        }
        assert!(limits.check(q, Some(addr), 1_000).is_err());
        assert!(
            limits
                .check(q, Some("192.0.2.2".parse().unwrap()), 1_000)
                .is_ok()
        );
        // After the window, the account may try again.
        limits.check(p, None, WINDOW_MS).unwrap();
    }
}
