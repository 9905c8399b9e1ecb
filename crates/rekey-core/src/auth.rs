//! Client authentication for the migration API, without the server ever
//! seeing a password or a key (`docs/PROTOCOL.md`, "Authentication").
//!
//! - The client derives a **login authenticator** from the account's
//!   master secret under a label of its own, never the KEK's:
//!   `HKDF-SHA256(ikm = master secret, salt = "rekey/v1/login-authenticator",
//!   info = vault ‖ principal)`, 32 bytes. Knowing it opens nothing.
//! - The vault keeps only a **verifier**: Argon2id of the authenticator
//!   under a random 16-byte salt (version `01`: m = 8 MiB, t = 1, p = 1).
//!   The password itself is already behind the client's slow password hash;
//!   the verifier's Argon2id makes a stolen verifier table useless for
//!   logging in without the password as well.
//! - A correct authenticator gets a **session token**: the principal, an
//!   expiry and an HMAC-SHA256 over both under a key the vault keeps, so
//!   any server of the vault checks it without shared memory.

use crate::crypto::kdf::Kdf;
use crate::error::CryptoError;
use crate::ids::{PrincipalId, VaultId};
use crate::labels::{AUTHENTICATOR_SALT, SESSION_TOKEN};
use crate::secret::MasterSecret;
use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The version byte of a stored verifier.
const VERIFIER_V1: u8 = 1;
/// Argon2id memory of a verifier, KiB.
pub const VERIFIER_M_KIB: u32 = 8 * 1024;
/// Argon2id passes of a verifier.
pub const VERIFIER_T: u32 = 1;
/// A stored verifier: version ‖ salt (16) ‖ hash (32).
pub const VERIFIER_LEN: usize = 1 + 16 + 32;
/// A session token's bytes before encoding: principal (16) ‖ expiry
/// (8, big-endian ms since the epoch) ‖ MAC (32).
const TOKEN_LEN: usize = 16 + 8 + 32;

/// The secret a client proves it knows the account's master secret with.
pub struct LoginAuthenticator(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for LoginAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginAuthenticator([redacted])")
    }
}

impl LoginAuthenticator {
    /// Derives it from the master secret, bound to the vault and the
    /// principal.
    pub fn derive(
        master: &MasterSecret,
        vault: VaultId,
        principal: PrincipalId,
    ) -> Result<Self, CryptoError> {
        let mut info = Vec::with_capacity(32);
        info.extend_from_slice(&vault.to_bytes());
        info.extend_from_slice(&principal.to_bytes());
        let okm = Kdf::Sha256.derive(AUTHENTICATOR_SALT, master.as_bytes(), &info, 32)?;
        let array: [u8; 32] = okm[..]
            .try_into()
            .map_err(|_| CryptoError::Library("authenticator length"))?;
        Ok(Self(Zeroizing::new(array)))
    }

    /// From its 32 bytes (as a client sends them).
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(Zeroizing::new(array)))
    }

    /// The bytes, to send to the server.
    #[must_use]
    pub fn dangerous_as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// What the vault stores in place of an authenticator.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    salt: [u8; 16],
    hash: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(..)")
    }
}

fn verifier_hash(authenticator: &[u8; 32], salt: &[u8; 16]) -> Result<[u8; 32], CryptoError> {
    let params = argon2::Params::new(VERIFIER_M_KIB, VERIFIER_T, 1, Some(32))
        .map_err(|_| CryptoError::Library("argon2 parameters"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    argon
        .hash_password_into(authenticator, salt, &mut out)
        .map_err(|_| CryptoError::Library("argon2"))?;
    Ok(out)
}

impl Verifier {
    /// A verifier of `authenticator` under a fresh salt.
    pub fn new<R: RngCore + CryptoRng>(
        rng: &mut R,
        authenticator: &LoginAuthenticator,
    ) -> Result<Self, CryptoError> {
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let hash = verifier_hash(authenticator.dangerous_as_bytes(), &salt)?;
        Ok(Self { salt, hash })
    }

    /// Whether `authenticator` is the one this verifier was made from
    /// (compared in constant time).
    #[must_use]
    pub fn matches(&self, authenticator: &LoginAuthenticator) -> bool {
        verifier_hash(authenticator.dangerous_as_bytes(), &self.salt)
            .is_ok_and(|h| bool::from(h.ct_eq(&self.hash)))
    }

    /// The same work as [`Verifier::matches`] for a principal that has no
    /// verifier, so a refusal takes as long whether the principal exists
    /// or not.
    pub fn burn(authenticator: &LoginAuthenticator) {
        let _ = verifier_hash(authenticator.dangerous_as_bytes(), &[0; 16]);
    }

    /// The stored form: `01 ‖ salt ‖ hash`.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(VERIFIER_LEN);
        out.push(VERIFIER_V1);
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.hash);
        out
    }

    /// Parses the stored form.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != VERIFIER_LEN || bytes[0] != VERIFIER_V1 {
            return None;
        }
        Some(Self {
            salt: bytes[1..17].try_into().ok()?,
            hash: bytes[17..].try_into().ok()?,
        })
    }
}

