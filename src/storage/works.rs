//! Queries on works and events: create, fetch, search, and the consumer's batch insert.

use super::DbError;
use crate::model::{var, Event, Work, WorkStatus};
use deadpool_postgres::GenericClient;
use std::time::SystemTime;
use tokio_postgres::Row;

/// The columns every Work query selects, in the order `work_from_row` reads them.
pub(super) const WORK_COLUMNS: &str = "id, work_code, add_up_to, status, result, \
    floor(extract(epoch FROM created_on))::bigint, floor(extract(epoch FROM updated_on))::bigint, trace_parent, \
    floor(extract(epoch FROM run_at))::bigint";

pub(super) fn work_from_row(row: &Row) -> Result<Work, DbError> {
    let status: String = row.get(3);
    let status: WorkStatus = status.parse().map_err(DbError::Other)?;
    Ok(Work {
        id: row.get(0),
        work_code: row.get(1),
        add_up_to: row.get(2),
        done: status == WorkStatus::Done,
        status,
        result: row.get(4),
        created_on: row.get(5),
        updated_on: row.get(6),
        run_at: row.get(8),
        trace_id: None,
        trace_url: None,
    }
    .with_trace(row.get::<_, Option<&str>>(7)))
}

pub(super) fn works_from_rows(rows: &[Row]) -> Result<Vec<Work>, DbError> {
    rows.iter().map(work_from_row).collect()
}

/// Inserts a pending work, one row: its `work/created` event is read from the row
/// through the `events` view (migration 0007), under the first id of a block it takes
/// from the event sequence (the caller notifies the sweepers after the commit). With a `deadline`, the insert happens only
/// if the database runs it before then: a request that timed out (its client was told
/// 503) must not leave a work behind when a stalled database wakes up and runs the
/// statement waiting in its socket. The deadline is on the database's clock
/// (`PgPool::database_time`): this host's and the server's need not agree.
pub async fn create_pending(
    client: &impl GenericClient,
    work_code: &str,
    add_up_to: i64,
    deadline: Option<SystemTime>,
    trace_parent: Option<&str>,
) -> Result<Work, DbError> {
    let sql = format!(
        "INSERT INTO works (work_code, add_up_to, first_event_id, trace_parent) \
         SELECT $1, $2, nextval('event_log_id_seq'), $4 \
         WHERE $3::timestamptz IS NULL OR clock_timestamp() < $3 \
         RETURNING {WORK_COLUMNS}"
    );
    let stmt = client.prepare_cached(&sql).await?;
    match client
        .query_opt(&stmt, &[&work_code, &add_up_to, &deadline, &trace_parent])
        .await?
    {
        Some(row) => work_from_row(&row),
        None => Err(DbError::Unavailable(
            "the database ran the insert after its deadline; nothing was created".into(),
        )),
    }
}

pub async fn get(client: &impl GenericClient, id: i64) -> Result<Option<Work>, DbError> {
    let stmt = client
        .prepare_cached(&format!("SELECT {WORK_COLUMNS} FROM works WHERE id = $1"))
        .await?;
    let row = client.query_opt(&stmt, &[&id]).await?;
    row.as_ref().map(work_from_row).transpose()
}

/// A work's events oldest first, or None when the work does not exist.
pub async fn events(
    client: &impl GenericClient,
    work_id: i64,
) -> Result<Option<Vec<Event>>, DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT e.id, e.work_id, e.work_code, e.variable, e.value, floor(extract(epoch FROM e.created_on))::bigint \
             FROM works w LEFT JOIN events e ON e.work_id = w.id WHERE w.id = $1 ORDER BY e.id",
        )
        .await?;
    let rows = client.query(&stmt, &[&work_id]).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let events = rows
        .iter()
        .filter(|r| r.get::<_, Option<i64>>(0).is_some())
        .map(|r| Event {
            id: r.get(0),
            work_id: r.get(1),
            work_code: r.get(2),
            variable: r.get(3),
            value: r.get(4),
            created_on: r.get(5),
        })
        .collect();
    Ok(Some(events))
}

pub const COUNTS_SQL: &str = "\
    SELECT status, count(*) FROM works WHERE status IN ('pending', 'running', 'scheduled') GROUP BY status \
    UNION ALL SELECT s.status, s.n::bigint FROM ( \
        SELECT sum(done) AS done, sum(failed) AS failed, sum(expired) AS expired, \
               sum(cancelled) AS cancelled FROM work_counts) t, \
      LATERAL (VALUES ('done', t.done), ('failed', t.failed), ('expired', t.expired), \
                      ('cancelled', t.cancelled)) AS s(status, n) \
    ORDER BY 1";

