//! Retention: finished works (done, failed, expired, cancelled) that finished before a
//! cut-off are deleted with their events, in small batches, so the history stops
//! growing and the writers never wait on a long delete. Pending and running works are
//! never touched. Deduplication of redelivered demands holds for works still stored,
//! that is within the retention period (redeliveries come within minutes or hours).

use super::inflight::InFlight;
use super::{works::count_shard, DbError, PgPool};
use std::time::{Duration, SystemTime};

/// Works deleted per transaction: a few milliseconds of locks at a time.
pub const PRUNE_BATCH: i64 = 2_000;

/// One pruner at a time across every process; any fixed key, the same everywhere.
pub const LOCK_KEY: i64 = 0x7070_6374_6c00_0002;

/// What one `prune` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub works: u64,
    /// False when another process held the pruning lock: nothing was done.
    pub ran: bool,
}

/// Deletes one batch of finished works that finished (last changed) before `cutoff`,
/// and their events and webhook deliveries by the foreign keys' cascade (the webhook
/// log's rows by their own age), taking them off the running totals
/// in the same transaction. The caller holds the pruning lock. Returns the works
/// deleted and whether the batch was full (more may be left).
pub async fn prune_batch(
    client: &mut deadpool_postgres::Client,
    cutoff: SystemTime,
    limit: i64,
) -> Result<(u64, bool), DbError> {
    // Counted from when a work finished, not from when it was created: a work retried
    // and finished today is a month away from pruning, whenever it was created. Done
    // works come from their partial index on updated_on; the other finished statuses
    // from the small index on the works not done. The webhook log has no foreign key to
    // works (sql/0016): its rows go by their own age, through its BRIN index.
    const SQL: &str = "\
        WITH done_doomed AS ( \
            SELECT id FROM works WHERE status = 'done' AND updated_on < $1 \
            ORDER BY updated_on LIMIT $2 FOR UPDATE SKIP LOCKED), \
        other_doomed AS ( \
            SELECT id FROM works WHERE status IN ('failed', 'expired', 'cancelled') \
               AND updated_on < $1 \
            LIMIT $2 FOR UPDATE SKIP LOCKED), \
        gone AS (DELETE FROM works WHERE id IN \
            (SELECT id FROM done_doomed UNION ALL SELECT id FROM other_doomed) RETURNING status), \
        log_gone AS (DELETE FROM webhook_outbox WHERE id = ANY(ARRAY( \
            SELECT id FROM webhook_outbox WHERE created_on < $1 LIMIT $2)) RETURNING 1), \
        counted AS ( \
            UPDATE work_counts SET \
                done = done - (SELECT count(*) FROM gone WHERE status = 'done'), \
                failed = failed - (SELECT count(*) FROM gone WHERE status = 'failed'), \
                expired = expired - (SELECT count(*) FROM gone WHERE status = 'expired'), \
                cancelled = cancelled - (SELECT count(*) FROM gone WHERE status = 'cancelled') \
            WHERE shard = $3) \
        SELECT count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status <> 'done'), \
            (SELECT count(*) FROM log_gone) \
        FROM gone";
    let tx = client.transaction().await?;
    let stmt = tx.prepare_cached(SQL).await?;
    let row = tx
        .query_one(&stmt, &[&cutoff, &limit, &count_shard()])
        .await?;
    tx.commit().await?;
    let (done, other, log): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    Ok((
        (done + other) as u64,
        done == limit || other == limit || log == limit,
    ))
}

/// Prunes batch after batch until a batch is not full, pausing between batches so the
/// writers always get the table back. The cut-off is fixed when the round starts (the
/// server's clock): works that finish meanwhile belong to the next round, so a round
/// ends however fast works finish. One pruner at a time, for the whole run: the lock is
/// a session lock on the connection the batches use, so no other process starts
/// between two batches. A run that fails drops that connection (`InFlight`), which
/// releases it.
pub async fn prune(pool: &PgPool, older_than: Duration) -> Result<Pruned, DbError> {
    let mut client = InFlight::checkout(pool).await?;
    let millis = older_than.as_secs_f64() * 1000.0;
    let row = client
        .query_one(
            "SELECT pg_try_advisory_lock($1), now() - $2 * interval '1 millisecond'",
            &[&LOCK_KEY, &millis],
        )
        .await?;
    let (locked, cutoff): (bool, SystemTime) = (row.get(0), row.get(1));
    if !locked {
        client.done();
        return Ok(Pruned::default());
    }
    let mut pruned = Pruned {
        ran: true,
        ..Pruned::default()
    };
    loop {
        let (n, full) = prune_batch(&mut client, cutoff, PRUNE_BATCH).await?;
        pruned.works += n;
        if !full {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await?;
    client.done();
    Ok(pruned)
}
