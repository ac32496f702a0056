//! The consumer's batch stores in flight: spawned tasks, awaited oldest first (acks go
//! in delivery order), counted in `ppctl_store_tasks`, aborted with their connection.
//! At most `STORES_IN_FLIGHT` are committing at once; with `--ack-after standby` any
//! number may be waiting for their standby behind them (the prefetch bounds them).

use super::queue::Batch;
use crate::shutdown::{AbortOnDrop, Shutdown};
use crate::storage::standby_wait::StandbyWatch;
use crate::storage::PgPool;
use crate::telemetry::TELEMETRY;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Batches being committed at once: two keep both cores busy (the database commits one
/// while the consumer gathers and computes the next); acks still go out in order.
pub const STORES_IN_FLIGHT: usize = 2;

/// The batch stores in flight, oldest first. Dropped with the connection (any `?`),
/// they are aborted: their deliveries were not acked, so the broker redelivers them,
/// and a store that committed meanwhile is deduplicated by message_id.
pub struct Stores {
    tasks: VecDeque<AbortOnDrop<anyhow::Result<Batch>>>,
    committing: Arc<Semaphore>,
}

impl Default for Stores {
    fn default() -> Self {
        Self {
            tasks: VecDeque::new(),
            committing: Arc::new(Semaphore::new(STORES_IN_FLIGHT)),
        }
    }
}

impl Stores {
    /// A place among the committing stores, once one is free (the future holds no
    /// borrow of `self`, so the oldest store can be awaited beside it).
    pub fn slot(&self) -> impl std::future::Future<Output = OwnedSemaphorePermit> + 'static {
        let committing = self.committing.clone();
        async move {
            match committing.acquire_owned().await {
                Ok(slot) => slot,
                // Never closed: this cannot happen, and waiting forever would be wrong.
                Err(_) => unreachable!("the store slots are never closed"),
            }
        }
    }

    pub fn spawn(
        &mut self,
        slot: OwnedSemaphorePermit,
        pool: PgPool,
        batch: Batch,
        standby: Option<StandbyWatch>,
        shutdown: Shutdown,
    ) {
        let task = tokio::spawn(async move {
            let _counted = StoreTaskCount::new();
            super::store::store(&pool, batch, standby.as_ref(), slot, &shutdown).await
        });
        self.tasks.push_back(AbortOnDrop(task));
    }

    /// The oldest store, awaited in place (`pop` removes it).
    pub async fn oldest(&mut self) -> StoreResult {
        match self.tasks.front_mut() {
            Some(task) => (&mut task.0).await,
            None => std::future::pending().await,
        }
    }

    pub fn pop(&mut self) {
        self.tasks.pop_front();
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
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