/// The vault's key for session tokens (32 random bytes, kept in the
/// vault so every server of it checks every token).
pub struct SessionKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey([redacted])")
    }
}

/// Why a session token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this vault (malformed, or its MAC does not verify).
    #[error("the session token is not valid")]
    Invalid,
    /// Valid, but past its expiry.
    #[error("the session token has expired; log in again")]
    Expired,
}

impl SessionKey {
    /// A fresh key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut k[..]);
        Self(k)
    }

    /// From its stored bytes.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(Zeroizing::new(array)))
    }

    /// The bytes, to store.
    #[must_use]
    pub fn dangerous_as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self, principal: PrincipalId, expires_ms: i64) -> [u8; 32] {
        // HMAC takes a key of any length: this never fails.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0[..])
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(SESSION_TOKEN);
        mac.update(&principal.to_bytes());
        mac.update(&expires_ms.to_be_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A token for `principal`, valid until `expires_ms` (ms since the
    /// epoch), as lower-case hex.
    #[must_use]
    pub fn issue(&self, principal: PrincipalId, expires_ms: i64) -> String {
        let mut out = Vec::with_capacity(TOKEN_LEN);
        out.extend_from_slice(&principal.to_bytes());
        out.extend_from_slice(&expires_ms.to_be_bytes());
        out.extend_from_slice(&self.mac(principal, expires_ms));
        hex::encode(out)
    }

    /// The principal a token was issued for, if its MAC verifies and it has
    /// not expired at `now_ms`.
    pub fn check(&self, token: &str, now_ms: i64) -> Result<PrincipalId, TokenError> {
        if token.len() != 2 * TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let bytes = hex::decode(token).map_err(|_| TokenError::Invalid)?;
        let principal =
            PrincipalId::from_bytes(bytes[..16].try_into().map_err(|_| TokenError::Invalid)?);
        let expires =
            i64::from_be_bytes(bytes[16..24].try_into().map_err(|_| TokenError::Invalid)?);
        let expected = self.mac(principal, expires);
        if !bool::from(expected.ct_eq(&bytes[24..])) {
            return Err(TokenError::Invalid);
        }
        if now_ms >= expires {
            return Err(TokenError::Expired);
        }
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn master(s: &str) -> MasterSecret {
        MasterSecret::from_slice(format!("master secret {s}, long enough").as_bytes()).unwrap()
    }

    #[test]
    fn the_authenticator_is_bound_and_is_not_the_kek() {
        let (v, p) = (
            VaultId::from_bytes([1; 16]),
            PrincipalId::from_bytes([2; 16]),
        );
        let a = LoginAuthenticator::derive(&master("a"), v, p).unwrap();
        let again = LoginAuthenticator::derive(&master("a"), v, p).unwrap();
        assert_eq!(a.dangerous_as_bytes(), again.dangerous_as_bytes());
        let other =
            LoginAuthenticator::derive(&master("a"), v, PrincipalId::from_bytes([3; 16])).unwrap();
        assert_ne!(a.dangerous_as_bytes(), other.dangerous_as_bytes());
        let kek = crate::Kek::derive(&master("a"), v, p).unwrap();
        assert_ne!(&a.dangerous_as_bytes()[..], kek.dangerous_as_bytes());
        assert_eq!(format!("{a:?}"), "LoginAuthenticator([redacted])");
    }

    #[test]
    fn a_verifier_accepts_its_authenticator_only_and_round_trips() {
        let (v, p) = (
            VaultId::from_bytes([1; 16]),
            PrincipalId::from_bytes([2; 16]),
        );
        let a = LoginAuthenticator::derive(&master("a"), v, p).unwrap();
        let wrong = LoginAuthenticator::derive(&master("b"), v, p).unwrap();
        let verifier = Verifier::new(&mut OsRng, &a).unwrap();
        assert!(verifier.matches(&a));
        assert!(!verifier.matches(&wrong));
        let stored = verifier.to_bytes();
        assert_eq!(stored.len(), VERIFIER_LEN);
        assert_eq!(Verifier::from_bytes(&stored), Some(verifier.clone()));
        assert!(Verifier::from_bytes(&stored[1..]).is_none());
        let mut v2 = stored.clone();
        v2[0] = 2;
        assert!(Verifier::from_bytes(&v2).is_none());
        // Two verifiers of one authenticator differ (fresh salts).
        assert_ne!(Verifier::new(&mut OsRng, &a).unwrap().to_bytes(), stored);
    }

    #[test]
    fn tokens_name_their_principal_until_they_expire_and_cannot_be_forged() {
        let key = SessionKey::generate(&mut OsRng);
        let p = PrincipalId::from_bytes([7; 16]);
        let t = key.issue(p, 10_000);
        assert_eq!(key.check(&t, 9_999), Ok(p));
        assert_eq!(key.check(&t, 10_000), Err(TokenError::Expired));
        // Another key, a changed principal or expiry, junk: invalid.
        assert_eq!(
            SessionKey::generate(&mut OsRng).check(&t, 0),
            Err(TokenError::Invalid)
        );
        let mut bytes = hex::decode(&t).unwrap();
        bytes[0] ^= 1;
        assert_eq!(key.check(&hex::encode(&bytes), 0), Err(TokenError::Invalid));
        let mut later = hex::decode(&t).unwrap();
        later[23] ^= 1;
        assert_eq!(key.check(&hex::encode(&later), 0), Err(TokenError::Invalid));
        for junk in ["", "zz", &t[..t.len() - 2], &"g".repeat(t.len())] {
            assert_eq!(key.check(junk, 0), Err(TokenError::Invalid), "{junk}");
        }
    }
}

/// Failed logins counted per key (a principal, a client address) in a
/// fixed window: after `limit` failures the key is refused until the
/// window that counted them ends. Pure bookkeeping: the caller passes the
/// time, keeps one limiter per kind of key, and decides what a refusal
/// answers (the server: `429 Too Many Attempts`).
#[derive(Debug)]
pub struct FailureLimiter<K> {
    limit: u32,
    window_ms: i64,
    counts: std::collections::HashMap<K, (u32, i64)>,
}

impl<K: std::hash::Hash + Eq + Clone> FailureLimiter<K> {
    /// At most `limit` failures per key in `window_ms`.
    #[must_use]
    pub fn new(limit: u32, window_ms: i64) -> Self {
        Self {
            limit,
            window_ms,
            counts: std::collections::HashMap::new(),
        }
    }

    /// `Ok` if `key` may try now, or the milliseconds until it may.
    pub fn check(&mut self, key: &K, now_ms: i64) -> Result<(), i64> {
        match self.counts.get(key) {
            Some(&(n, start)) if now_ms < start + self.window_ms => {
                if n >= self.limit {
                    Err(start + self.window_ms - now_ms)
                } else {
                    Ok(())
                }
            }
            Some(_) => {
                self.counts.remove(key);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts a failure of `key`.
    pub fn fail(&mut self, key: K, now_ms: i64) {
        let window = self.window_ms;
        let entry = self.counts.entry(key).or_insert((0, now_ms));
        if now_ms >= entry.1 + window {
            *entry = (0, now_ms);
        }
        entry.0 = entry.0.saturating_add(1);
        // Keep the table small: forget windows that have ended.
        if self.counts.len() > 10_000 {
            self.counts.retain(|_, (_, start)| now_ms < *start + window);
        }
    }

    /// Forgets `key`'s failures (a success).
    pub fn succeed(&mut self, key: &K) {
        self.counts.remove(key);
    }
}

#[cfg(test)]
mod limiter_tests {
    use super::FailureLimiter;

    #[test]
    fn a_key_is_refused_after_its_limit_until_the_window_ends() {
        let mut l = FailureLimiter::new(3, 1_000);
        for t in [0, 10, 20] {
            assert_eq!(l.check(&"alice", t), Ok(()));
            l.fail("alice", t);
        }
        assert_eq!(l.check(&"alice", 30), Err(970));
        assert_eq!(l.check(&"bob", 30), Ok(()), "other keys are not affected");
        assert_eq!(l.check(&"alice", 1_000), Ok(()), "a new window");
        l.fail("alice", 1_000);
        assert_eq!(l.check(&"alice", 1_001), Ok(()));
        l.succeed(&"alice");
        for t in 0..3 {
            l.fail("alice", 2_000 + t);
        }
        assert!(l.check(&"alice", 2_010).is_err());
    }
}
