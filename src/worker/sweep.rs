//! Pending works created through the API: claimed under a lease, computed, completed.
//! Woken by NOTIFY at commit, with polling as the fallback.

use super::pipeline::Paused;
use crate::backoff::Backoff;
use crate::shutdown::Shutdown;
use crate::storage::{claims, notify::Notifier, DbError, PgPool};
use crate::telemetry::{spans, TELEMETRY};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tracing::Instrument;

/// Shortest wait for the next scheduled work.
const NAP_FLOOR: Duration = Duration::from_millis(20);

/// What one sweep claims at most. Each sweep pays one wait for a synchronous standby
/// (its completion's commit), so with a backlog this bounds the sweeper's rate: at
/// 5,000 POSTs/s on the bench's synchronous pair a batch of 100 fell 4.3 s behind (p50)
/// and one of 1,000 0.13–1.3 s, over four runs. A claim reads only what it takes (`CLAIM_SQL`),
/// so a large batch costs nothing when few works wait, and `batch_limit` shrinks it when
/// works take time (`--work-delay`), so one sweeper does not hold the others' share.
pub const SWEEP_BATCH: usize = 1000;

#[derive(Debug, Clone)]
pub struct SweepOpts {
    pub worker: String,
    pub work_delay: Duration,
    pub lease: Duration,
    pub window: Duration,
    pub max_attempts: i32,
    pub batch: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepOutcome {
    pub claimed: usize,
    pub completed: u64,
    pub failed: u64,
    pub expired: u64,
    /// How long until the earliest scheduled work is due, if any is waiting: the loop
    /// wakes then rather than a whole sweep interval later.
    pub next_due: Option<Duration>,
}

/// One sweep: fail the works out of attempts, expire those out of the window, claim a
/// batch, compute, complete.
pub async fn sweep_once(pool: &PgPool, opts: &SweepOpts) -> Result<SweepOutcome, DbError> {
    let (failed, expired) = tidy(pool, opts).await?;
    let outcome = take_once(pool, opts).await?;
    Ok(SweepOutcome {
        failed,
        expired,
        ..outcome
    })
}

/// Fails the works out of attempts and expires those out of the window: (failed,
/// expired). Expiring reads every pending work, the whole backlog, so the loop does
/// this once per sweep interval, not at every wake-up.
pub async fn tidy(pool: &PgPool, opts: &SweepOpts) -> Result<(u64, u64), DbError> {
    let client = pool.get().await?;
    let failed = claims::fail_exhausted(&client, opts.max_attempts).await?;
    let expired = claims::expire_stale(&client, opts.window).await?;
    TELEMETRY.failed.inc_by(failed);
    TELEMETRY.expired.inc_by(expired);
    Ok((failed, expired))
}

/// Claims a batch, computes, completes.
pub async fn take_once(pool: &PgPool, opts: &SweepOpts) -> Result<SweepOutcome, DbError> {
    let mut client = pool.get().await?;
    // The lease covers the whole batch's simulated work, so a slow batch is not
    // mistaken for a dead worker.
    let lease = opts.lease + opts.work_delay * opts.batch as u32;
    // A lease does not wait for a synchronous standby: one lost in a failover leaves
    // its works claimable on the new primary, where this sweeper's completion (which
    // does wait, and checks the lease) then changes nothing. One wait per sweep, not two.
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL synchronous_commit = local")
        .await?;
    let claimed = claims::claim(
        &tx,
        &opts.worker,
        opts.batch as i64,
        lease,
        opts.window,
        opts.max_attempts,
    )
    .await?;
    tx.commit().await?;
    let mut results = Vec::with_capacity(claimed.len());
    // Each work's span ends after the commit that completes it.
    let mut spans = Vec::new();
    for work in &claimed {
        let span = spans::compute(
            work.id,
            &work.work_code,
            work.attempts,
            work.trace_parent.as_deref(),
        );
        // The table's CHECK keeps add_up_to in range, so this cannot fail in practice.
        match super::compute(work.add_up_to, opts.work_delay)
            .instrument(span.clone())
            .await
        {
            Ok(sum) => results.push((work.id, sum)),
            Err(e) => {
                spans::failed(&span, &e.to_string());
                span.in_scope(|| tracing::error!(work_id = work.id, error = %e, "stored work out of range; leaving it to fail"))
            }
        }
        spans.push(span);
        if let Some(late) = work.late {
            TELEMETRY.schedule_lateness.observe(late.max(0.0));
        }
    }
    let completed = claims::complete(&client, &opts.worker, &results)
        .instrument(spans::db_batch("UPDATE", &spans))
        .await?;
    drop(spans);
    let next_due = claims::next_due(&client).await?;
    TELEMETRY.swept.inc_by(completed);
    Ok(SweepOutcome {
        claimed: claimed.len(),
        completed,
        next_due,
        ..SweepOutcome::default()
    })
}

/// Sweeps whenever woken or every `every`, draining full batches, until shutdown (and
/// tidies at most once per `every`);
/// tells the dashboards through `notifier` when works changed. Claims nothing while
/// the pipeline is paused (a batch in hand is finished first).
pub async fn run(
    pool: PgPool,
    opts: SweepOpts,
    every: Duration,
    wake: Arc<Notify>,
    notifier: Notifier,
    mut paused: Paused,
    shutdown: Shutdown,
) {
    let mut backoff = Backoff::default();
    let mut tidied: Option<Instant> = None;
    while !shutdown.is_triggered() {
        if paused.is_paused() {
            tokio::select! {
                _ = paused.until_running() => {}
                _ = shutdown.wait() => {}
            }
            continue;
        }
        let tidy_due = tidied.is_none_or(|at| at.elapsed() >= every);
        let swept = if tidy_due {
            sweep_once(&pool, &opts).await
        } else {
            take_once(&pool, &opts).await
        };
        match swept {
            Ok(outcome) => {
                backoff.reset();
                if tidy_due {
                    tidied = Some(Instant::now());
                }
                if outcome.claimed as u64 + outcome.failed + outcome.expired > 0 {
                    notifier.works_changed();
                    tracing::debug!(?outcome, "sweep");
                }
                if outcome.claimed == opts.batch {
                    continue; // more may be waiting
                }
                // A NOTIFY cannot say when a future run_at falls due: wake for it (not
                // sooner than NAP_FLOOR: a due work another sweeper holds is not ours).
                let nap = outcome
                    .next_due
                    .map_or(every, |due| due.max(NAP_FLOOR).min(every));
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(nap) => {}
                    _ = shutdown.wait() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "sweep failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = shutdown.wait() => {}
                }
            }
        }
    }
}
