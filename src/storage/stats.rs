//! Aggregates that must not read the history: works finished per time bucket (the
//! dashboard), and a table's estimated size.

use super::DbError;
use deadpool_postgres::GenericClient;
use serde::Serialize;

/// Works that became `done` in one time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Bucket {
    /// Start of the bucket, Unix seconds.
    pub t: i64,
    /// Works that became done in it.
    pub done: i64,
}

/// Works done per `bucket_secs` over the last `buckets` buckets, oldest first, the
/// current (partial) bucket last. Empty buckets are included, so a chart needs no gaps
/// filled. A work counts in the bucket of its last update, which for a done work is
/// when it was finished; the partial index `works_done_updated_on` keeps this cheap.
///
/// The window's start is a plain parameter, planned with its value (an unnamed
/// statement, not a cached one): a bound the planner cannot see, or a generic plan's
/// guess of a third of the table, made it scan ten million works (126 ms in `make bench`).
pub async fn throughput(
    client: &impl GenericClient,
    bucket_secs: i64,
    buckets: i64,
) -> Result<Vec<Bucket>, DbError> {
    const SQL: &str = "\
        WITH done AS ( \
            SELECT (floor(extract(epoch FROM updated_on) / $1::bigint) * $1::bigint)::bigint AS t, count(*) AS n \
            FROM works WHERE status = 'done' AND updated_on >= to_timestamp($2::bigint) \
            GROUP BY 1) \
        SELECT s.t, coalesce(done.n, 0) \
        FROM generate_series($2::bigint, $3::bigint, $1::bigint) AS s(t) \
        LEFT JOIN done ON done.t = s.t \
        ORDER BY s.t";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let last = now / bucket_secs * bucket_secs;
    let first = last - bucket_secs * (buckets - 1);
    let rows = client.query(SQL, &[&bucket_secs, &first, &last]).await?;
    Ok(rows
        .iter()
        .map(|r| Bucket {
            t: r.get(0),
            done: r.get(1),
        })
        .collect())
}

/// Estimated rows of a table, from the planner's statistics: `count(*)` on the
/// history would be a full scan.
pub async fn estimated_rows(client: &impl GenericClient, table: &str) -> Result<i64, DbError> {
    let row = client
        .query_one(
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass($1)",
            &[&table],
        )
        .await?;
    Ok(row.get(0))
}
