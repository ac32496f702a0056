//! Retention: finished works (done, failed, expired, cancelled) created before a
//! cut-off are deleted with their events, in small batches, so the history stops
//! growing and the writers never wait on a long delete. Pending and running works are
//! never touched. Deduplication of redelivered demands holds for works still stored,
//! that is within the retention period (redeliveries come within minutes or hours).

use super::{works::count_shard, DbError, PgPool};
use std::time::Duration;

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

/// Deletes one batch of finished works created before `now - older_than` (and their
/// events, by the foreign key's cascade), taking them off the running totals in the
/// same transaction. None when another process is pruning.
pub async fn prune_batch(
    client: &mut deadpool_postgres::Client,
    older_than: Duration,
    limit: i64,
) -> Result<Option<u64>, DbError> {
    const SQL: &str = "\
        WITH doomed AS ( \
            SELECT id FROM works \
            WHERE created_on < now() - $1 * interval '1 millisecond' \
              AND status IN ('done', 'failed', 'expired', 'cancelled') \
            ORDER BY created_on LIMIT $2 FOR UPDATE SKIP LOCKED), \
        gone AS (DELETE FROM works WHERE id IN (SELECT id FROM doomed) RETURNING status), \
        counted AS ( \
            UPDATE work_counts SET \
                done = done - (SELECT count(*) FROM gone WHERE status = 'done'), \
                failed = failed - (SELECT count(*) FROM gone WHERE status = 'failed'), \
                expired = expired - (SELECT count(*) FROM gone WHERE status = 'expired'), \
                cancelled = cancelled - (SELECT count(*) FROM gone WHERE status = 'cancelled') \
            WHERE shard = $3) \
        SELECT count(*) FROM gone";
    let tx = client.transaction().await?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?
        .get(0);
    if !locked {
        return Ok(None);
    }
    let stmt = tx.prepare_cached(SQL).await?;
    let millis = older_than.as_secs_f64() * 1000.0;
    let row = tx
        .query_one(&stmt, &[&millis, &limit, &count_shard()])
        .await?;
    tx.commit().await?;
    Ok(Some(row.get::<_, i64>(0) as u64))
}

/// Prunes batch after batch until none is left (or another process holds the lock),
/// pausing between batches so the writers always get the table back.
pub async fn prune(pool: &PgPool, older_than: Duration) -> Result<Pruned, DbError> {
    let mut pruned = Pruned::default();
    loop {
        let mut client = pool.get().await?;
        match prune_batch(&mut client, older_than, PRUNE_BATCH).await? {
            None => return Ok(pruned),
            Some(n) => {
                pruned.ran = true;
                pruned.works += n;
                if (n as i64) < PRUNE_BATCH {
                    return Ok(pruned);
                }
            }
        }
        drop(client);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
