//! Step 2 of a queue batch: store its works, retrying what can be retried, sorting out
//! what the database refuses, and (with `--ack-after standby`) waiting for a standby to
//! hold the commit before the batch may be acknowledged.

use super::queue::Batch;
use crate::backoff::Backoff;
use crate::model::{new_work_code, Origin};
use crate::shutdown::Shutdown;
use crate::storage::inflight::InFlight;
use crate::storage::standby_wait::{self, StandbyWatch, WaitError, WalPosition};
use crate::storage::{works, DbError, PgPool};
use crate::telemetry::{spans, TELEMETRY};
use anyhow::bail;
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

/// Step 2: stores the works and their events in one statement (retrying while the
/// database is unreachable). Redeliveries already stored count as duplicates. When the
/// database refuses the batch for good (a value it cannot hold), each work is stored
/// alone and only the refused ones are set aside, to be dead-lettered. With
/// `--ack-after standby` it then waits for a standby to flush the commit; if the
/// primary changes meanwhile, the commit may not be on the new one, so the batch is
/// stored again there (idempotent: a message_id already stored is skipped).
///
/// `slot` is the batch's place among the stores in flight: given back once the commit
/// is made, so a batch waiting for its standby does not hold up the next one's store.
pub async fn store(
    pool: &PgPool,
    mut batch: Batch,
    standby: Option<&StandbyWatch>,
    slot: OwnedSemaphorePermit,
    shutdown: &Shutdown,
) -> anyhow::Result<Batch> {
    if batch.finished.is_empty() {
        return Ok(batch);
    }
    let (rows, tags): (Vec<works::Finished>, Vec<u64>) =
        std::mem::take(&mut batch.finished).into_iter().unzip();
    let count = rows.len() as u64;
    let want = standby.is_some();
    let demands: Vec<tracing::Span> = batch.spans.iter().map(|(_, s)| s.clone()).collect();
    let span = spans::db_batch("INSERT", &demands);
    let (stored, mut target) = store_rows(pool, &rows, &tags, &mut batch.refused, want, shutdown)
        .instrument(span.clone())
        .await?;
    drop(slot);
    while let (Some(position), Some(standby)) = (&target, standby) {
        match standby.wait(position, STANDBY_LOG_EVERY, shutdown).await {
            Ok(()) => break,
            Err(WaitError::Shutdown) => bail!("shutting down while waiting for a standby's flush"),
            Err(WaitError::Moved) => {
                tracing::warn!(works = count, "the primary changed before a standby flushed this batch: storing it again on the new one");
                let refused: HashSet<u64> = batch.refused.iter().map(|(t, _)| *t).collect();
                let (rows, tags): (Vec<_>, Vec<_>) = rows
                    .iter()
                    .cloned()
                    .zip(tags.iter().copied())
                    .filter(|(_, t)| !refused.contains(t))
                    .unzip();
                target = store_rows(pool, &rows, &tags, &mut batch.refused, want, shutdown)
                    .instrument(span.clone())
                    .await?
                    .1;
            }
        }
    }
    let refused = batch.refused.len() as u64;
    if count - refused > stored {
        warn_changed_bodies(pool, &rows).await;
    }
    batch.outcome.stored = stored;
    batch.outcome.dead += refused;
    batch.outcome.duplicates += count - refused - stored;
    Ok(batch)
}

/// Redeliveries are recognised by message_id alone: one whose body differs from the
/// stored work's is a publisher reusing ids, which deduplication would silently hide.
/// Says so (best effort: a failed look-up only loses the warning).
async fn warn_changed_bodies(pool: &PgPool, rows: &[works::Finished]) {
    let Ok(client) = pool.get().await else { return };
    let ids: Vec<&str> = rows.iter().map(|r| r.message_id.as_str()).collect();
    let Ok(stored) = works::stored_demands(&client, &ids).await else {
        return;
    };
    for (id, stored_n) in stored {
        if let Some(row) = rows
            .iter()
            .find(|r| r.message_id == id && r.add_up_to != stored_n)
        {
            TELEMETRY.changed_redeliveries.inc();
            tracing::warn!(message_id = %id, stored = stored_n, redelivered = row.add_up_to, "a demand redelivered with a stored message_id but another add_up_to: kept the stored work (is a publisher reusing message ids?)");
        }
    }
}

