//! The built-in client login's rows: verifiers, and the session-token key.

use super::Vault;
use crate::entity::{login_verifier, setting};
use crate::error::{Error, Result, db};
use rekey_core::auth::{SessionKey, Verifier};
use rekey_core::ids::PrincipalId;
use rekey_core::model::Timestamp;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::OnConflict;
use sea_orm::{EntityTrait, TransactionTrait};

/// The `setting` key of the session-token key.
const SESSION_KEY: &str = "session_key";
/// The `setting` key of the clients' password-KDF parameters (JSON).
const CLIENT_KDF: &str = "client_kdf";

impl Vault {
    /// Registers (or replaces) the login verifiers of these principals, in
    /// one transaction.
    pub async fn set_login_verifiers(&self, verifiers: &[(PrincipalId, Verifier)]) -> Result<()> {
        let now = Timestamp::now().as_millis();
        let txn = self.db.begin().await.map_err(db("begin"))?;
        for chunk in verifiers.chunks(super::BATCH_ROWS) {
            login_verifier::Entity::insert_many(chunk.iter().map(|(p, v)| {
                login_verifier::ActiveModel {
                    principal_id: Set(p.to_string()),
                    verifier: Set(v.to_bytes()),
                    registered_at: Set(now),
                }
            }))
            .on_conflict(
                OnConflict::column(login_verifier::Column::PrincipalId)
                    .update_columns([
                        login_verifier::Column::Verifier,
                        login_verifier::Column::RegisteredAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .map_err(db("store the login verifiers"))?;
        }
        txn.commit().await.map_err(db("commit the login verifiers"))
    }

    /// The login verifier of a principal, if it has one.
    pub async fn login_verifier(&self, principal: PrincipalId) -> Result<Option<Verifier>> {
        let Some(row) = login_verifier::Entity::find_by_id(principal.to_string())
            .one(&self.db)
            .await
            .map_err(db("read a login verifier"))?
        else {
            return Ok(None);
        };
        Verifier::from_bytes(&row.verifier)
            .map(Some)
            .ok_or_else(|| Error::corrupt("login verifier", "not a verifier"))
    }

    /// The vault's session-token key, made now (from `fresh`) if it has
    /// none. Two servers asking at once get the same key: the first
    /// insert wins, the other reads it.
    pub async fn session_key(&self, fresh: SessionKey) -> Result<SessionKey> {
        self.put_setting(
            SESSION_KEY,
            &hex::encode(fresh.dangerous_as_bytes()),
            Overwrite::No,
            "store the session key",
        )
        .await?;
        let value = self
            .setting(SESSION_KEY, "read the session key")
            .await?
            .ok_or_else(|| Error::corrupt("session key", "missing"))?;
        hex::decode(&value)
            .ok()
            .and_then(|b| SessionKey::from_bytes(&b))
            .ok_or_else(|| Error::corrupt("session key", "not 32 hex bytes"))
    }

    /// Stores the parameters of the password KDF the vault's clients use
    /// (a JSON document the vault defines; the demo's is Argon2id's m, t
    /// and p), so that a client asks the vault for them before it logs in.
    pub async fn set_client_kdf(&self, json: &str) -> Result<()> {
        self.put_setting(
            CLIENT_KDF,
            json,
            Overwrite::Yes,
            "store the client KDF parameters",
        )
        .await
    }

    /// The clients' password-KDF parameters, if the vault has them.
    pub async fn client_kdf(&self) -> Result<Option<String>> {
        self.setting(CLIENT_KDF, "read the client KDF parameters")
            .await
    }

    /// Stores one row of the `setting` table; `overwrite` says whether an
    /// existing value is replaced or kept (the first writer wins).
    pub(super) async fn put_setting(
        &self,
        key: &str,
        value: &str,
        overwrite: Overwrite,
        what: &'static str,
    ) -> Result<()> {
        let mut on_conflict = OnConflict::column(setting::Column::Key);
        match overwrite {
            Overwrite::Yes => on_conflict.update_column(setting::Column::Value),
            // `do_nothing_on`, not `do_nothing`: sea-query writes the
            // latter as `ON DUPLICATE KEY IGNORE` for MySQL, which MariaDB
            // refuses; naming a column makes it a no-op update there.
            Overwrite::No => on_conflict.do_nothing_on([setting::Column::Key]),
        };
        setting::Entity::insert(setting::ActiveModel {
            key: Set(key.to_owned()),
            value: Set(value.to_owned()),
        })
        .on_conflict(on_conflict)
        .exec_without_returning(&self.db)
        .await
        .map_err(db(what))?;
        Ok(())
    }

    /// One row of the `setting` table, if present.
    pub(super) async fn setting(&self, key: &str, what: &'static str) -> Result<Option<String>> {
        Ok(setting::Entity::find_by_id(key.to_owned())
            .one(&self.db)
            .await
            .map_err(db(what))?
            .map(|row| row.value))
    }
}

/// Whether [`Vault::put_setting`] replaces a value already stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Overwrite {
    /// Replace it.
    Yes,
    /// Keep it (the first writer wins).
    No,
}
