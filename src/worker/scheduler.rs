//! The periodic schedules' inserter, inside every `consume`: each step inserts the
//! works of the slots that fell due (`storage::schedules::tick`, which makes one work
//! per slot whatever the number of consumers), then wakes the sweepers. It steps at the
//! earliest next slot, and at least every `MAX_NAP` to see new schedules.

use crate::backoff::Backoff;
use crate::shutdown::Shutdown;
use crate::storage::{notify, schedules, PgPool};
use std::time::Duration;

/// Longest wait between steps: a schedule added meanwhile starts within it.
const MAX_NAP: Duration = Duration::from_secs(1);

/// Shortest wait, so that a slot a clock skew shows as due again does not spin.
const MIN_NAP: Duration = Duration::from_millis(20);

/// Steps until shutdown; a failed step is retried with backoff.
pub async fn run(pool: PgPool, shutdown: Shutdown) {
    let mut backoff = Backoff::default();
    let mut steps: u64 = 0;
    while !shutdown.is_triggered() {
        let nap = match step(&pool, steps).await {
            Ok(next_in) => {
                backoff.reset();
                next_in.map_or(MAX_NAP, |d| d.clamp(MIN_NAP, MAX_NAP))
            }
            Err(e) => {
                tracing::warn!(error = %e, "schedule step failed; retrying");
                backoff.next_delay()
            }
        };
        steps += 1;
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = shutdown.wait() => {}
        }
    }
}

/// One step: the due slots' works, then a NOTIFY for the sweepers when there were any.
/// Every 3600th step also forgets old slot records.
async fn step(pool: &PgPool, steps: u64) -> anyhow::Result<Option<Duration>> {
    let mut client = pool.get().await?;
    let tick = schedules::tick(&mut client).await?;
    if tick.skipped > 0 {
        tracing::warn!(
            skipped = tick.skipped,
            "schedule slots missed while no consumer ran were skipped (not backfilled)"
        );
    }
    if tick.inserted > 0 {
        tracing::debug!(works = tick.inserted, "scheduled works inserted");
        if let Some(sql) = notify::statement(true, true) {
            client.batch_execute(sql).await?;
        }
    }
    if steps.is_multiple_of(3600) {
        schedules::prune_runs(&client).await?;
    }
    Ok(tick.next_in)
}
