//! Leases on pending works: claim with SKIP LOCKED, complete, and fail the ones whose
//! workers died too often. Each state change writes its event in the same statement.
//! A statement that changes nothing writes nothing (its count row included): it takes
//! no transaction id, so its commit neither flushes nor waits for a synchronous standby.

use super::DbError;
use deadpool_postgres::GenericClient;
use std::time::Duration;

/// A work claimed by this worker until its lease ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub id: i64,
    pub work_code: String,
    pub add_up_to: i64,
    pub attempts: i32,
    /// The `traceparent` of the request that created the work (tracing on).
    pub trace_parent: Option<String>,
    /// A work made to run later, on its first claim: seconds since its run_at.
    pub late: Option<f64>,
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Due scheduled works first (their lateness is promised), then running ones whose
/// lease ended (their worker died; few), then pending ones, up to the limit. A
/// scheduled work has no window to keep: it was not due before. Each part asks for
/// one status, so it reads (status, id) in order and stops at its limit: one query
/// for two statuses would sort every pending work, the whole backlog, per claim.
pub const CLAIM_SQL: &str = "\
    WITH sched AS ( \
        SELECT id FROM works WHERE status = 'scheduled' AND run_at <= now() \
        ORDER BY run_at LIMIT $5 FOR UPDATE SKIP LOCKED), \
    lapsed AS ( \
        SELECT id FROM works \
        WHERE status = 'running' AND locked_until < now() \
          AND updated_on >= now() - $3 * interval '1 millisecond' AND attempts < $4 \
        ORDER BY id LIMIT $5 - (SELECT count(*) FROM sched) FOR UPDATE SKIP LOCKED), \
    pend AS ( \
        SELECT id FROM works \
        WHERE status = 'pending' \
          AND updated_on >= now() - $3 * interval '1 millisecond' AND attempts < $4 \
        ORDER BY id \
        LIMIT $5 - (SELECT count(*) FROM sched) - (SELECT count(*) FROM lapsed) \
        FOR UPDATE SKIP LOCKED), \
    claimed AS ( \
        UPDATE works w SET status = 'running', locked_by = $1, \
               locked_until = now() + $2 * interval '1 millisecond', \
               attempts = w.attempts + 1, updated_on = now() \
        FROM (SELECT id, true AS scheduled FROM sched \
              UNION ALL SELECT id, false FROM lapsed \
              UNION ALL SELECT id, false FROM pend) due \
        WHERE w.id = due.id \
        RETURNING w.id, w.work_code, w.add_up_to, w.attempts, w.trace_parent, \
                  CASE WHEN due.scheduled THEN extract(epoch FROM now() - w.run_at)::float8 END), \
    ev AS ( \
        INSERT INTO event_log (work_id, variable, value) \
        SELECT id, 'compute/start', 'attempt ' || attempts FROM claimed) \
    SELECT * FROM claimed ORDER BY id";

/// Claims up to `limit` works that are scheduled and due, pending, or running with an expired lease
/// (their worker died), changed within `window` (created, retried or last claimed),
/// with attempts left. Records a
/// `compute/start` event per claim. Concurrent claimers never get the same work.
pub async fn claim(
    client: &impl GenericClient,
    worker: &str,
    limit: i64,
    lease: Duration,
    window: Duration,
    max_attempts: i32,
) -> Result<Vec<Claimed>, DbError> {
    let stmt = client.prepare_cached(CLAIM_SQL).await?;
    let rows = client
        .query(
            &stmt,
            &[
                &worker,
                &millis(lease),
                &millis(window),
                &max_attempts,
                &limit,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Claimed {
            id: r.get(0),
            work_code: r.get(1),
            add_up_to: r.get(2),
            attempts: r.get(3),
            trace_parent: r.get(4),
            late: r.get(5),
        })
        .collect())
}

