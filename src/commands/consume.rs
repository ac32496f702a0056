//! `ppctl consume`: the queue worker and the sweeper, side by side, until shutdown.

use crate::amqp::{self, Topology};
use crate::backoff::Backoff;
use crate::cli::{AmqpOpts, ConsumeArgs, DbOpts, WorkerOpts};
use crate::shutdown::Shutdown;
use crate::storage::{self, listen, notify::Notifier, PgPool};
use crate::telemetry::{Telemetry, TELEMETRY};
use crate::worker::queue::{self, Batch};
use crate::worker::{batch_limit, sweep, worker_id};
use anyhow::{bail, Context};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Consumer;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Batches being stored at once: two keep both cores busy (the database commits one
/// while the consumer gathers and computes the next); acks still go out in order.
const STORES_IN_FLIGHT: usize = 2;

/// How long a batch waits for more deliveries after its first one.
const LINGER: Duration = Duration::from_millis(5);

pub async fn run(args: ConsumeArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    crate::config::check_amqp_url(&args.amqp.amqp_url)?;
    let pool = storage::pool(&args.db.database_url, args.db.db_pool_size)?;
    if let Some(addr) = args.metrics.metrics_addr {
        crate::http::exporter::spawn(addr, Some(pool.clone()), shutdown.clone())?;
    }
    run_with_pool(pool, &args.db, &args.amqp, &args.worker, shutdown).await
}

/// Also used by `up`, which shares one pool between serve and consume.
pub async fn run_with_pool(
    pool: PgPool,
    db: &DbOpts,
    amqp: &AmqpOpts,
    worker: &WorkerOpts,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    if worker.sweep_every < Duration::from_millis(10) {
        bail!("--sweep-every must be at least 10ms");
    }
    let wake = Arc::new(Notify::new());
    listen::spawn(
        db.database_url.clone(),
        listen::PENDING_CHANNEL,
        wake.clone(),
        shutdown.clone(),
    );
    let opts = sweep::SweepOpts {
        worker: worker_id(),
        work_delay: worker.work_delay,
        lease: worker.lease,
        window: worker.sweep_window,
        max_attempts: worker.max_attempts,
        batch: batch_limit(sweep::SWEEP_BATCH, worker.work_delay),
    };
    tracing::info!(worker = %opts.worker, queue = %amqp.queue, prefetch = worker.prefetch, "consumer starting");
    let notifier = Notifier::spawn(pool.clone(), shutdown.clone());
    let sweeper = tokio::spawn(sweep::run(
        pool.clone(),
        opts,
        worker.sweep_every,
        wake,
        notifier.clone(),
        shutdown.clone(),
    ));
    let queue = QueueWorker {
        pool: &pool,
        notifier: &notifier,
        url: &amqp.amqp_url,
        topology: Topology::with_type(&amqp.queue, amqp.queue_type),
        worker,
        shutdown: &shutdown,
    };
    queue.run().await;
    sweeper.await.context("the sweeper panicked")?;
    tracing::info!("consumer stopped");
    Ok(())
}

/// What the queue worker's loop needs, borrowed from `run_with_pool`.
struct QueueWorker<'a> {
    pool: &'a PgPool,
    notifier: &'a Notifier,
    url: &'a str,
    topology: Topology,
    worker: &'a WorkerOpts,
    shutdown: &'a Shutdown,
}

