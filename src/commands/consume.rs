//! `ppctl consume`: the queue worker and the sweeper, side by side, until shutdown.

use crate::amqp::{self, Topology};
use crate::cli::{AckAfter, AmqpOpts, ConsumeArgs, DbOpts, WorkerOpts};
use crate::shutdown::Shutdown;
use crate::storage::{self, listen, notify::Notifier, PgPool};
use crate::worker::consumer::QueueWorker;
use crate::worker::{batch_limit, retention, sweep, worker_id};
use anyhow::{bail, Context};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub async fn run(args: ConsumeArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    super::check_amqp_url(&args.amqp.amqp_url)?;
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
    storage::replication::log_at_start(pool.clone(), worker.ack_after == AckAfter::Standby);
    let notifier = Notifier::spawn(pool.clone(), shutdown.clone());
    let sweeper = tokio::spawn(sweep::run(
        pool.clone(),
        opts,
        worker.sweep_every,
        wake,
        notifier.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(retention::run(
        pool.clone(),
        worker.retain.duration(),
        shutdown.clone(),
    ));
    let queue = QueueWorker {
        pool: &pool,
        notifier: &notifier,
        nodes: amqp::Nodes::parse(&amqp.amqp_url)?,
        topology: Topology::with_type(&amqp.queue, amqp.queue_type),
        worker,
        shutdown: &shutdown,
        declared: AtomicBool::new(false),
    };
    queue.run().await?;
    sweeper.await.context("the sweeper panicked")?;
    tracing::info!("consumer stopped");
    Ok(())
}
