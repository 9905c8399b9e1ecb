//! What finalize re-checks before it deletes anything: the facts behind
//! every principal's `migrated` flag, read from the rows themselves.

use super::{Backend, Vault};
use crate::error::{Result, db};
use rekey_core::ids::GrantId;
use sea_orm::{ConnectionTrait, Statement};

/// Principals counted as migrated that the rows do not bear out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinalizeEvidence {
    /// Migrated principals without a current key pair.
    pub without_key: u64,
    /// The first of them, by name.
    pub first_without_key: Vec<String>,
    /// Legacy grants of migrated principals with neither a replacement
    /// (a new grant of the same record key, or of the current key of the
    /// same key's owner) nor a resolved non-migratable entry.
    pub uncovered: u64,
    /// The first of them: the recipient's name and the grant.
    pub first_uncovered: Vec<(String, GrantId)>,
    /// Members (e2ee users, not purged) of migrated roles that have not
    /// confirmed the role's current key (`rekey_core::confirm`).
    pub unconfirmed: u64,
    /// The first of them: the member's and the role's names.
    pub first_unconfirmed: Vec<(String, String)>,
}

/// Members (e2ee users, not exempt) of migrated roles without a
/// confirmation of the role's current key pair: the `FROM … WHERE` part,
/// shared by finalize's evidence and the progress counts.
pub(super) const UNCONFIRMED: &str = "FROM membership m \
     JOIN principal r ON r.id = m.role_id AND r.migration_state = 'migrated' \
     JOIN principal u ON u.id = m.member_id AND u.kind = 'user' \
          AND u.custody = 'e2ee' AND u.migration_state <> 'exempt' \
     JOIN key_pair k ON k.principal_id = r.id AND k.state = 'current' \
     WHERE NOT EXISTS (SELECT 1 FROM role_confirmation c \
                       WHERE c.role_id = r.id AND c.holder_id = u.id \
                       AND c.key_pair_id = k.id)";

impl Vault {
    /// Reads the evidence, naming at most `shown` of each kind. One pass
    /// over the legacy grants of migrated principals, each answered by an
    /// index (`grant (recipient_id, subject_id)`).
    pub async fn finalize_evidence(&self, shown: u64) -> Result<FinalizeEvidence> {
        let g = if self.backend == Backend::MySql {
            "`grant`"
        } else {
            "\"grant\""
        };
        let without_key = "FROM principal p WHERE p.migration_state = 'migrated' \
             AND NOT EXISTS (SELECT 1 FROM key_pair k \
                             WHERE k.principal_id = p.id AND k.state = 'current')";
        let uncovered = format!(
            "FROM {g} lg JOIN principal p ON p.id = lg.recipient_id \
             WHERE lg.origin <> 'migration' AND lg.legacy = TRUE AND p.migration_state = 'migrated' \
             AND NOT EXISTS (SELECT 1 FROM non_migratable n \
                             WHERE n.grant_id = lg.id AND n.resolution <> 'unresolved') \
             AND NOT (lg.subject_kind = 'record_key' AND EXISTS ( \
                 SELECT 1 FROM {g} r WHERE r.recipient_id = lg.recipient_id \
                 AND r.subject_id = lg.subject_id AND r.subject_kind = 'record_key' \
                 AND r.legacy = FALSE)) \
             AND NOT (lg.subject_kind = 'private_key' AND EXISTS ( \
                 SELECT 1 FROM key_pair old_kp \
                 JOIN key_pair new_kp ON new_kp.principal_id = old_kp.principal_id \
                      AND new_kp.state = 'current' \
                 JOIN {g} r ON r.recipient_id = lg.recipient_id AND r.subject_id = new_kp.id \
                      AND r.subject_kind = 'private_key' AND r.legacy = FALSE \
                 WHERE old_kp.id = lg.subject_id))"
        );
        let unconfirmed = UNCONFIRMED;
        let mut evidence = FinalizeEvidence {
            without_key: self.count(without_key).await?,
            uncovered: self.count(&uncovered).await?,
            unconfirmed: self.count(unconfirmed).await?,
            ..FinalizeEvidence::default()
        };
        if evidence.unconfirmed > 0 {
            let sql = format!(
                "SELECT u.name, r.name {unconfirmed} ORDER BY r.name, u.name LIMIT {shown}"
            );
            for row in self.rows(&sql).await? {
                let member: String = row.try_get_by_index(0).map_err(db("read the evidence"))?;
                let role: String = row.try_get_by_index(1).map_err(db("read the evidence"))?;
                evidence.first_unconfirmed.push((member, role));
            }
        }
        if evidence.without_key > 0 {
            let sql = format!("SELECT p.name {without_key} ORDER BY p.name LIMIT {shown}");
            for row in self.rows(&sql).await? {
                evidence
                    .first_without_key
                    .push(row.try_get_by_index(0).map_err(db("read the evidence"))?);
            }
        }
        if evidence.uncovered > 0 {
            let sql = format!("SELECT p.name, lg.id {uncovered} ORDER BY lg.id LIMIT {shown}");
            for row in self.rows(&sql).await? {
                let name: String = row.try_get_by_index(0).map_err(db("read the evidence"))?;
                let id: String = row.try_get_by_index(1).map_err(db("read the evidence"))?;
                let grant = super::convert::parse("grant id", &id)?;
                evidence.first_uncovered.push((name, grant));
            }
        }
        Ok(evidence)
    }

    pub(super) async fn count(&self, from_where: &str) -> Result<u64> {
        let sql = format!("SELECT COUNT(*) {from_where}");
        let row = self
            .db
            .query_one_raw(Statement::from_string(self.db_backend(), sql))
            .await
            .map_err(db("count the evidence"))?;
        let n: i64 = match row {
            Some(r) => r.try_get_by_index(0).map_err(db("count the evidence"))?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn rows(&self, sql: &str) -> Result<Vec<sea_orm::QueryResult>> {
        self.db
            .query_all_raw(Statement::from_string(self.db_backend(), sql.to_owned()))
            .await
            .map_err(db("read the evidence"))
    }
}
