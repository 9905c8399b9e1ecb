//! What finalize re-checks before it deletes anything: the facts behind
//! every principal's `migrated` flag, read from the rows themselves.

use super::{Backend, Vault};
use crate::error::{Result, db};
use rekey_core::ids::GrantId;
use sea_orm::{ConnectionTrait, DatabaseTransaction, Statement, TransactionTrait};

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
    /// Reads the evidence, naming at most `shown` of each kind, in one
    /// transaction (on SQLite: one snapshot, and one connection for the
    /// temporary-store setting below).
    ///
    /// The legacy grants are read in two sequential passes over the
    /// `grant` table, not one index look-up per grant: at 10,000 users
    /// (1.4 million legacy grants, 3.1 million in all) the look-ups read
    /// the table at random and took most of finalize's time. Record-key
    /// grants are grouped by (recipient, record): a group's legacy grants
    /// are uncovered when the group holds no new grant. The remaining
    /// legacy grants (private keys, about a sixth) each look up the
    /// replacement of the key pair's owner through
    /// `grant (recipient_id, subject_id)`; `CROSS JOIN` fixes that join
    /// order, which SQLite's planner otherwise swaps for a scan of every
    /// new grant of the recipient. On SQLite the group-by sorts through
    /// temporary files (`temp_store = FILE` for this transaction; in
    /// memory it peaked at 230 MB at that size).
    pub async fn finalize_evidence(&self, shown: u64) -> Result<FinalizeEvidence> {
        let backend = self.backend;
        let txn = self.db.begin().await.map_err(db("read the evidence"))?;
        if backend == Backend::Sqlite {
            txn.execute_unprepared("PRAGMA temp_store = FILE")
                .await
                .map_err(db("read the evidence"))?;
        }
        let evidence = read_evidence(&txn, backend, shown).await;
        if backend == Backend::Sqlite {
            txn.execute_unprepared(super::lifecycle::RESTORE_TEMP_STORE)
                .await
                .map_err(db("read the evidence"))?;
        }
        txn.commit().await.map_err(db("read the evidence"))?;
        evidence
    }

    pub(super) async fn count(&self, from_where: &str) -> Result<u64> {
        count(&self.db, from_where).await
    }
}

/// The principals counted as migrated without a current key pair.
const WITHOUT_KEY: &str = "FROM principal p WHERE p.migration_state = 'migrated' \
     AND NOT EXISTS (SELECT 1 FROM key_pair k \
                     WHERE k.principal_id = p.id AND k.state = 'current')";

/// A legacy grant that finalize would delete without the owner having a
/// replacement: not written by the migration, its recipient migrated, and
/// no resolved non-migratable entry for it (`{lg}` names the grant).
fn open_legacy(lg: &str) -> String {
    format!(
        "{lg}.legacy = TRUE AND {lg}.origin <> 'migration' \
         AND NOT EXISTS (SELECT 1 FROM non_migratable n \
                         WHERE n.grant_id = {lg}.id AND n.resolution <> 'unresolved')"
    )
}

