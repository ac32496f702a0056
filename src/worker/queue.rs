//! Queued demands become finished works. One batch: dead-letter what can never
//! succeed, compute the rest, store works and events in one statement, then one
//! multiple-ack. Nothing is acknowledged before its work is committed, and nothing a
//! publisher sends can hold a batch up: a demand the database refuses is dead-lettered
//! alone, and only outages are retried.

use crate::amqp::dead_letter::DeadLetterer;
use crate::backoff::Backoff;
use crate::cli::AckAfter;
use crate::model::{new_work_code, Origin, WorkDemand};
use crate::shutdown::Shutdown;
use crate::storage::replication::{self, WaitError, WalPosition};
use crate::storage::{works, DbError, PgPool};
use crate::telemetry::TELEMETRY;
use anyhow::{bail, Context};
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use lapin::Channel;
use std::collections::HashSet;
use std::time::Duration;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// New works stored.
    pub stored: u64,
    /// Deliveries whose message_id was already stored (redeliveries), acked without a work.
    pub duplicates: u64,
    /// Deliveries rejected to the dead-letter queue.
    pub dead: u64,
}

/// Why a delivery can never succeed, or its message id and `add_up_to`.
pub fn parse(delivery: &Delivery) -> Result<(String, i64), String> {
    let message_id = match delivery.properties.message_id() {
        Some(id) if !id.as_str().is_empty() => id.as_str(),
        _ => return Err(
            "missing message_id: it is the idempotency key, so the demand cannot be deduplicated"
                .into(),
        ),
    };
    if message_id.contains('\0') {
        // PostgreSQL text cannot hold NUL: such an id could never be stored.
        return Err(format!("message_id {message_id:?} contains a NUL byte"));
    }
    let n = WorkDemand::parse(&delivery.data)?;
    // validate() bounds n to 0..=4294967295, which fits in i64.
    Ok((message_id.to_string(), n as i64))
}

/// A batch between its steps: poison rejected, the rest computed, maybe stored.
#[derive(Debug)]
pub struct Batch {
    /// Computed works and the delivery tag each came from.
    finished: Vec<(works::Finished, u64)>,
    /// Tags of the deliveries acked by this batch's multiple-ack (duplicates included).
    good_tags: Vec<u64>,
    /// Deliveries the database refused for good, with the reason: dead-lettered.
    refused: Vec<(u64, String)>,
    /// The good deliveries themselves (moved, not copied): a refused one is
    /// dead-lettered as a copy of its body and properties.
    kept: Vec<Delivery>,
    deliveries: usize,
    pub outcome: BatchOutcome,
}

/// Processes one batch of deliveries received on `channel`: the three steps below in
/// a row. (The consume loop runs them itself, to overlap two batches' stores.)
pub async fn process_batch(
    pool: &PgPool,
    channel: &Channel,
    dead: &DeadLetterer,
    deliveries: Vec<Delivery>,
    work_delay: Duration,
    shutdown: &Shutdown,
) -> anyhow::Result<BatchOutcome> {
    let batch = prepare(deliveries, dead, work_delay).await?;
    let batch = store(pool, batch, AckAfter::Commit, shutdown).await?;
    acknowledge(channel, dead, &batch).await?;
    Ok(batch.outcome)
}

/// Step 1: dead-letters what can never succeed, computes the rest.
pub async fn prepare(
    deliveries: Vec<Delivery>,
    dead: &DeadLetterer,
    work_delay: Duration,
) -> anyhow::Result<Batch> {
    let mut outcome = BatchOutcome::default();
    let count = deliveries.len();
    let mut good: Vec<(String, i64, u64)> = Vec::with_capacity(count);
    let mut seen = HashSet::with_capacity(count);
    let mut good_tags = Vec::with_capacity(count);
    let mut poison = Vec::new();
    let mut kept = Vec::with_capacity(count);
    for delivery in deliveries {
        match parse(&delivery) {
            Err(reason) => {
                tracing::warn!(delivery_tag = delivery.delivery_tag, %reason, "dead-lettering a demand that can never succeed");
                poison.push((delivery, reason));
            }
            Ok((message_id, n)) => {
                good_tags.push(delivery.delivery_tag);
                if seen.insert(message_id.clone()) {
                    good.push((message_id, n, delivery.delivery_tag));
                } else {
                    outcome.duplicates += 1;
                }
                kept.push(delivery);
            }
        }
    }
    let items: Vec<(&Delivery, &str)> = poison.iter().map(|(d, r)| (d, r.as_str())).collect();
    dead.settle(&items).await?;
    outcome.dead += items.len() as u64;
    let finished = super::compute_all(&good, work_delay).await?;
    Ok(Batch {
        finished,
        good_tags,
        refused: Vec::new(),
        kept,
        deliveries: count,
        outcome,
    })
}

