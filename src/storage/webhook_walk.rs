//! The webhook log's walk (sql/0016): one deliverer at a time takes the next deliveries
//! in commit order behind the cursor, sends them while its transaction holds the
//! cursor's lock, and in that same transaction moves the cursor past them and gives
//! each failed first attempt its row in `webhook_deliveries`, where the retries go on.
//! A success writes nothing of its own. A deliverer that dies mid-batch never commits:
//! the next walker sends the batch again (the same `webhook-id`s).

use super::webhooks::{with_works, Claimed, Outcome};
use super::DbError;
use crate::webhook::DeliveryState;
use deadpool_postgres::{GenericClient, Transaction};
use std::time::Duration;

/// A batch taken from the log: what to send, and how far it reaches.
pub struct Batch {
    pub claimed: Vec<Claimed>,
    /// Log rows read, skipped ones included (a full batch: more may follow).
    pub read: usize,
    /// The last log row read: the cursor moves past it.
    last: Option<i64>,
}

/// Takes the cursor and up to `limit` log rows after it, inside `tx`. `None`: another
/// deliverer holds the cursor. `lease` bounds how long `tx` may then sit idle (the sends):
/// past it the server ends the session, and with it a frozen walker's lock.
pub async fn take(
    tx: &Transaction<'_>,
    limit: i64,
    lease: Duration,
) -> Result<Option<Batch>, DbError> {
    let idle = format!(
        "SET LOCAL idle_in_transaction_session_timeout = {}",
        lease.as_millis()
    );
    tx.batch_execute(&idle).await?;
    let cursor = "SELECT txid::text, id FROM webhook_cursor FOR UPDATE SKIP LOCKED";
    let Some(at) = tx.query_opt(cursor, &[]).await? else {
        return Ok(None);
    };
    let (txid, id): (String, i64) = (at.get(0), at.get(1));
    // Only rows whose transaction is older than every one still running: all of them
    // have ended, so none can still appear behind the cursor. A row that already has
    // its own delivery row (redelivered before its first attempt) is passed, not sent.
    const SQL: &str = "\
        SELECT o.id, 'msg_' || s.id_prefix || '_' || o.id, 1::bigint, o.work_id, \
            extract(epoch FROM now() - o.created_on)::float8, \
            extract(epoch FROM now() - o.created_on)::float8, \
            EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.id = o.id) \
        FROM webhook_outbox o, webhook_settings s \
        WHERE (o.txid, o.id) > ($1::text::xid8, $2) \
          AND o.txid < pg_snapshot_xmin(pg_current_snapshot()) \
        ORDER BY o.txid, o.id LIMIT $3";
    let stmt = tx.prepare_cached(SQL).await?;
    let rows = tx.query(&stmt, &[&txid, &id, &limit]).await?;
    let last = rows.last().map(|r| r.get(0));
    let due = rows.iter().filter(|r| !r.get::<_, bool>(6));
    let claimed = with_works(tx, due).await?;
    Ok(Some(Batch {
        claimed,
        read: rows.len(),
        last,
    }))
}

/// Ends the batch in `tx` (the caller commits): failed first attempts get their row for
/// the retries, and the cursor moves past the batch.
pub async fn finish(
    tx: &Transaction<'_>,
    batch: &Batch,
    outcomes: &[Outcome],
) -> Result<(), DbError> {
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.state != DeliveryState::Delivered)
        .collect();
    if !failed.is_empty() {
        const SQL: &str = "\
            INSERT INTO webhook_deliveries (id, work_id, work_status, state, attempts, \
                next_attempt, retry_from, created_on, last_status, last_error) \
            OVERRIDING SYSTEM VALUE \
            SELECT o.id, o.work_id, o.work_status, i.state, 1, \
                now() + i.retry_ms * interval '1 millisecond', o.created_on, o.created_on, \
                i.last_status, i.last_error \
            FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::float8[]) \
                AS i(id, state, last_status, last_error, retry_ms) \
            JOIN webhook_outbox o USING (id) \
            WHERE EXISTS (SELECT 1 FROM works w WHERE w.id = o.work_id) \
            ON CONFLICT (id) DO NOTHING";
        let ids: Vec<i64> = failed.iter().map(|o| o.id).collect();
        let states: Vec<&str> = failed.iter().map(|o| o.state.as_str()).collect();
        let statuses: Vec<Option<i64>> = failed.iter().map(|o| o.last_status).collect();
        let errors: Vec<Option<&str>> = failed.iter().map(|o| o.last_error.as_deref()).collect();
        let retry: Vec<f64> = failed
            .iter()
            .map(|o| o.retry_in.as_secs_f64() * 1000.0)
            .collect();
        let stmt = tx.prepare_cached(SQL).await?;
        tx.execute(&stmt, &[&ids, &states, &statuses, &errors, &retry])
            .await?;
    }
    if let Some(last) = batch.last {
        let advance = "UPDATE webhook_cursor c SET txid = o.txid, id = o.id \
                       FROM webhook_outbox o WHERE o.id = $1";
        tx.execute(advance, &[&last]).await?;
    }
    Ok(())
}
