//! Aggregates for the dashboard: how many works were finished, bucket by bucket.

use super::DbError;
use deadpool_postgres::GenericClient;
use serde::Serialize;

/// Works that became `done` in one time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// Start of the bucket, Unix seconds.
    pub t: i64,
    pub done: i64,
}

/// Works done per `bucket_secs` over the last `buckets` buckets, oldest first, the
/// current (partial) bucket last. Empty buckets are included, so a chart needs no gaps
/// filled. A work counts in the bucket of its last update, which for a done work is
/// when it was finished; the partial index `works_done_updated_on` keeps this cheap.
pub async fn throughput(
    client: &impl GenericClient,
    bucket_secs: i64,
    buckets: i64,
) -> Result<Vec<Bucket>, DbError> {
    const SQL: &str = "\
        WITH p AS (SELECT $1::bigint AS secs, $2::bigint AS n), \
        now_b AS (SELECT (floor(extract(epoch FROM now()) / secs) * secs)::bigint AS t, secs, n FROM p), \
        done AS ( \
            SELECT (floor(extract(epoch FROM w.updated_on) / b.secs) * b.secs)::bigint AS t, count(*) AS n \
            FROM works w, now_b b \
            WHERE w.status = 'done' AND w.updated_on >= to_timestamp(b.t - b.secs * (b.n - 1)) \
            GROUP BY 1) \
        SELECT s.t, coalesce(done.n, 0) \
        FROM now_b b, generate_series(b.t - b.secs * (b.n - 1), b.t, b.secs) AS s(t) \
        LEFT JOIN done ON done.t = s.t \
        ORDER BY s.t";
    let stmt = client.prepare_cached(SQL).await?;
    let rows = client.query(&stmt, &[&bucket_secs, &buckets]).await?;
    Ok(rows
        .iter()
        .map(|r| Bucket {
            t: r.get(0),
            done: r.get(1),
        })
        .collect())
}
