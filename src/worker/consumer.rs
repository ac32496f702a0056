//! The queue worker: consumes demands from RabbitMQ in batches, stores them with a
//! couple of stores in flight, acknowledges in delivery order, and reconnects.

use crate::amqp::dead_letter::DeadLetterer;
use crate::amqp::session::{self, Session};
use crate::amqp::{self, Topology};
use crate::backoff::Backoff;
use crate::shutdown::Shutdown;
use crate::storage::standby_wait::StandbyWatch;
use crate::storage::{notify::Notifier, PgPool};
use crate::telemetry::TELEMETRY;
use crate::worker::message_ids::MissingIds;
use crate::worker::pipeline::Paused;
use crate::worker::queue;
use crate::worker::registry::Tally;
use crate::worker::stores::{StoreResult, Stores, STORES_IN_FLIGHT};
use crate::worker::{batch_limit, AckAfter};
use anyhow::Context;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::Channel;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How the queue worker consumes (from `consume`'s options).
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    /// Deliveries the broker may send before they are acknowledged.
    pub prefetch: u16,
    /// How long each computation takes (simulated work).
    pub work_delay: Duration,
    pub ack_after: AckAfter,
}

/// What the queue worker's loop needs, borrowed from `consume`.
pub struct QueueWorker<'a> {
    pub pool: &'a PgPool,
    pub notifier: &'a Notifier,
    pub nodes: amqp::Nodes,
    pub topology: Topology,
    pub worker: QueueSettings,
    pub shutdown: &'a Shutdown,
    /// The first connection declares the queues in full; reconnects only check them.
    pub declared: AtomicBool,
    /// What becomes of demands without a message_id.
    pub ids: MissingIds,
    /// While paused the worker holds no consumer on the queue.
    pub paused: Paused,
    /// Deliveries in hand, for the heartbeat.
    pub tally: Arc<Tally>,
}

mod pause;

/// How long connecting, declaring and subscribing may take before it is retried.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How a connection's life ended, when it was not lost.
enum Ended {
    Shutdown,
    /// Safe mode consumed past the suspect message: reconnect at the full prefetch.
    SafeModeOver,
}

