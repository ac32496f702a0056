//! `ppctl consume`: the queue worker and the sweeper, side by side, until shutdown.

use crate::amqp::{self, Topology};
use crate::backoff::Backoff;
use crate::cli::{AmqpOpts, ConsumeArgs, DbOpts, WorkerOpts};
use crate::shutdown::Shutdown;
use crate::storage::{self, listen, notify::Notifier, PgPool};
use crate::telemetry::{Telemetry, TELEMETRY};
use crate::worker::{batch_limit, queue, sweep, worker_id};
use anyhow::{bail, Context};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Consumer;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

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
        let max = batch_limit(usize::from(worker.prefetch).div_ceil(2), worker.work_delay);
        loop {
            let batch = next_batch(&mut consumer, max, self.shutdown).await?;
            if batch.is_empty() {
                break; // shutdown, with nothing in flight
            }
            let outcome =
                queue::process_batch(self.pool, &channel, batch, worker.work_delay, self.shutdown)
                    .await?;
            if outcome.stored > 0 {
                self.notifier.works_changed();
            }
            tracing::debug!(?outcome, "batch");
        }
        // Close cleanly so the broker does not wait for a heartbeat timeout.
        let _ = channel.close(200, "shutdown".into()).await;
        let _ = connection.close(200, "shutdown".into()).await;
        Ok(())
    }
}

/// Waits for one delivery, then gathers more for up to `LINGER` or until `max`.
/// Returns an empty batch at shutdown; an error when the stream ends.
async fn next_batch(
    consumer: &mut Consumer,
    max: usize,
    shutdown: &Shutdown,
) -> anyhow::Result<Vec<Delivery>> {
    // Biased: once shutdown is requested, no new delivery is taken even if one is ready.
    let first = tokio::select! {
        biased;
        _ = shutdown.wait() => return Ok(Vec::new()),
        next = consumer.next() => next,
    };
    let mut batch = vec![delivery_or_error(first)?];
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
