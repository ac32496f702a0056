//! The webhook deliverer inside `consume --webhook-url`. Each round walks the outbox's
//! log for first attempts (`storage::webhook_walk`: one deliverer at a time, in commit
//! order, behind a cursor), then claims due retries and redeliveries from
//! `webhook_deliveries` (FOR UPDATE SKIP LOCKED, under a lease, so deliverers side by
//! side never send one at the same time and a killed one's claims are taken again). Both
//! send concurrently and record each outcome: a 2xx is delivered; anything else is
//! tried again after an exponential backoff with full jitter until the retry period
//! has passed, then failed. Woken by the NOTIFY the writers send after each commit,
//! and by a short poll.

use crate::backoff::Backoff;
use crate::shutdown::Shutdown;
use crate::storage::webhook_walk as walk;
use crate::storage::webhooks::{self as outbox, Claimed, Outcome};
use crate::storage::{listen, DbError, PgPool};
use crate::telemetry::webhooks::WEBHOOKS;
use crate::webhook::send::{Attempt, Sender, ATTEMPT_TIMEOUT};
use crate::webhook::DeliveryState;
use crate::worker::registry::Tally;
use futures_util::stream::{self, StreamExt};
use rand::Rng;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Deliveries claimed at once, and sent at once at most.
pub const BATCH: usize = 128;
const CONCURRENT: usize = 64;
/// The poll beside the NOTIFY: a delivery leaves within about this of its commit even
/// when a notification was lost, and a retry within this of its due time.
const POLL: Duration = Duration::from_millis(500);
/// While the queue worker holds deliveries, a full round is followed by a pause this
/// many times its length: deliveries then take about a fifth of the time, and storing
/// works the rest (see `run`).
const YIELD: u32 = 4;
/// How often the outbox depth is counted.
const DEPTH_EVERY: Duration = Duration::from_secs(5);
/// The first retry waits up to this (full jitter), doubling per attempt up to the cap.
const BACKOFF_BASE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries stop once a delivery has been retried this long (`--webhook-retry-for`).
    pub retry_for: Duration,
    /// The longest wait between two attempts.
    pub backoff_max: Duration,
}

impl RetryPolicy {
    /// Exponential backoff with full jitter (AWS's "Exponential Backoff And Jitter"):
    /// uniform in [0, min(cap, base × 2^(attempt-1))].
    pub fn delay(&self, attempt: i64) -> Duration {
        let exponent = attempt.clamp(1, 32) as u32 - 1;
        let ceiling = BACKOFF_BASE
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.backoff_max);
        ceiling.mul_f64(rand::rng().random_range(0.0..=1.0))
    }
}

/// The claim's lease: every wave of a batch may take the whole attempt bound, and a
/// margin for the record. Past it the deliveries are taken again (a duplicate, with the
/// same `webhook-id`), never lost.
pub fn lease() -> Duration {
    let waves = BATCH.div_ceil(CONCURRENT) as u32;
    ATTEMPT_TIMEOUT * waves + Duration::from_secs(10)
}

/// One round: the next batch of the log (if no other deliverer walks it), then the due
/// retries. Returns the larger of the two batches' sizes.
pub async fn deliver_once(
    pool: &PgPool,
    sender: &Sender,
    policy: &RetryPolicy,
) -> Result<usize, DbError> {
    let walked = walk_once(pool, sender, policy).await?;
    let retried = retry_once(pool, sender, policy).await?;
    Ok(walked.max(retried))
}

/// First attempts, in commit order: the sends happen inside the transaction that holds
/// the cursor, and moving it past them commits with the failed ones' retry rows.
async fn walk_once(pool: &PgPool, sender: &Sender, policy: &RetryPolicy) -> Result<usize, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let Some(mut batch) = walk::take(&tx, BATCH as i64, lease()).await? else {
        return Ok(0);
    };
    let outcomes = send_all(sender, policy, std::mem::take(&mut batch.claimed)).await;
    walk::finish(&tx, &batch, &outcomes).await?;
    tx.commit().await?;
    Ok(batch.read)
}

/// Retries and redeliveries: claimed under a lease (a killed deliverer's claims are
/// taken again once it passes), sent, and their outcomes recorded.
async fn retry_once(
    pool: &PgPool,
    sender: &Sender,
    policy: &RetryPolicy,
) -> Result<usize, DbError> {
    let claimed = outbox::claim(&pool.get().await?, BATCH as i64, lease()).await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let count = claimed.len();
    let outcomes = send_all(sender, policy, claimed).await;
    outbox::record(&pool.get().await?, &outcomes).await?;
    Ok(count)
}

async fn send_all(sender: &Sender, policy: &RetryPolicy, claimed: Vec<Claimed>) -> Vec<Outcome> {
    stream::iter(claimed)
        .map(|c| attempt(sender, policy, c))
        .buffer_unordered(CONCURRENT)
        .collect()
        .await
}

