//! The consumer's batch stores in flight: spawned tasks, awaited oldest first (acks go
//! in delivery order), counted in `ppctl_store_tasks`, aborted with their connection.

use super::queue::Batch;
use crate::shutdown::{AbortOnDrop, Shutdown};
use crate::storage::PgPool;
use crate::telemetry::TELEMETRY;
use crate::worker::AckAfter;
use std::collections::VecDeque;

/// The batch stores in flight, oldest first. Dropped with the connection (any `?`),
/// they are aborted: their deliveries were not acked, so the broker redelivers them,
/// and a store that committed meanwhile is deduplicated by message_id.
#[derive(Default)]
pub struct Stores(VecDeque<AbortOnDrop<anyhow::Result<Batch>>>);

impl Stores {
    pub fn spawn(&mut self, pool: PgPool, batch: Batch, ack_after: AckAfter, shutdown: Shutdown) {
        let task = tokio::spawn(async move {
            let _counted = StoreTaskCount::new();
            super::store::store(&pool, batch, ack_after, &shutdown).await
        });
        self.0.push_back(AbortOnDrop(task));
    }

    /// The oldest store, awaited in place (`pop` removes it).
    pub async fn oldest(&mut self) -> StoreResult {
        match self.0.front_mut() {
            Some(task) => (&mut task.0).await,
            None => std::future::pending().await,
        }
    }

    pub fn pop(&mut self) {
        self.0.pop_front();
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Counts a running store task in `ppctl_store_tasks`, however the task ends.
struct StoreTaskCount;

impl StoreTaskCount {
    fn new() -> Self {
        TELEMETRY.store_tasks.inc();
        Self
    }
}

impl Drop for StoreTaskCount {
    fn drop(&mut self) {
        TELEMETRY.store_tasks.dec();
    }
}

pub type StoreResult = Result<anyhow::Result<Batch>, tokio::task::JoinError>;