/// Marks claimed works done with their results and `compute/stop` + `compute/result`
/// events. Only works still leased to `worker` are updated: if the lease was lost and
/// the work reclaimed, the other worker's result is the one that counts. Returns the
/// number of works completed.
pub async fn complete(
    client: &impl GenericClient,
    worker: &str,
    done: &[(i64, i64)],
) -> Result<u64, DbError> {
    const SQL: &str = "\
        WITH input AS (SELECT * FROM UNNEST($2::bigint[], $3::bigint[]) AS t(id, result)), \
        done AS ( \
            UPDATE works w SET status = 'done', result = input.result, \
                   locked_by = NULL, locked_until = NULL, updated_on = now() \
            FROM input WHERE w.id = input.id AND w.status = 'running' AND w.locked_by = $1 \
            RETURNING w.id, w.work_code, w.result), \
        counted AS ( \
            UPDATE work_counts SET done = done + (SELECT count(*) FROM done) WHERE shard = $4) \
        INSERT INTO event_log (work_id, variable, value) \
        SELECT d.id, e.variable, e.value FROM done d \
        CROSS JOIN LATERAL (VALUES (1, 'compute/stop', NULL::text), (2, 'compute/result', d.result::text)) \
            AS e(ord, variable, value) \
        ORDER BY d.id, e.ord";
    let stmt = client.prepare_cached(SQL).await?;
    let ids: Vec<i64> = done.iter().map(|d| d.0).collect();
    let results: Vec<i64> = done.iter().map(|d| d.1).collect();
    let shard = super::works::count_shard();
    Ok(client
        .execute(&stmt, &[&worker, &ids, &results, &shard])
        .await?
        / 2)
}

/// Marks `failed`, with a `compute/failed` event, every work whose lease expired after
/// its last allowed attempt. Returns how many.
pub async fn fail_exhausted(
    client: &impl GenericClient,
    max_attempts: i32,
) -> Result<u64, DbError> {
    const SQL: &str = "\
        WITH failed AS ( \
            UPDATE works SET status = 'failed', locked_by = NULL, locked_until = NULL, updated_on = now() \
            WHERE id IN ( \
                SELECT id FROM works \
                WHERE status = 'running' AND locked_until < now() AND attempts >= $1 \
                ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED) \
            RETURNING id, work_code, attempts), \
        counted AS ( \
            UPDATE work_counts SET failed = failed + (SELECT count(*) FROM failed) \
            WHERE shard = $2 AND EXISTS (SELECT FROM failed)) \
        INSERT INTO event_log (work_id, variable, value) \
        SELECT id, 'compute/failed', 'lease expired after ' || attempts || ' attempts' FROM failed";
    let stmt = client.prepare_cached(SQL).await?;
    let shard = super::works::count_shard();
    Ok(client.execute(&stmt, &[&max_attempts, &shard]).await?)
}

/// Marks `expired`, with a `work/expired` event saying why, every work unchanged for
/// `window` (since created, retried or last claimed) that is still pending, or running
/// with an expired lease: no sweeper claims
/// it any more, and it must not stay pending forever, unnoticed. A work whose worker
/// still holds a live lease is left to finish. Returns how many.
pub async fn expire_stale(client: &impl GenericClient, window: Duration) -> Result<u64, DbError> {
    const SQL: &str = "\
        WITH expired AS ( \
            UPDATE works SET status = 'expired', locked_by = NULL, locked_until = NULL, updated_on = now() \
            WHERE id IN ( \
                SELECT id FROM works \
                WHERE status IN ('pending', 'running') \
                  AND (status = 'pending' OR locked_until < now()) \
                  AND updated_on < now() - $1 * interval '1 millisecond' \
                ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED) \
            RETURNING id, work_code, status), \
        ev AS ( \
            INSERT INTO event_log (work_id, variable, value) \
            SELECT id, 'work/expired', \
                   'not finished within the sweep window of ' || $2 FROM expired), \
        counted AS ( \
            UPDATE work_counts SET expired = expired + (SELECT count(*) FROM expired) \
            WHERE shard = $3 AND EXISTS (SELECT FROM expired)) \
        SELECT count(*) FROM expired";
    let stmt = client.prepare_cached(SQL).await?;
    let window_text = humantime::format_duration(window).to_string();
    let shard = super::works::count_shard();
    let row = client
        .query_one(&stmt, &[&millis(window), &window_text, &shard])
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// How long until the earliest scheduled work is due (zero when one is due already),
/// or `None` when none waits. Read from the partial index on run_at (migration 0015).
pub async fn next_due(client: &impl GenericClient) -> Result<Option<Duration>, DbError> {
    const SQL: &str = "SELECT extract(epoch FROM min(run_at) - now())::float8 \
        FROM works WHERE status = 'scheduled'";
    let stmt = client.prepare_cached(SQL).await?;
    let secs: Option<f64> = client.query_one(&stmt, &[]).await?.get(0);
    Ok(secs.map(|s| Duration::from_secs_f64(s.clamp(0.0, 86_400.0))))
}