async fn attempt(sender: &Sender, policy: &RetryPolicy, claimed: Claimed) -> Outcome {
    // The Work JSON, as GET /works/{id} shows it now.
    let body = serde_json::to_vec(&claimed.work).unwrap_or_default();
    WEBHOOKS.attempts.inc();
    let started = Instant::now();
    let sent = sender.send(&claimed.webhook_id, body).await;
    let (last_status, last_error) = match &sent {
        Attempt::Delivered(status) => (Some(i64::from(*status)), None),
        Attempt::Refused(status) => (Some(i64::from(*status)), Some(format!("HTTP {status}"))),
        Attempt::NoAnswer(why) => (None, Some(why.clone())),
    };
    let elapsed = started.elapsed().as_secs_f64();
    let state = match sent {
        Attempt::Delivered(_) => {
            WEBHOOKS.outcome("delivered");
            WEBHOOKS.latency.observe(claimed.age + elapsed);
            DeliveryState::Delivered
        }
        _ if claimed.retrying_for + elapsed >= policy.retry_for.as_secs_f64() => {
            WEBHOOKS.outcome("failed");
            tracing::warn!(delivery = claimed.id, work_id = claimed.work.id, error = ?last_error,
                "webhook failed: no 2xx within the retry period (ppctl webhook redeliver)");
            DeliveryState::Failed
        }
        _ => {
            WEBHOOKS.outcome("retried");
            DeliveryState::Pending
        }
    };
    Outcome {
        id: claimed.id,
        attempt: claimed.attempt,
        state,
        last_status,
        last_error,
        retry_in: policy.delay(claimed.attempt),
    }
}

/// Turns recording on (every process's status changes now write deliveries) before the
/// caller stores a single work, so that none of this process's works goes unrecorded,
/// then delivers in the background until shutdown: await the handle for its last round.
pub async fn start(
    pool: &PgPool,
    sender: Sender,
    policy: RetryPolicy,
    busy: Arc<Tally>,
    shutdown: &Shutdown,
) -> Option<tokio::task::JoinHandle<()>> {
    crate::telemetry::webhooks::register();
    let on = turn_recording_on(pool, shutdown).await;
    let run = run(pool.clone(), sender, policy, busy, shutdown.clone());
    on.then(|| tokio::spawn(run))
}

/// Delivers until shutdown. An attempt under way at shutdown is finished and recorded
/// (within `ATTEMPT_TIMEOUT`).
///
/// Storing works comes first: with a backlog of deliveries while the queue worker holds
/// deliveries of its own, each full round is followed by a pause (`YIELD`), so that a
/// burst is stored at nearly its full speed and its webhooks follow, at full speed once
/// the burst is stored. One POST costs about what storing one work does: a deliverer
/// that kept pace during a burst would cut the drain by about 40%. Under a load that
/// never lets up, deliveries go on at a fifth of their speed and the outbox depth shows
/// whether they keep up.
async fn run(
    pool: PgPool,
    sender: Sender,
    policy: RetryPolicy,
    busy: Arc<Tally>,
    shutdown: Shutdown,
) {
    tracing::info!(url = %sender.shown(), retry_for = ?policy.retry_for, "webhook deliverer starting");
    let wake = Arc::new(Notify::new());
    listen::spawn(
        &pool,
        listen::CHANGES_CHANNEL,
        wake.clone(),
        shutdown.clone(),
    );
    let mut backoff = Backoff::default();
    let mut counted = Instant::now() - DEPTH_EVERY;
    while !shutdown.is_triggered() {
        if counted.elapsed() >= DEPTH_EVERY {
            count_depth(&pool).await;
            counted = Instant::now();
        }
        let round = Instant::now();
        let wait = match deliver_once(&pool, &sender, &policy).await {
            Ok(claimed) if claimed == BATCH => {
                // More may be due: at once, or after the pause when the queue is busy.
                if busy.deliveries_held.load(Ordering::Relaxed) > 0 {
                    let pause = round.elapsed() * YIELD;
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.wait() => {}
                    }
                }
                continue;
            }
            Ok(_) => {
                backoff.reset();
                POLL
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhook delivery round failed; retrying");
                backoff.next_delay()
            }
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => {}
        }
    }
}

async fn turn_recording_on(pool: &PgPool, shutdown: &Shutdown) -> bool {
    let mut backoff = Backoff::default();
    while !shutdown.is_triggered() {
        let on = async { outbox::set_recording(&pool.get().await?, true).await };
        match on.await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot turn webhook recording on yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = shutdown.wait() => {}
                }
            }
        }
    }
    false
}

async fn count_depth(pool: &PgPool) {
    let count = async { outbox::pending(&pool.get().await?).await };
    if let Ok(depth) = count.await {
        WEBHOOKS.depth.set(depth);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap() {
        let policy = RetryPolicy {
            retry_for: Duration::from_secs(86_400),
            backoff_max: Duration::from_secs(60),
        };
        for attempt in 1..=40 {
            let cap = Duration::from_secs(1 << (attempt - 1).min(20)).min(policy.backoff_max);
            assert!(policy.delay(attempt) <= cap, "attempt {attempt}");
        }
        let spread: Vec<Duration> = (0..50).map(|_| policy.delay(10)).collect();
        assert!(spread.iter().any(|d| *d < Duration::from_secs(30)));
        assert!(lease() > ATTEMPT_TIMEOUT * BATCH.div_ceil(CONCURRENT) as u32);
    }
}