async fn read_evidence(
    txn: &DatabaseTransaction,
    backend: Backend,
    shown: u64,
) -> Result<FinalizeEvidence> {
    let (g, scan) = match backend {
        Backend::MySql => ("`grant`", ""),
        Backend::Sqlite => ("\"grant\"", " NOT INDEXED"),
        Backend::Postgres => ("\"grant\"", ""),
    };
    let open = open_legacy("g");
    let open_lg = open_legacy("lg");
    // Record keys: per (recipient, record), its open legacy grants and
    // how many new grants it holds. The sum of counts is a decimal in
    // PostgreSQL and MySQL: cast back to a 64-bit integer.
    let sum = if backend == Backend::MySql {
        "CAST(COALESCE(SUM(t.open_legacy), 0) AS SIGNED)"
    } else {
        "CAST(COALESCE(SUM(t.open_legacy), 0) AS BIGINT)"
    };
    let uncovered_records = format!(
        "SELECT {sum} FROM ( \
             SELECT g.recipient_id AS recipient_id, \
                    COUNT(CASE WHEN {open} THEN 1 END) AS open_legacy, \
                    COUNT(CASE WHEN g.legacy = FALSE THEN 1 END) AS new_grants \
             FROM {g} g{scan} WHERE g.subject_kind = 'record_key' \
             GROUP BY g.recipient_id, g.subject_id) t \
         JOIN principal p ON p.id = t.recipient_id \
         WHERE p.migration_state = 'migrated' AND t.open_legacy > 0 AND t.new_grants = 0"
    );
    // Every other legacy grant: a private key's grant is covered by a new
    // grant, to the same recipient, of the current key of the same owner.
    let replaced_private_key = format!(
        "lg.subject_kind = 'private_key' AND EXISTS ( \
             SELECT 1 FROM key_pair old_kp \
             CROSS JOIN key_pair new_kp CROSS JOIN {g} r \
             WHERE old_kp.id = lg.subject_id \
             AND new_kp.principal_id = old_kp.principal_id AND new_kp.state = 'current' \
             AND r.recipient_id = lg.recipient_id AND r.subject_id = new_kp.id \
             AND r.subject_kind = 'private_key' AND r.legacy = FALSE)"
    );
    let uncovered_others = format!(
        "FROM {g} lg{scan} JOIN principal p ON p.id = lg.recipient_id \
         WHERE lg.subject_kind <> 'record_key' AND {open_lg} \
         AND p.migration_state = 'migrated' AND NOT ({replaced_private_key})"
    );
    let mut evidence = FinalizeEvidence {
        without_key: count(txn, WITHOUT_KEY).await?,
        uncovered: number(txn, &uncovered_records).await? + count(txn, &uncovered_others).await?,
        unconfirmed: count(txn, UNCONFIRMED).await?,
        ..FinalizeEvidence::default()
    };
    if evidence.unconfirmed > 0 {
        let sql =
            format!("SELECT u.name, r.name {UNCONFIRMED} ORDER BY r.name, u.name LIMIT {shown}");
        for row in rows(txn, &sql).await? {
            let member: String = row.try_get_by_index(0).map_err(db("read the evidence"))?;
            let role: String = row.try_get_by_index(1).map_err(db("read the evidence"))?;
            evidence.first_unconfirmed.push((member, role));
        }
    }
    if evidence.without_key > 0 {
        let sql = format!("SELECT p.name {WITHOUT_KEY} ORDER BY p.name LIMIT {shown}");
        for row in rows(txn, &sql).await? {
            evidence
                .first_without_key
                .push(row.try_get_by_index(0).map_err(db("read the evidence"))?);
        }
    }
    if evidence.uncovered > 0 {
        // Only when something is wrong: one look-up per legacy grant is
        // fine here, and names the grants themselves.
        let sql = format!(
            "SELECT p.name, lg.id FROM {g} lg JOIN principal p ON p.id = lg.recipient_id \
             WHERE {open_lg} AND p.migration_state = 'migrated' \
             AND NOT (lg.subject_kind = 'record_key' AND EXISTS ( \
                 SELECT 1 FROM {g} r WHERE r.recipient_id = lg.recipient_id \
                 AND r.subject_id = lg.subject_id AND r.subject_kind = 'record_key' \
                 AND r.legacy = FALSE)) \
             AND NOT ({replaced_private_key}) \
             ORDER BY lg.id LIMIT {shown}"
        );
        for row in rows(txn, &sql).await? {
            let name: String = row.try_get_by_index(0).map_err(db("read the evidence"))?;
            let id: String = row.try_get_by_index(1).map_err(db("read the evidence"))?;
            let grant = super::convert::parse("grant id", &id)?;
            evidence.first_uncovered.push((name, grant));
        }
    }
    Ok(evidence)
}

/// `SELECT COUNT(*) {from_where}`.
async fn count<C: ConnectionTrait>(conn: &C, from_where: &str) -> Result<u64> {
    number(conn, &format!("SELECT COUNT(*) {from_where}")).await
}

/// The one integer a query answers (none or negative: 0).
async fn number<C: ConnectionTrait>(conn: &C, sql: &str) -> Result<u64> {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .map_err(db("count the evidence"))?;
    let n: i64 = match row {
        Some(r) => r.try_get_by_index(0).map_err(db("count the evidence"))?,
        None => 0,
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

async fn rows<C: ConnectionTrait>(conn: &C, sql: &str) -> Result<Vec<sea_orm::QueryResult>> {
    conn.query_all_raw(Statement::from_string(
        conn.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .map_err(db("read the evidence"))
}