/// Works counted by status, for `db status`, health and metrics, exactly and without
/// reading the history: the works in flight (pending, running, scheduled) from their partial
/// index, the finished ones (done, failed, expired, cancelled, which are the history)
/// from running totals the writers keep in the transaction that changes them (see
/// `count_shard`).
pub async fn count_by_status(client: &impl GenericClient) -> Result<Vec<(String, i64)>, DbError> {
    let stmt = client.prepare_cached(COUNTS_SQL).await?;
    let rows = client.query(&stmt, &[]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Which row of `work_counts` a transaction adds its status changes to (works done,
/// failed, expired or cancelled, a retry's and a prune's subtractions): one of 16 at
/// random, so concurrent writers rarely wait on each other's row lock. The totals are
/// the sums over the 16 rows.
pub fn count_shard() -> i16 {
    (rand::random::<u8>() % 16).into()
}

/// A queued demand, computed and ready to be stored as a finished work.
#[derive(Debug, Clone)]
pub struct Finished {
    pub message_id: String,
    pub work_code: String,
    pub add_up_to: i64,
    pub result: i64,
    pub started: SystemTime,
    pub stopped: SystemTime,
    /// The `traceparent` of the span that processed the demand (tracing on).
    pub trace_parent: Option<String>,
    /// Redelivered with no message id of its own: stored with a possible-repeat event.
    pub possible_repeat: bool,
    /// Asked to run later: stored `scheduled` (not computed; `result` is ignored) with
    /// `work/created` and `work/scheduled` events, for a sweeper to run when due.
    pub run_at: Option<SystemTime>,
}

/// The value of a `demand/possible-repeat` event.
const POSSIBLE_REPEAT_WHY: &str = "redelivered by the broker with no message_id: if a crash came \
     between an earlier commit and its ack, this repeats that work";

/// Stores a batch of finished works in one statement, each with its block of four
/// event ids: its events (created and started at `started`, stopped with the result at
/// `stopped`) are read from the row through the `events` view (migration 0004).
/// A work asked for later (`run_at`) is stored `scheduled` instead, with its events
/// in `event_log`. A `message_id` already stored is skipped (a redelivery): the returned count is of
/// works actually inserted. `batch` must not repeat a message_id. A work that may repeat
/// an earlier one (`possible_repeat`) also gets an event that says so, after its four.
pub async fn insert_finished(
    client: &impl GenericClient,
    batch: &[Finished],
) -> Result<u64, DbError> {
    const SQL: &str = "\
        WITH input AS ( \
            SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[], $6::timestamptz[], $8::text[], $12::timestamptz[]) \
                AS t(message_id, work_code, add_up_to, result, started, stopped, trace_parent, run_at)), \
        ins AS ( \
            INSERT INTO works (message_id, work_code, add_up_to, status, result, created_on, \
                               updated_on, first_event_id, trace_parent, run_at) \
            SELECT message_id, work_code, add_up_to, \
                   CASE WHEN run_at IS NULL THEN 'done' ELSE 'scheduled' END, \
                   CASE WHEN run_at IS NULL THEN result END, started, stopped, \
                   CASE WHEN run_at IS NULL THEN nextval('event_log_id_seq') END, trace_parent, run_at \
            FROM input \
            ON CONFLICT (message_id) DO NOTHING \
            RETURNING id, message_id, created_on, run_at), \
        marked AS ( \
            INSERT INTO event_log (work_id, variable, value, created_on) \
            SELECT id, $10, $11, created_on FROM ins WHERE message_id = ANY($9::text[])), \
        later AS ( \
            INSERT INTO event_log (work_id, variable, value, created_on) \
            SELECT i.id, e.variable, e.value, i.created_on FROM ins i CROSS JOIN LATERAL (VALUES \
                (0, 'work/created', NULL), \
                (1, $13, to_char(i.run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))) \
                AS e(ord, variable, value) \
            WHERE i.run_at IS NOT NULL ORDER BY i.id, e.ord), \
        counted AS ( \
            UPDATE work_counts SET done = done + (SELECT count(*) FROM ins WHERE run_at IS NULL) \
            WHERE shard = $7) \
        SELECT count(*) FROM ins";
    let stmt = client.prepare_cached(SQL).await?;
    let ids: Vec<&str> = batch.iter().map(|f| f.message_id.as_str()).collect();
    let codes: Vec<&str> = batch.iter().map(|f| f.work_code.as_str()).collect();
    let ns: Vec<i64> = batch.iter().map(|f| f.add_up_to).collect();
    let results: Vec<i64> = batch.iter().map(|f| f.result).collect();
    let started: Vec<SystemTime> = batch.iter().map(|f| f.started).collect();
    let stopped: Vec<SystemTime> = batch.iter().map(|f| f.stopped).collect();
    let traces: Vec<Option<&str>> = batch.iter().map(|f| f.trace_parent.as_deref()).collect();
    let repeats: Vec<&str> = batch
        .iter()
        .filter(|f| f.possible_repeat)
        .map(|f| f.message_id.as_str())
        .collect();
    let run_at: Vec<Option<SystemTime>> = batch.iter().map(|f| f.run_at).collect();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 13] = [
        &ids,
        &codes,
        &ns,
        &results,
        &started,
        &stopped,
        &count_shard(),
        &traces,
        &repeats,
        &var::POSSIBLE_REPEAT,
        &POSSIBLE_REPEAT_WHY,
        &run_at,
        &var::SCHEDULED,
    ];
    let row = client.query_one(&stmt, &params).await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// The `add_up_to` of the stored works among these message ids.
pub async fn stored_demands(
    client: &impl GenericClient,
    message_ids: &[&str],
) -> Result<Vec<(String, i64)>, DbError> {
    let sql = "SELECT message_id, add_up_to FROM works WHERE message_id = ANY($1)";
    let rows = client.query(sql, &[&message_ids]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