impl QueueWorker<'_> {
    /// Connects, consumes until the channel fails, reconnects with backoff; until
    /// shutdown. A queue declared with other arguments is the one error returned.
    ///
    /// After a connection dies on a frame lapin cannot parse (a non-UTF-8 message_id),
    /// the whole window comes back in order, the culprit somewhere in it, and nothing
    /// in ppctl can reject it: the consumer goes on with prefetch 1 ("safe mode") for
    /// one window's worth of deliveries. Each crash then returns only the culprit, and
    /// the quorum queue's delivery limit dead-letters it without touching the rest.
    pub async fn run(&self) -> anyhow::Result<()> {
        let mut backoff = Backoff::default();
        // Deliveries still to settle one at a time; 0: full prefetch.
        let mut safe_left = 0u64;
        // One per process, kept over reconnects.
        let standby = (self.worker.ack_after == AckAfter::Standby)
            .then(|| StandbyWatch::spawn(self.pool.clone(), self.shutdown.clone()));
        while !self.shutdown.is_triggered() {
            match self
                .consume_connection(&mut backoff, &mut safe_left, standby.as_ref())
                .await
            {
                Ok(Ended::Shutdown) => return Ok(()),
                Ok(Ended::SafeModeOver) => {
                    tracing::info!(dead_queue = %self.topology.dead_queue, "safe mode over: the unreadable message is out of the way (dead-lettered); back to the full prefetch");
                    continue;
                }
                Err(e) if e.downcast_ref::<amqp::TopologyMismatch>().is_some() => return Err(e),
                Err(e) => {
                    TELEMETRY.reconnects.inc();
                    self.nodes.lost();
                    if !amqp::is_unparseable_frame(&e) {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "AMQP consumer lost; reconnecting"
                        );
                    } else if safe_left == 0 {
                        safe_left = u64::from(self.worker.prefetch);
                        tracing::warn!("{}", amqp::unreadable_line(&self.topology));
                    } else {
                        // Expected until the delivery limit: the line above said so once.
                        tracing::debug!(error = format!("{e:#}"), "the unreadable message again");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = self.shutdown.wait() => {}
            }
        }
        Ok(())
    }

    /// One connection's life. Err when the connection fails; every task tied to it
    /// (batch stores, the depth monitor) is aborted whichever way it ends.
    async fn consume_connection(
        &self,
        backoff: &mut Backoff,
        safe_left: &mut u64,
        standby: Option<&StandbyWatch>,
    ) -> anyhow::Result<Ended> {
        let safe = *safe_left > 0;
        let worker = &self.worker;
        let prefetch = if safe { 1 } else { worker.prefetch };
        // Started, or reconnecting, while paused: no basic.consume until resumed.
        let mut paused = self.paused.clone();
        tokio::select! {
            _ = paused.until_running() => {}
            _ = self.shutdown.wait() => return Ok(Ended::Shutdown),
        }
        self.tally.deliveries_held.store(0, Ordering::Relaxed);
        // Every step of the setup waits on the broker, and a connection that died
        // midway (a frame lapin cannot parse) may leave one waiting forever: bounded,
        // and shutdown is heard meanwhile.
        let opened = tokio::select! {
            opened = tokio::time::timeout(SETUP_TIMEOUT, Session::open(&self.nodes, &self.topology, &self.declared, prefetch)) => opened,
            _ = self.shutdown.wait() => return Ok(Ended::Shutdown),
        };
        let Session {
            connection,
            channel,
            dead,
            consumer,
            monitor: _monitor,
            mut events,
        } = opened.map_err(|_| anyhow::anyhow!("consumer setup took over {SETUP_TIMEOUT:?}"))??;
        backoff.reset();
        let open = Open {
            connection: &connection,
            channel: &channel,
            dead: &dead,
            standby,
        };
        let consumed = self.consume(&open, consumer, safe, safe_left).await;
        // Why the connection died is in its events, whichever call noticed it.
        match consumed {
            Err(e) if session::died_on_unparseable_frame(&mut events).await => {
                Err(e.context(amqp::UnparseableFrame))
            }
            other => other,
        }
    }

    /// Consumes on an open session until shutdown (Ok) or a failure (Err).
    async fn consume(
        &self,
        open: &Open<'_>,
        mut consumer: lapin::Consumer,
        safe: bool,
        safe_left: &mut u64,
    ) -> anyhow::Result<Ended> {
        let Open {
            connection,
            channel,
            dead,
            ..
        } = *open;
        let worker = &self.worker;
        let prefetch = if safe { 1 } else { worker.prefetch };
        let mut paused = self.paused.clone();
        // A batch's share of the prefetch window leaves room to gather the next batch
        // while the earlier ones are being stored.
        let window = usize::from(prefetch) / (STORES_IN_FLIGHT + 1);
        let max = batch_limit(window.max(1), worker.work_delay);
        let mut storing = Stores::default();
        loop {
            if safe && *safe_left == 0 {
                self.finish_all(&mut storing, channel, dead).await?;
                let _ = connection.close(200, "leaving safe mode".into()).await;
                return Ok(Ended::SafeModeOver);
            }
            // Biased: once shutdown is requested, no new delivery is taken; once the
            // pipeline is paused, none after those the broker already sent.
            let next = tokio::select! {
                biased;
                _ = self.shutdown.wait() => break,
                _ = paused.until_paused() => {
                    consumer = self.pause(open, consumer, &mut storing, max, safe_left).await?;
                    continue;
                }
                stored = storing.oldest(), if !storing.is_empty() => Next::Stored(stored),
                delivery = consumer.next() => Next::Delivery(Box::new(session::delivery_or_error(delivery)?)),
            };
            match next {
                Next::Stored(stored) => {
                    storing.pop();
                    let settled = self.finish(channel, dead, stored).await?;
                    *safe_left = safe_left.saturating_sub(settled);
                }
                Next::Delivery(first) => {
                    let deliveries = session::gather(&mut consumer, *first, max).await?;
                    self.store(open, deliveries, &mut storing, safe_left)
                        .await?;
                }
            }
        }
        // Shutdown: what is being stored is committed and acknowledged before we close.
        self.finish_all(&mut storing, channel, dead).await?;
        // Close cleanly so the broker does not wait for a heartbeat timeout.
        let _ = channel.close(200, "shutdown".into()).await;
        let _ = connection.close(200, "shutdown".into()).await;
        Ok(Ended::Shutdown)
    }

    /// Prepares a batch of deliveries and starts its store, acknowledging what is done
    /// while it waits for a free slot.
    async fn store(
        &self,
        open: &Open<'_>,
        deliveries: Vec<Delivery>,
        storing: &mut Stores,
        safe_left: &mut u64,
    ) -> anyhow::Result<()> {
        let (channel, dead) = (open.channel, open.dead);
        self.tally
            .deliveries_held
            .fetch_add(deliveries.len() as u64, Ordering::Relaxed);
        let queue = &self.topology.queue;
        let work_delay = self.worker.work_delay;
        let batch = queue::prepare(queue, deliveries, dead, work_delay, &self.ids).await?;
        // Acknowledging what is done while a committing store ends.
        let slot = loop {
            let free = storing.slot();
            tokio::select! {
                biased;
                stored = storing.oldest(), if !storing.is_empty() => {
                    storing.pop();
                    let settled = self.finish(channel, dead, stored).await?;
                    *safe_left = safe_left.saturating_sub(settled);
                }
                slot = free => break slot,
            }
        };
        let (pool, shutdown) = (self.pool.clone(), self.shutdown.clone());
        storing.spawn(slot, pool, batch, open.standby.cloned(), shutdown);
        Ok(())
    }

    /// Waits for every store in flight and acknowledges each, in order.
    async fn finish_all(
        &self,
        storing: &mut Stores,
        channel: &Channel,
        dead: &DeadLetterer,
    ) -> anyhow::Result<()> {
        while !storing.is_empty() {
            let stored = storing.oldest().await;
            storing.pop();
            self.finish(channel, dead, stored).await?;
        }
        Ok(())
    }

    /// Acknowledges a stored batch (stores finish, and so are acked, in delivery
    /// order). Returns how many deliveries it settled.
    async fn finish(
        &self,
        channel: &lapin::Channel,
        dead: &DeadLetterer,
        stored: StoreResult,
    ) -> anyhow::Result<u64> {
        let batch = stored.context("a batch store panicked")??;
        // A dead connection must not hold the loop: the broker redelivers what is not
        // acked, and the redeliveries are deduplicated.
        tokio::time::timeout(SETUP_TIMEOUT, queue::acknowledge(channel, dead, &batch))
            .await
            .map_err(|_| anyhow::anyhow!("acknowledging took over {SETUP_TIMEOUT:?}"))??;
        if batch.outcome.stored > 0 {
            self.notifier.works_changed();
        }
        tracing::debug!(outcome = ?batch.outcome, "batch");
        let o = batch.outcome;
        let settled = batch.deliveries() as u64;
        let held = &self.tally.deliveries_held;
        let _ = held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            Some(n.saturating_sub(settled))
        });
        Ok(o.stored + o.duplicates + o.dead)
    }
}

/// A connection's session, as the consuming loop uses it.
#[derive(Clone, Copy)]
struct Open<'a> {
    connection: &'a lapin::Connection,
    channel: &'a Channel,
    dead: &'a DeadLetterer,
    /// `--ack-after standby`'s watcher.
    standby: Option<&'a StandbyWatch>,
}

enum Next {
    Stored(StoreResult),
    Delivery(Box<Delivery>),
}
