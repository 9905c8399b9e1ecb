//! The migration API's built-in client login (`rekey_core::auth`): a
//! client proves it holds the account's master secret with its login
//! authenticator and gets a short-lived session token naming the account.
//! A vault that embeds rekey may put its own session login in front of the
//! API instead (`rekey_server::ClientAuth`).

use super::Engine;
use crate::error::EngineError;
use rekey_core::PrincipalId;
use rekey_core::auth::{LoginAuthenticator, SessionKey, Verifier};
use rekey_core::model::Timestamp;
use serde::Serialize;
use std::sync::Arc;

/// How long a session token is good for: long enough to build and submit
/// the largest bundle, short enough that a leaked one soon stops working.
pub const SESSION_LIFETIME_MS: i64 = 15 * 60 * 1000;

/// A session opened by a correct authenticator.
#[derive(Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    /// The bearer token (send it as `Authorization: Bearer TOKEN`).
    pub token: String,
    /// The account it names.
    pub principal: PrincipalId,
    /// When it stops working (ms since the epoch).
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("token", &"[redacted]")
            .field("principal", &self.principal)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Engine {
    /// Registers (or replaces) login verifiers: the vault keeps only these,
    /// never an authenticator.
    pub async fn register_logins(
        &self,
        verifiers: &[(PrincipalId, Verifier)],
    ) -> Result<(), EngineError> {
        Ok(self.vault.set_login_verifiers(verifiers).await?)
    }

    /// Opens a session for `principal` if `authenticator` matches its
    /// verifier. The refusal is the same, and takes as long, for an account
    /// that does not exist or has no verifier. CPU-heavy (Argon2id): call
    /// it off an async worker.
    pub async fn open_session(
        &self,
        principal: PrincipalId,
        authenticator: &LoginAuthenticator,
    ) -> Result<Session, EngineError> {
        match self.vault.login_verifier(principal).await? {
            Some(v) if v.matches(authenticator) => {}
            Some(_) => return Err(EngineError::BadCredentials),
            None => {
                Verifier::burn(authenticator);
                return Err(EngineError::BadCredentials);
            }
        }
        let key = self.session_key().await?;
        let expires = Timestamp::now().as_millis() + SESSION_LIFETIME_MS;
        Ok(Session {
            token: key.issue(principal, expires),
            principal,
            expires_at: Timestamp(expires),
        })
    }

    /// The account a session token names, if it is valid now.
    pub async fn check_session(&self, token: &str) -> Result<PrincipalId, EngineError> {
        let key = self.session_key().await?;
        key.check(token, Timestamp::now().as_millis())
            .map_err(EngineError::Session)
    }

    /// Stores the parameters of the clients' password KDF (a JSON document
    /// of the vault's own; the demo's is Argon2id's).
    pub async fn set_client_kdf(&self, json: &str) -> Result<(), EngineError> {
        Ok(self.vault.set_client_kdf(json).await?)
    }

    /// The clients' password-KDF parameters, what a client asks before it
    /// derives its master secret (`GET /v1/client-kdf`).
    pub async fn client_kdf(&self) -> Result<Option<String>, EngineError> {
        Ok(self.vault.client_kdf().await?)
    }

    /// The vault's session key, read (or made) once per engine.
    async fn session_key(&self) -> Result<Arc<SessionKey>, EngineError> {
        if let Some(k) = self.session_key.get() {
            return Ok(k.clone());
        }
        let fresh = SessionKey::generate(&mut rand_core::OsRng);
        let key = Arc::new(self.vault.session_key(fresh).await?);
        Ok(self.session_key.get_or_init(|| key).clone())
    }
}
