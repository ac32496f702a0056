//! The webhook outbox (sql/0013, 0016): the recording switch, the retries' claims and
//! results in `webhook_deliveries`, and the operators' listing and redelivery across it
//! and the log (the log's walk is `webhook_walk`). Nothing here knows HTTP.

use super::works::{works_from_rows, WORK_COLUMNS};
use super::DbError;
use crate::model::Work;
use crate::webhook::{Delivery, DeliveryState};
use deadpool_postgres::GenericClient;
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::Row;

/// The columns every Delivery query selects from `webhook_deliveries d` and
/// `webhook_settings s`, in the order `delivery_from_row` reads them.
const DELIVERY_COLUMNS: &str = "d.id, 'msg_' || s.id_prefix || '_' || d.id, d.work_id, \
    d.work_status, d.state, d.attempts, \
    CASE WHEN d.state = 'pending' THEN floor(extract(epoch FROM d.next_attempt))::bigint END, \
    floor(extract(epoch FROM d.created_on))::bigint, \
    floor(extract(epoch FROM d.delivered_on))::bigint, d.last_status, d.last_error";

fn delivery_from_row(row: &Row) -> Result<Delivery, DbError> {
    let state: String = row.get(4);
    Ok(Delivery {
        id: row.get(0),
        webhook_id: row.get(1),
        work_id: row.get(2),
        work_status: row.get(3),
        state: state.parse().map_err(DbError::Other)?,
        attempts: row.get(5),
        next_attempt: row.get(6),
        created_on: row.get(7),
        delivered_on: row.get(8),
        last_status: row.get(9),
        last_error: row.get(10),
    })
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Turns recording on or off for every process (the triggers read it).
pub async fn set_recording(client: &impl GenericClient, on: bool) -> Result<(), DbError> {
    client
        .execute("UPDATE webhook_settings SET enabled = $1", &[&on])
        .await?;
    Ok(())
}

/// A delivery taken by a deliverer, with its work as it is now.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub webhook_id: String,
    /// The attempt this claim is: its result is recorded only if no one claimed since.
    pub attempt: i64,
    /// Seconds since it was recorded (the delivery latency) and since retries began.
    pub age: f64,
    pub retrying_for: f64,
    pub work: Work,
}

/// Claims up to `limit` due deliveries for `lease`: an attempt that outlives it (its
/// deliverer died) is taken again by the next claim after it.
pub async fn claim(
    client: &impl GenericClient,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>, DbError> {
    const SQL: &str = "\
        WITH due AS ( \
            SELECT id FROM webhook_deliveries \
            WHERE state = 'pending' AND next_attempt <= now() \
            ORDER BY next_attempt LIMIT $1 FOR UPDATE SKIP LOCKED) \
        UPDATE webhook_deliveries d \
        SET attempts = d.attempts + 1, next_attempt = now() + $2 * interval '1 millisecond' \
        FROM due, webhook_settings s WHERE d.id = due.id \
        RETURNING d.id, 'msg_' || s.id_prefix || '_' || d.id, d.attempts, d.work_id, \
            extract(epoch FROM now() - d.created_on)::float8, \
            extract(epoch FROM now() - d.retry_from)::float8";
    let stmt = client.prepare_cached(SQL).await?;
    let rows = client.query(&stmt, &[&limit, &millis(lease)]).await?;
    with_works(client, rows.iter()).await
}

/// Claims from rows of (id, webhook id, attempt, work id, age, retrying for), each with
/// its work as it is now, read in one query. A work pruned meanwhile has nothing left
/// to announce: its delivery is left out.
pub(super) async fn with_works<'r>(
    client: &impl GenericClient,
    rows: impl Iterator<Item = &'r Row> + Clone,
) -> Result<Vec<Claimed>, DbError> {
    let ids: Vec<i64> = rows.clone().map(|r| r.get(3)).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let works_sql = format!("SELECT {WORK_COLUMNS} FROM works WHERE id = ANY($1)");
    let works = works_from_rows(&client.query(&works_sql, &[&ids]).await?)?;
    let works: HashMap<i64, Work> = works.into_iter().map(|w| (w.id, w)).collect();
    Ok(rows
        .filter_map(|r| {
            let work_id: i64 = r.get(3);
            // A work announced twice in one batch (failed, retried, done) is sent twice.
            let work = works.get(&work_id)?.clone();
            Some(Claimed {
                id: r.get(0),
                webhook_id: r.get(1),
                attempt: r.get(2),
                age: r.get(4),
                retrying_for: r.get(5),
                work,
            })
        })
        .collect())
}

/// What became of one claimed attempt.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: i64,
    pub attempt: i64,
    pub state: DeliveryState,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    /// Pending: when to try again.
    pub retry_in: Duration,
}

/// Records the attempts' outcomes in one statement. An attempt whose claim was taken
/// over (another deliverer counted a later attempt) is not recorded: the later one is.
pub async fn record(client: &impl GenericClient, results: &[Outcome]) -> Result<u64, DbError> {
    const SQL: &str = "\
        WITH input AS (SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], \
            $4::bigint[], $5::text[], $6::float8[]) \
            AS t(id, attempt, state, last_status, last_error, retry_ms)) \
        UPDATE webhook_deliveries d SET state = i.state, last_status = i.last_status, \
            last_error = i.last_error, \
            delivered_on = CASE WHEN i.state = 'delivered' THEN now() END, \
            next_attempt = CASE WHEN i.state = 'pending' \
                THEN now() + i.retry_ms * interval '1 millisecond' ELSE d.next_attempt END \
        FROM input i \
        WHERE d.id = i.id AND d.attempts = i.attempt AND d.state = 'pending'";
    let stmt = client.prepare_cached(SQL).await?;
    let ids: Vec<i64> = results.iter().map(|r| r.id).collect();
    let attempts: Vec<i64> = results.iter().map(|r| r.attempt).collect();
    let states: Vec<&str> = results.iter().map(|r| r.state.as_str()).collect();
    let statuses: Vec<Option<i64>> = results.iter().map(|r| r.last_status).collect();
    let errors: Vec<Option<&str>> = results.iter().map(|r| r.last_error.as_deref()).collect();
    let retry: Vec<f64> = results.iter().map(|r| millis(r.retry_in)).collect();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&ids, &attempts, &states, &statuses, &errors, &retry];
    Ok(client.execute(&stmt, &params).await?)
}

