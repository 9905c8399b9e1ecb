//! Statement shapes a database can keep prepared.
//!
//! sqlx keeps one prepared statement per SQL text and connection. A query
//! runs from that cache only if its text repeats, and stays prepared only
//! if binding new values does not invalidate it. Two sea-orm habits defeat
//! both on SQLite, and the migration's hot path runs into each thousands of
//! times:
//!
//! - **A bound `LIMIT ?`.** The planner of the SQLite this build links
//!   (3.51) reads the value bound to a LIMIT and so marks the statement as
//!   depending on it: binding that parameter again, as every execution
//!   does, makes the next step parse and plan the whole statement anew.
//!   `.one()` adds such a limit, and so does `.limit(n)`. Here the limit is
//!   written into the SQL as a number instead ([`unique`], [`page`],
//!   [`page_tuples`]).
//! - **A multi-row INSERT of `n` rows is a new text for every `n`.** A
//!   write set of 137 grants would prepare a 137-row statement used once.
//!   [`insert_batched`] splits rows into chunks whose sizes come from a
//!   short fixed list, so a few statements serve every write.

use super::BATCH_ROWS;
use crate::error::{Result, db};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryTrait, Select,
    TryGetableMany,
};

/// The row of a lookup by a unique key (`find_by_id`, a unique column),
/// without the `LIMIT 1` that `.one()` would bind. Only for filters that
/// match at most one row.
pub(crate) async fn unique<E, C>(
    conn: &C,
    q: Select<E>,
) -> std::result::Result<Option<E::Model>, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    Ok(q.all(conn).await?.into_iter().next())
}

/// `q` (ordered, not limited yet) with `LIMIT limit` written into its SQL.
fn limited<E: EntityTrait>(backend: DbBackend, q: &Select<E>, limit: u64) -> sea_orm::Statement {
    let mut stmt = q.build(backend);
    // A number formatted by us: nothing from outside reaches the text.
    stmt.sql.push_str(" LIMIT ");
    stmt.sql.push_str(&limit.to_string());
    stmt
}

/// At most `limit` rows of `q` (which must be ordered and carry no limit
/// of its own), as models.
pub(crate) async fn page<E, C>(
    conn: &C,
    q: Select<E>,
    limit: u64,
) -> std::result::Result<Vec<E::Model>, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    let stmt = limited(conn.get_database_backend(), &q, limit);
    E::find().from_raw_sql(stmt).all(conn).await
}

/// At most `limit` rows of `q` (a `select_only` of the tuple's columns, in
/// order; ordered, no limit of its own), as tuples.
pub(crate) async fn page_tuples<T, E, C>(
    conn: &C,
    q: Select<E>,
    limit: u64,
) -> std::result::Result<Vec<T>, DbErr>
where
    T: TryGetableMany,
    E: EntityTrait,
    C: ConnectionTrait,
{
    let stmt = limited(conn.get_database_backend(), &q, limit);
    conn.query_all_raw(stmt)
        .await?
        .iter()
        .map(|row| T::try_get_many_by_index(row).map_err(DbErr::from))
        .collect()
}

/// The size of the next INSERT chunk when `remaining` rows are left:
/// [`BATCH_ROWS`] while that many are left, then the largest power of two
/// that fits. So every write uses at most eleven statement texts per
/// table, and a remainder of `r` rows takes one statement per set bit of
/// `r`.
pub(crate) fn chunk_len(remaining: usize) -> usize {
    if remaining >= BATCH_ROWS {
        BATCH_ROWS
    } else if remaining == 0 {
        0
    } else {
        1 << remaining.ilog2()
    }
}

/// Inserts rows in multi-row statements of [`chunk_len`] rows each.
pub(crate) async fn insert_batched<A, C>(
    conn: &C,
    rows: Vec<A>,
    context: &'static str,
) -> Result<()>
where
    A: ActiveModelTrait + Send,
    C: ConnectionTrait,
{
    let mut left = rows.len();
    let mut rows = rows.into_iter();
    while left > 0 {
        let n = chunk_len(left);
        let chunk: Vec<A> = rows.by_ref().take(n).collect();
        left -= chunk.len();
        <A::Entity as EntityTrait>::insert_many(chunk)
            .exec_without_returning(conn)
            .await
            .map_err(db(context))?;
    }
    Ok(())
}

/// The `grant` table's columns in the order [`insert_grants`] binds them.
const GRANT_COLUMNS: [&str; 9] = [
    "id",
    "recipient_id",
    "subject_kind",
    "subject_id",
    "scheme",
    "legacy",
    "envelope",
    "origin",
    "created_at",
];

/// The text of a `rows`-row INSERT into `grant` for `backend`, built once
/// per backend and chunk size (there are eleven sizes, see [`chunk_len`]).
fn grant_insert_sql(backend: DbBackend, rows: usize) -> &'static str {
    use std::sync::OnceLock;
    const SIZES: usize = 11;
    static CACHE: [[OnceLock<String>; SIZES]; 3] =
        [const { [const { OnceLock::new() }; SIZES] }; 3];
    let b = match backend {
        DbBackend::Sqlite => 0,
        DbBackend::Postgres => 1,
        _ => 2,
    };
    // Only the sizes chunk_len hands out have a slot of their own.
    debug_assert!(rows == BATCH_ROWS || (rows.is_power_of_two() && rows < BATCH_ROWS));
    let slot = if rows == BATCH_ROWS {
        SIZES - 1
    } else {
        rows.ilog2() as usize
    };
    CACHE[b][slot].get_or_init(|| {
        let q = if b == 2 { '`' } else { '"' };
        let mut sql = format!("INSERT INTO {q}grant{q} (");
        for (i, c) in GRANT_COLUMNS.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push(q);
            sql.push_str(c);
            sql.push(q);
        }
        sql.push_str(") VALUES ");
        let mut n = 0usize;
        for r in 0..rows {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..GRANT_COLUMNS.len() {
                if c > 0 {
                    sql.push_str(", ");
                }
                n += 1;
                if b == 1 {
                    sql.push('$');
                    sql.push_str(&n.to_string());
                } else {
                    sql.push('?');
                }
            }
            sql.push(')');
        }
        sql
    })
}