impl QueueWorker<'_> {
    /// Connects, consumes until the channel fails, reconnects with backoff; until shutdown.
    async fn run(&self) {
        let mut backoff = Backoff::default();
        while !self.shutdown.is_triggered() {
            match self.consume_connection(&mut backoff).await {
                Ok(()) => return,
                Err(e) => {
                    Telemetry::add(&TELEMETRY.reconnects, 1);
                    tracing::warn!(error = format!("{e:#}"), "AMQP consumer lost; reconnecting");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = self.shutdown.wait() => {}
            }
        }
    }

    /// One connection's life. Returns Ok at shutdown, Err when the connection fails.
    async fn consume_connection(&self, backoff: &mut Backoff) -> anyhow::Result<()> {
        let (topology, worker) = (&self.topology, self.worker);
        let (connection, channel) = amqp::connect(self.url, "ppctl-consume").await?;
        topology
            .declare(&channel)
            .await
            .context("cannot declare the queues")?;
        channel
            .basic_qos(worker.prefetch, BasicQosOptions::default())
            .await?;
        let mut consumer = channel
            .basic_consume(
                topology.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("cannot start consuming")?;
        tracing::info!(queue = %topology.queue, "consuming");
        backoff.reset();
        amqp::topology::start_depth_monitor(&connection, topology.clone()).await?;
        // A batch's share of the prefetch window leaves room to gather the next batch
        // while the earlier ones are being stored.
        let window = usize::from(worker.prefetch) / (STORES_IN_FLIGHT + 1);
        let max = batch_limit(window.max(1), worker.work_delay);
        let mut storing: VecDeque<JoinHandle<anyhow::Result<Batch>>> = VecDeque::new();
        loop {
            // Biased: once shutdown is requested, no new delivery is taken.
            let next = tokio::select! {
                biased;
                _ = self.shutdown.wait() => break,
                stored = oldest(&mut storing), if !storing.is_empty() => Next::Stored(stored),
                delivery = consumer.next() => Next::Delivery(Box::new(delivery_or_error(delivery)?)),
            };
            match next {
                Next::Stored(stored) => {
                    storing.pop_front();
                    self.finish(&channel, stored).await?;
                }
                Next::Delivery(first) => {
                    let deliveries = gather(&mut consumer, *first, max).await?;
                    let batch = queue::prepare(deliveries, worker.work_delay).await?;
                    if storing.len() == STORES_IN_FLIGHT {
                        let stored = oldest(&mut storing).await;
                        storing.pop_front();
                        self.finish(&channel, stored).await?;
                    }
                    let (pool, shutdown) = (self.pool.clone(), self.shutdown.clone());
                    storing.push_back(tokio::spawn(async move {
                        queue::store(&pool, batch, &shutdown).await
                    }));
                }
            }
        }
        // Shutdown: what is being stored is committed and acknowledged before we close.
        while !storing.is_empty() {
            let stored = oldest(&mut storing).await;
            storing.pop_front();
            self.finish(&channel, stored).await?;
        }
        // Close cleanly so the broker does not wait for a heartbeat timeout.
        let _ = channel.close(200, "shutdown".into()).await;
        let _ = connection.close(200, "shutdown".into()).await;
        Ok(())
    }
}

impl QueueWorker<'_> {
    /// Acknowledges a stored batch (stores finish, and so are acked, in delivery order).
    async fn finish(&self, channel: &lapin::Channel, stored: StoreResult) -> anyhow::Result<()> {
        let batch = stored.context("a batch store panicked")??;
        queue::acknowledge(channel, &batch).await?;
        if batch.outcome.stored > 0 {
            self.notifier.works_changed();
        }
        tracing::debug!(outcome = ?batch.outcome, "batch");
        Ok(())
    }
}

type StoreResult = Result<anyhow::Result<Batch>, tokio::task::JoinError>;

enum Next {
    Stored(StoreResult),
    Delivery(Box<Delivery>),
}

/// The oldest store in flight, awaited in place (it is popped by the caller).
async fn oldest(storing: &mut VecDeque<JoinHandle<anyhow::Result<Batch>>>) -> StoreResult {
    match storing.front_mut() {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

/// After the first delivery, gathers more for up to `LINGER` or until `max`. Not
/// cancelled midway: deliveries taken from the stream must not be dropped.
async fn gather(
    consumer: &mut Consumer,
    first: Delivery,
    max: usize,
) -> anyhow::Result<Vec<Delivery>> {
    let mut batch = vec![first];
    let deadline = Instant::now() + LINGER;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline.into(), consumer.next()).await {
            Ok(next) => batch.push(delivery_or_error(next)?),
            Err(_) => break,
        }
    }
    Ok(batch)
}

fn delivery_or_error(next: Option<lapin::Result<Delivery>>) -> anyhow::Result<Delivery> {
    match next {
        Some(Ok(delivery)) => Ok(delivery),
        Some(Err(e)) => Err(anyhow::Error::from(e).context("the consumer failed")),
        None => bail!("the broker cancelled the consumer"),
    }
}