/// Step 2: stores the works and their events in one statement (retrying while the
/// database is unreachable). Redeliveries already stored count as duplicates. When the
/// database refuses the batch for good (a value it cannot hold), each work is stored
/// alone and only the refused ones are set aside, to be dead-lettered. With
/// `--ack-after standby` it then waits for a standby to flush the commit; if the
/// primary changes meanwhile, the commit may not be on the new one, so the batch is
/// stored again there (idempotent: a message_id already stored is skipped).
pub async fn store(
    pool: &PgPool,
    mut batch: Batch,
    ack_after: AckAfter,
    shutdown: &Shutdown,
) -> anyhow::Result<Batch> {
    if batch.finished.is_empty() {
        return Ok(batch);
    }
    let (rows, tags): (Vec<works::Finished>, Vec<u64>) =
        std::mem::take(&mut batch.finished).into_iter().unzip();
    let count = rows.len() as u64;
    let want = ack_after == AckAfter::Standby;
    let (stored, mut target) =
        store_rows(pool, &rows, &tags, &mut batch.refused, want, shutdown).await?;
    while let Some(position) = target {
        match replication::wait_for_standby(pool, &position, STANDBY_LOG_EVERY, shutdown).await {
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
                    .await?
                    .1;
            }
        }
    }
    let refused = batch.refused.len() as u64;
    batch.outcome.stored = stored;
    batch.outcome.dead += refused;
    batch.outcome.duplicates += count - refused - stored;
    Ok(batch)
}

/// How often a batch waiting for a standby says so.
const STANDBY_LOG_EVERY: Duration = Duration::from_secs(10);

/// Stores `rows` in one statement, or one by one when the database refuses them
/// together (the refused ones are added to `refused`). Returns the works inserted and,
/// when `want_position`, where the WAL stood after the commits (`None` when nothing
/// was committed, or when they landed on different timelines: then the caller is told
/// to wait on a position that cannot be reached, and stores again).
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
                    // Stores split across a promotion: a position on the new timeline
                    // says nothing of the old one's commits.
                    (Some(a), Some(b)) if a.timeline != b.timeline => Some(WalPosition {
                        lsn: b.lsn,
                        timeline: "moved".into(),
                    }),
                    (_, b) => b,
                };
            }
            Err(e) => refused.push((*tag, e.to_string())),
        }
    }
    Ok((stored, last))
}

/// Step 3, only after step 2 committed: the refused deliveries dead-lettered, then one
/// multiple-ack for the rest (dead-lettered tags are no longer outstanding). Acks must go
/// in delivery order: a multiple-ack also covers every earlier tag.
pub async fn acknowledge(
    channel: &Channel,
    dead: &DeadLetterer,
    batch: &Batch,
) -> anyhow::Result<()> {
    let mut items = Vec::with_capacity(batch.refused.len());
    for (tag, reason) in &batch.refused {
        tracing::warn!(delivery_tag = tag, %reason, "dead-lettering a demand the database refuses");
        let delivery = batch
            .kept
            .iter()
            .find(|d| d.delivery_tag == *tag)
            .context("a refused delivery is missing from its batch")?;
        items.push((delivery, reason.as_str()));
    }
    dead.settle(&items)
        .await
        .context("dead-lettering failed after commit")?;
    let refused: HashSet<u64> = batch.refused.iter().map(|(tag, _)| *tag).collect();
    let last = batch
        .good_tags
        .iter()
        .filter(|t| !refused.contains(t))
        .max();
    if let Some(&tag) = last {
        channel
            .basic_ack(tag, BasicAckOptions { multiple: true })
            .await
            .context(
                "ack failed after commit (the demands will be redelivered and deduplicated)",
            )?;
    }
    record(&batch.outcome, batch.deliveries);
    Ok(())
}

fn record(outcome: &BatchOutcome, deliveries: usize) {
    let t = &TELEMETRY;
    t.works_stored.inc_by(outcome.stored);
    t.duplicates.inc_by(outcome.duplicates);
    t.dead_lettered.inc_by(outcome.dead);
    t.batch_size.observe(deliveries as f64);
}

/// Stores `rows` (and reads the WAL position after the commit when asked), retrying
/// with backoff while the database is unavailable (or fails in a way that is not
/// about the data, such as a missing table). The outer
/// error is shutdown (the deliveries are then left unacked and the broker requeues
/// them); the inner one is the database refusing the rows, which no retry can fix.
async fn store_with_retry(
    pool: &PgPool,
    rows: &[works::Finished],
    want_position: bool,
    shutdown: &Shutdown,
) -> anyhow::Result<Result<(u64, Option<WalPosition>), DbError>> {
    let mut backoff = Backoff::default();
    loop {
        let result = async {
            let client = pool.get().await?;
            let stored = works::insert_finished(&client, rows).await?;
            // On the same connection: a position read elsewhere could be another
            // server's, after a failover.
            let position = match want_position {
                true => Some(replication::position(&**client).await?),
                false => None,
            };
            Ok::<_, DbError>((stored, position))
        }
        .await;
        match result {
            Ok(stored) => return Ok(Ok(stored)),
            Err(e) if e.is_refusal() => return Ok(Err(e)),
            Err(e) if shutdown.is_triggered() => {
                bail!("shutting down before the batch could be stored: {e}")
            }
            Err(e) => {
                tracing::warn!(error = %e, works = rows.len(), "cannot store the batch yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = shutdown.wait() => {}
                }
            }
        }
    }
}