/// Inserts grant rows with `origin`, in chunks of [`chunk_len`] rows. The
/// migration writes every new grant through here: the statement texts are
/// built once and the values bound directly, without an active model and
/// a query builder per row (about 1 % of a migration's CPU).
///
/// A grant is flagged legacy if its scheme is RSA or it is addressed to
/// one of `legacy_to`: holders that have not migrated, whose grant is
/// under their legacy key (in a second migration, an HPKE grant to the
/// previous target's key) and goes when finalize deletes legacy material.
pub(crate) async fn insert_grants<C: ConnectionTrait>(
    conn: &C,
    grants: &[&rekey_core::model::GrantRecord],
    legacy_to: &std::collections::HashSet<rekey_core::ids::PrincipalId>,
    origin: rekey_core::model::GrantOrigin,
    context: &'static str,
) -> Result<()> {
    let backend = conn.get_database_backend();
    let mut rest = grants;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(chunk_len(rest.len()));
        rest = tail;
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * GRANT_COLUMNS.len());
        for g in chunk {
            let (kind, subject) = super::convert::subject_parts(g.subject);
            let scheme = g.envelope.scheme();
            values.extend([
                g.id.to_string().into(),
                g.recipient.to_string().into(),
                kind.to_owned().into(),
                subject.into(),
                scheme.name().to_owned().into(),
                (scheme.is_legacy() || legacy_to.contains(&g.recipient)).into(),
                g.envelope.as_bytes().to_vec().into(),
                origin.as_str().to_owned().into(),
                g.created_at
                    .map(rekey_core::model::Timestamp::as_millis)
                    .into(),
            ]);
        }
        let stmt = sea_orm::Statement::from_sql_and_values(
            backend,
            grant_insert_sql(backend, chunk.len()),
            values,
        );
        conn.execute_raw(stmt).await.map_err(db(context))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        /// Chunks add up to the rows, each is a known shape, and a
        /// remainder below BATCH_ROWS takes one chunk per set bit.
        #[test]
        fn chunks_cover_the_rows_in_few_shapes(total in 0usize..5_000) {
            let mut left = total;
            let mut sizes = Vec::new();
            while left > 0 {
                let n = chunk_len(left);
                prop_assert!(n >= 1 && n <= left);
                sizes.push(n);
                left -= n;
            }
            prop_assert_eq!(sizes.iter().sum::<usize>(), total);
            let shapes: BTreeSet<usize> = sizes.iter().copied().collect();
            for s in &shapes {
                prop_assert!(*s == BATCH_ROWS || s.is_power_of_two());
            }
            let tail = sizes.iter().filter(|s| **s != BATCH_ROWS).count();
            prop_assert_eq!(tail as u32, (total % BATCH_ROWS).count_ones());
        }
    }

    #[test]
    fn a_page_limit_is_written_into_the_sql_not_bound() {
        use crate::entity::grant;
        use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
        let q = grant::Entity::find()
            .filter(grant::Column::RecipientId.eq("someone"))
            .order_by_asc(grant::Column::Id);
        for backend in [DbBackend::Sqlite, DbBackend::Postgres, DbBackend::MySql] {
            let stmt = limited(backend, &q, 1234);
            assert!(stmt.sql.ends_with(" LIMIT 1234"), "{}", stmt.sql);
            // Only the filter's value is bound.
            assert_eq!(stmt.values.map(|v| v.0.len()), Some(1), "{backend:?}");
        }
    }

    /// The hand-written INSERT names the entity's columns, in order, and
    /// has one placeholder per value.
    #[test]
    fn the_grant_insert_matches_the_entity() {
        use crate::entity::grant;
        use sea_orm::{Iden, Iterable};
        let entity: Vec<String> = grant::Column::iter().map(|c| c.to_string()).collect();
        assert_eq!(entity, GRANT_COLUMNS.map(str::to_owned).to_vec());
        for backend in [DbBackend::Sqlite, DbBackend::Postgres, DbBackend::MySql] {
            for rows in [1, 2, 4, 512, BATCH_ROWS] {
                let sql = grant_insert_sql(backend, rows);
                let marks = if backend == DbBackend::Postgres {
                    sql.matches('$').count()
                } else {
                    sql.matches('?').count()
                };
                assert_eq!(marks, rows * GRANT_COLUMNS.len(), "{backend:?} {rows}");
                assert_eq!(sql.matches('(').count(), rows + 1);
            }
        }
        assert!(
            grant_insert_sql(DbBackend::Postgres, 2)
                .ends_with("($10, $11, $12, $13, $14, $15, $16, $17, $18)")
        );
        assert!(grant_insert_sql(DbBackend::MySql, 1).starts_with("INSERT INTO `grant` (`id`, "));
    }

    #[test]
    fn nothing_to_insert_is_no_chunk() {
        assert_eq!(chunk_len(0), 0);
        assert_eq!(chunk_len(1), 1);
        assert_eq!(chunk_len(999), 512);
        assert_eq!(chunk_len(1000), 1000);
        assert_eq!(chunk_len(12_345), 1000);
    }
}