/// How often a batch waiting for a standby says so.
const STANDBY_LOG_EVERY: Duration = Duration::from_secs(10);

/// Stores `rows` in one statement, or one by one when the database refuses them
/// together (the refused ones are added to `refused`). Returns the works inserted and,
/// when `want_position`, where the WAL stood after the commits (`None` when nothing
/// was committed; when they landed on different timelines, the old timeline's, which
/// the new primary cannot reach: the wait then reports the move and the caller stores
/// again).
async fn store_rows(
    pool: &PgPool,
    rows: &[works::Finished],
    tags: &[u64],
    refused: &mut Vec<(u64, String)>,
    want_position: bool,
    shutdown: &Shutdown,
) -> anyhow::Result<(u64, Option<WalPosition>)> {
    match store_with_retry(pool, rows, want_position, shutdown).await? {
        Ok(stored) => return Ok(stored),
        Err(batch_error) => {
            tracing::warn!(error = %batch_error, works = rows.len(), "the database refused the batch; storing its works one by one")
        }
    }
    let mut stored = 0;
    let mut last: Option<WalPosition> = None;
    for (row, tag) in rows.iter().zip(tags) {
        // A fresh code, in case the refusal was a work_code collision.
        let mut row = row.clone();
        row.work_code = new_work_code(Origin::Consumer);
        match store_with_retry(pool, std::slice::from_ref(&row), want_position, shutdown).await? {
            Ok((n, position)) => {
                stored += n;
                last = match (last, position) {
                    // Stores split across a promotion: keep the old timeline's position,
                    // which the new primary cannot reach, so the wait reports the move
                    // and the batch is stored again (no made-up timeline needed).
                    (Some(a), Some(b)) if a.timeline != b.timeline => Some(a),
                    (_, b) => b,
                };
            }
            Err(e) => refused.push((*tag, e.to_string())),
        }
    }
    Ok((stored, last))
}

/// Stores `rows` (and reads the WAL position after the commit when asked), retrying
/// with backoff. Outages (the database out of reach, or a schema an operator must fix)
/// are retried without limit; any other failure `MAX_FAILURES` times, then it is the
/// inner error, as a refusal of the data is at once: the caller stores the rows one by
/// one and dead-letters those that keep failing alone (a trigger that raises, a limit),
/// so no demand can wedge the batches behind it. The outer error is shutdown (the
/// deliveries are then left unacked and the broker requeues them).
async fn store_with_retry(
    pool: &PgPool,
    rows: &[works::Finished],
    want_position: bool,
    shutdown: &Shutdown,
) -> anyhow::Result<Result<(u64, Option<WalPosition>), DbError>> {
    let mut backoff = Backoff::default();
    let mut failures = 0;
    loop {
        let result = async {
            // An aborted store (its AMQP connection was lost) cancels its statement.
            let client = InFlight::checkout(pool).await?;
            let stored = works::insert_finished(&*client, rows).await?;
            // On the same connection: a position read elsewhere could be another
            // server's, after a failover.
            let position = match want_position {
                true => Some(standby_wait::position(&***client).await?),
                false => None,
            };
            client.done();
            Ok::<_, DbError>((stored, position))
        }
        .await;
        match result {
            Ok(stored) => return Ok(Ok(stored)),
            Err(e) if e.is_refusal() => return Ok(Err(e)),
            Err(e) if shutdown.is_triggered() => {
                bail!("shutting down before the batch could be stored: {e}")
            }
            Err(e) if !e.is_outage() && failures + 1 >= MAX_FAILURES => return Ok(Err(e)),
            Err(e) => {
                failures += u32::from(!e.is_outage());
                tracing::warn!(error = %e, works = rows.len(), "cannot store the batch yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = shutdown.wait() => {}
                }
            }
        }
    }
}

/// Failures that are neither an outage nor a refusal before a store is given up (the
/// batch then goes one by one; a single work, to the dead letters).
const MAX_FAILURES: u32 = 3;
