//! The workers inside `consume`: one for queued demands (its steps in `queue`, its
//! loop in `consumer`), one that sweeps pending API works. Each has a one-step
//! function the tests call directly and a thin loop.

pub mod consumer;
pub mod message_ids;
pub mod pipeline;
pub mod queue;
pub mod registry;
pub mod retention;
pub mod scheduler;
pub mod store;
pub mod stores;
pub mod sweep;
pub mod webhooks;

use crate::engine::{self, OutOfRange};
use crate::model::{new_work_code, Origin};
use crate::storage::works;
use std::time::{Duration, SystemTime};

/// Computes one sum, taking at least `delay` (to simulate expensive work).
pub async fn compute(add_up_to: i64, delay: Duration) -> Result<i64, OutOfRange> {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    engine::sum(add_up_to.into())
}

/// A queued demand to compute.
#[derive(Debug)]
pub(crate) struct Demand {
    /// The publisher's message id, or a key made up for a demand that had none.
    pub message_id: String,
    pub add_up_to: i64,
    pub tag: u64,
    /// The `traceparent` of its processing span (tracing on).
    pub trace_parent: Option<String>,
    /// Redelivered with no message id: it may repeat a work already stored.
    pub possible_repeat: bool,
    /// Asked to run later: stored `scheduled`, not computed now.
    pub run_at: Option<SystemTime>,
}

/// Computes each queued demand into a finished work, keeping its tag.
pub(crate) async fn compute_all(
    good: Vec<Demand>,
    work_delay: Duration,
) -> anyhow::Result<Vec<(works::Finished, u64)>> {
    let mut finished = Vec::with_capacity(good.len());
    for demand in good {
        let started = SystemTime::now();
        // A work for later is computed by the sweeper that claims it when due.
        let result = match demand.run_at {
            Some(_) => 0,
            None => compute(demand.add_up_to, work_delay).await?,
        };
        let work = works::Finished {
            message_id: demand.message_id,
            work_code: new_work_code(Origin::Consumer),
            add_up_to: demand.add_up_to,
            result,
            started,
            stopped: SystemTime::now(),
            trace_parent: demand.trace_parent,
            possible_repeat: demand.possible_repeat,
            run_at: demand.run_at,
        };
        finished.push((work, demand.tag));
    }
    Ok(finished)
}

/// When a queue batch is acknowledged to RabbitMQ: once committed on the primary, or
/// once a streaming physical standby has also flushed that commit (`consume
/// --ack-after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AckAfter {
    Commit,
    Standby,
}

/// Identifies this process in leases: unique across hosts and restarts.
pub fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// How many works to take at once so that one batch holds about a second of
/// simulated work, and never more than `max`.
pub fn batch_limit(max: usize, work_delay: Duration) -> usize {
    if work_delay.is_zero() {
        return max.max(1);
    }
    let per_second = (Duration::from_secs(1).as_nanos() / work_delay.as_nanos().max(1)) as usize;
    per_second.clamp(1, max.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_shrink_with_the_work_delay() {
        assert_eq!(batch_limit(150, Duration::ZERO), 150);
        assert_eq!(batch_limit(150, Duration::from_millis(100)), 10);
        assert_eq!(batch_limit(150, Duration::from_secs(5)), 1);
        assert_eq!(batch_limit(0, Duration::ZERO), 1);
    }

    #[tokio::test]
    async fn compute_sums_and_refuses_out_of_range() {
        assert_eq!(compute(100, Duration::ZERO).await, Ok(5050));
        assert!(compute(-1, Duration::ZERO).await.is_err());
    }
}
