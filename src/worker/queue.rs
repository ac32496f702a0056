//! Queued demands become finished works. One batch: dead-letter what can never
//! succeed, compute the rest, store works and events in one statement, then one
//! multiple-ack. Nothing is acknowledged before its work is committed.

use crate::backoff::Backoff;
use crate::model::{new_work_code, Origin, WorkDemand};
use crate::shutdown::Shutdown;
use crate::storage::{works, PgPool};
use crate::telemetry::{Telemetry, TELEMETRY};
use anyhow::{bail, Context};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use lapin::Channel;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

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
        Some(id) if !id.as_str().is_empty() => id.as_str().to_string(),
        _ => return Err(
            "missing message_id: it is the idempotency key, so the demand cannot be deduplicated"
                .into(),
        ),
    };
    let n = WorkDemand::parse(&delivery.data)?;
    // validate() bounds n to 0..=4294967295, which fits in i64.
    Ok((message_id, n as i64))
}

/// A batch between its steps: poison rejected, the rest computed, maybe stored.
#[derive(Debug)]
pub struct Batch {
    finished: Vec<works::Finished>,
    /// The highest tag that is not rejected: one multiple-ack covers the batch.
    last_good_tag: Option<u64>,
    deliveries: usize,
    pub outcome: BatchOutcome,
}

/// Processes one batch of deliveries received on `channel`: the three steps below in
/// a row. (The consume loop runs them itself, to overlap two batches' stores.)
pub async fn process_batch(
    pool: &PgPool,
    channel: &Channel,
    deliveries: Vec<Delivery>,
    work_delay: Duration,
    shutdown: &Shutdown,
) -> anyhow::Result<BatchOutcome> {
    let batch = prepare(deliveries, work_delay).await?;
    let batch = store(pool, batch, shutdown).await?;
    acknowledge(channel, &batch).await?;
    Ok(batch.outcome)
}

/// Step 1: dead-letters what can never succeed, computes the rest.
pub async fn prepare(deliveries: Vec<Delivery>, work_delay: Duration) -> anyhow::Result<Batch> {
    let mut outcome = BatchOutcome::default();
    let mut good: Vec<(String, i64)> = Vec::with_capacity(deliveries.len());
    let mut seen = HashSet::with_capacity(deliveries.len());
    let mut last_good_tag = None;
    for delivery in &deliveries {
        match parse(delivery) {
            Err(reason) => {
                tracing::warn!(delivery_tag = delivery.delivery_tag, %reason, "dead-lettering a demand that can never succeed");
                let sent = delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await?;
                if !sent {
                    bail!(
                        "could not reject delivery {}: the channel is closed",
                        delivery.delivery_tag
                    );
                }
                outcome.dead += 1;
            }
            Ok((message_id, n)) => {
                last_good_tag = Some(delivery.delivery_tag);
                if seen.insert(message_id.clone()) {
                    good.push((message_id, n));
                } else {
                    outcome.duplicates += 1;
                }
            }
        }
    }
    let finished = compute_all(&good, work_delay).await?;
    Ok(Batch {
        finished,
        last_good_tag,
        deliveries: deliveries.len(),
        outcome,
    })
}

/// Step 2: stores the works and their events in one statement (retrying while the
/// database is unreachable). Redeliveries already stored count as duplicates.
pub async fn store(pool: &PgPool, mut batch: Batch, shutdown: &Shutdown) -> anyhow::Result<Batch> {
    if !batch.finished.is_empty() {
        let finished = std::mem::take(&mut batch.finished);
        let count = finished.len() as u64;
        let stored = store_with_retry(pool, finished, shutdown).await?;
        batch.outcome.stored = stored;
        batch.outcome.duplicates += count - stored;
    }
    Ok(batch)
}

/// Step 3, only after step 2 committed: one multiple-ack for the whole batch (rejected
/// tags are no longer outstanding). Acks must go in delivery order: a multiple-ack
/// also covers every earlier tag.
pub async fn acknowledge(channel: &Channel, batch: &Batch) -> anyhow::Result<()> {
    if let Some(tag) = batch.last_good_tag {
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
    Telemetry::add(&t.works_stored, outcome.stored);
    Telemetry::add(&t.duplicates, outcome.duplicates);
    Telemetry::add(&t.dead_lettered, outcome.dead);
    t.observe_batch(deliveries);
}

async fn compute_all(
    good: &[(String, i64)],
    work_delay: Duration,
) -> anyhow::Result<Vec<works::Finished>> {
    let mut finished = Vec::with_capacity(good.len());
    for (message_id, n) in good {
        let started = SystemTime::now();
        let result = super::compute(*n, work_delay).await?;
        finished.push(works::Finished {
            message_id: message_id.clone(),
            work_code: new_work_code(Origin::Consumer),
            add_up_to: *n,
            result,
            started,
            stopped: SystemTime::now(),
        });
    }
    Ok(finished)
}

/// Stores the batch, retrying with backoff while the database is unreachable. Gives up
/// only at shutdown: the deliveries are then left unacked and the broker requeues them.
async fn store_with_retry(
    pool: &PgPool,
    mut batch: Vec<works::Finished>,
    shutdown: &Shutdown,
) -> anyhow::Result<u64> {
    let mut backoff = Backoff::default();
    loop {
        let result = async {
            let client = pool.get().await?;
            works::insert_finished(&client, &batch).await
        }
        .await;
        match result {
            Ok(stored) => return Ok(stored),
            Err(e) if shutdown.is_triggered() => {
                bail!("shutting down before the batch could be stored: {e}")
            }
            Err(e) => {
                tracing::warn!(error = %e, works = batch.len(), "cannot store the batch yet; retrying");
                // A work_code collision is astronomically rare but would repeat: new codes.
                for f in &mut batch {
                    f.work_code = new_work_code(Origin::Consumer);
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = shutdown.wait() => {}
                }
            }
        }
    }
}