/// Pending deliveries: the outbox's depth (retries due or waiting, and the log ahead of
/// the cursor).
pub async fn pending(client: &impl GenericClient) -> Result<i64, DbError> {
    let sql = "SELECT (SELECT count(*) FROM webhook_deliveries WHERE state = 'pending') \
        + (SELECT count(*) FROM webhook_outbox o, webhook_cursor c \
           WHERE (o.txid, o.id) > (c.txid, c.id))";
    Ok(client.query_one(sql, &[]).await?.get(0))
}

/// Deliveries newest first, in one state or all, below `before_id` (paging): the
/// newest of `webhook_deliveries` and the newest of the log (the rows with no delivery
/// row of their own, in the state the cursor gives them), each read newest first
/// through its primary key, merged. Pending rows of the log are found through its
/// order index instead (the cursor's position is a literal of the statement, so the
/// planner sees how few lie ahead of it).
pub async fn list(
    client: &impl GenericClient,
    state: Option<DeliveryState>,
    limit: i64,
    before_id: Option<i64>,
) -> Result<Vec<Delivery>, DbError> {
    let at = "SELECT txid::text, id FROM webhook_cursor";
    let cursor = client.query_one(at, &[]).await?;
    let (txid, id): (String, i64) = (cursor.get(0), cursor.get(1));
    let in_log = match state {
        None => "true",
        Some(DeliveryState::Pending) => "(o.txid, o.id) > ($4::text::xid8, $5)",
        Some(DeliveryState::Delivered) => LOG_BEHIND,
        Some(DeliveryState::Failed) => "false",
    };
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM ( \
            (SELECT id, work_id, work_status, state, attempts, next_attempt, created_on, \
                 delivered_on, last_status, last_error FROM webhook_deliveries \
             WHERE ($1::text IS NULL OR state = $1) AND ($2::bigint IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3) \
            UNION ALL \
            (SELECT o.id, o.work_id, o.work_status, \
                 CASE WHEN {LOG_BEHIND} THEN 'delivered' ELSE 'pending' END, \
                 CASE WHEN {LOG_BEHIND} THEN 1 ELSE 0 END, \
                 CASE WHEN {LOG_BEHIND} THEN NULL ELSE o.created_on END, o.created_on, \
                 NULL::timestamptz, NULL::bigint, NULL::text FROM webhook_outbox o \
             WHERE {in_log} AND ($2::bigint IS NULL OR o.id < $2) \
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries x WHERE x.id = o.id) \
             ORDER BY o.id DESC LIMIT $3)) d, webhook_settings s \
         ORDER BY d.id DESC LIMIT $3"
    );
    let state = state.map(DeliveryState::as_str);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&state, &before_id, &limit, &txid, &id];
    let rows = client.query(&sql, &params).await?;
    rows.iter().map(delivery_from_row).collect()
}

/// Whether a log row is behind the cursor ($4, $5): its first attempt was made.
const LOG_BEHIND: &str = "(o.txid, o.id) <= ($4::text::xid8, $5)";

/// Sends one delivery again, whatever its state: due now, with a new retry period and
/// the same `webhook-id`. A delivery only in the log gets its row in
/// `webhook_deliveries` first (the walk skips it from then on). `None`: no such
/// delivery, or its work is gone.
pub async fn redeliver(client: &impl GenericClient, id: i64) -> Result<Option<Delivery>, DbError> {
    const FROM_LOG: &str = "\
        INSERT INTO webhook_deliveries (id, work_id, work_status, attempts, created_on) \
        OVERRIDING SYSTEM VALUE \
        SELECT o.id, o.work_id, o.work_status, \
            CASE WHEN (o.txid, o.id) <= (c.txid, c.id) THEN 1 ELSE 0 END, o.created_on \
        FROM webhook_outbox o, webhook_cursor c \
        WHERE o.id = $1 AND EXISTS (SELECT 1 FROM works w WHERE w.id = o.work_id) \
        ON CONFLICT (id) DO NOTHING";
    client.execute(FROM_LOG, &[&id]).await?;
    let sql = format!(
        "WITH d AS (UPDATE webhook_deliveries SET state = 'pending', next_attempt = now(), \
             retry_from = now(), delivered_on = NULL WHERE id = $1 RETURNING *) \
         SELECT {DELIVERY_COLUMNS} FROM d, webhook_settings s"
    );
    let row = client.query_opt(&sql, &[&id]).await?;
    row.as_ref().map(delivery_from_row).transpose()
}

/// Sends up to `limit` failed deliveries again (oldest first). Returns how many.
pub async fn redeliver_failed(client: &impl GenericClient, limit: i64) -> Result<u64, DbError> {
    let sql = "UPDATE webhook_deliveries SET state = 'pending', next_attempt = now(), \
                   retry_from = now() \
               WHERE id IN (SELECT id FROM webhook_deliveries WHERE state = 'failed' \
                            ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)";
    Ok(client.execute(sql, &[&limit]).await?)
}
