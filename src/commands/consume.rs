//! `ppctl consume`: the queue worker and the sweeper, side by side, until shutdown.

use super::Failure;
use crate::amqp::{self, Topology};
use crate::cli::{AckAfter, AmqpOpts, ConsumeArgs, WorkerOpts};
use crate::shutdown::Shutdown;
use crate::storage::{self, listen, notify::Notifier, PgPool};
use crate::worker::consumer::{QueueSettings, QueueWorker};
use crate::worker::message_ids::MissingIds;
use crate::worker::pipeline::Paused;
use crate::worker::registry::{Identity, Registry, Tally};
use crate::worker::{batch_limit, retention, sweep, webhooks, worker_id};
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
    run_with_pool(pool, &args.amqp, &args.worker, shutdown).await
}

/// Also used by `up`, which shares one pool between serve and consume.
pub async fn run_with_pool(
    pool: PgPool,
    amqp: &AmqpOpts,
    worker: &WorkerOpts,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    if worker.sweep_every < Duration::from_millis(10) {
        bail!("--sweep-every must be at least 10ms");
    }
    let webhooks = super::webhook::deliverer(&worker.webhook)?;
    // Newer than the database (a rolling deploy, before `db migrate`): no deliveries yet.
    storage::migrate::until_schema_fits(&pool, &shutdown).await;
    let tally = Arc::new(Tally::default());
    let deliverer = match webhooks {
        Some((sender, policy)) => {
            webhooks::start(&pool, sender, policy, tally.clone(), &shutdown).await
        }
        None => None,
    };
    let wake = Arc::new(Notify::new());
    listen::spawn(
        &pool,
        listen::PENDING_CHANNEL,
        wake.clone(),
        shutdown.clone(),
    );
    // One id for the registry row and the leases the sweeper takes.
    let id = worker_id();
    let paused = Paused::follow(&pool, &shutdown).await;
    let me = Identity {
        id: id.clone(),
        queue: amqp.queue.clone(),
        prefetch: worker.prefetch(),
    };
    let registry = Registry::spawn(
        pool.clone(),
        me,
        tally.clone(),
        paused.clone(),
        shutdown.clone(),
    );
    let opts = sweep::SweepOpts {
        worker: id,
        work_delay: worker.work_delay,
        lease: worker.lease,
        window: worker.sweep_window,
        max_attempts: worker.max_attempts,
        batch: batch_limit(sweep::SWEEP_BATCH, worker.work_delay),
    };
    tracing::info!(worker = %opts.worker, queue = %amqp.queue, prefetch = worker.prefetch(), "consumer starting");
    if worker.ack_after == AckAfter::Standby {
        refuse_unseeable_standbys(&pool, &shutdown).await?;
    }
    storage::replication::log_at_start(pool.clone(), worker.ack_after == AckAfter::Standby);
    let nodes = amqp::Nodes::parse(&amqp.amqp_url)?;
    super::links::log_at_start(pool.clone(), Some(&nodes));
    let notifier = Notifier::spawn(pool.clone(), shutdown.clone());
    let sweeper = tokio::spawn(sweep::run(
        pool.clone(),
        opts,
        worker.sweep_every,
        wake,
        notifier.clone(),
        paused.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(crate::worker::scheduler::run(
        pool.clone(),
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
        nodes,
        topology: Topology::chosen(&amqp.queue, amqp.queue_type),
        worker: QueueSettings {
            prefetch: worker.prefetch(),
            work_delay: worker.work_delay,
            ack_after: worker.ack_after,
        },
        shutdown: &shutdown,
        declared: AtomicBool::new(false),
        ids: MissingIds::new(worker.require_message_id),
        paused,
        tally,
    };
    let ran = queue.run().await;
    // A queue worker that failed ends the process: the sweeper and the deliverer, which
    // stop only at shutdown, are not waited for then.
    let swept = match ran {
        Ok(()) => {
            async {
                sweeper.await.context("the sweeper panicked")?;
                if let Some(deliverer) = deliverer {
                    deliverer.await.context("the webhook deliverer panicked")?;
                }
                anyhow::Ok(())
            }
            .await
        }
        Err(_) => Ok(()),
    };
    registry.stop().await;
    ran?;
    swept?;
    tracing::info!("consumer stopped");
    Ok(())
}

/// `--ack-after standby` waits on the standbys' flush positions. A role that may not
/// read them (no `pg_read_all_stats`, as managed services hand out) would wait forever
/// in silence, so the consumer refuses to start instead (exit 2), as soon as the
/// database first answers; until then it waits, as every process does.
async fn refuse_unseeable_standbys(pool: &PgPool, shutdown: &Shutdown) -> anyhow::Result<()> {
    let mut said = false;
    while !shutdown.is_triggered() {
        let check = async {
            let client = pool.get().await?;
            storage::replication::sees_standbys(&**client).await
        };
        match tokio::time::timeout(Duration::from_secs(5), check).await {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) => {
                return Err(Failure::Usage(format!(
                    "--ack-after standby needs to read the standbys' flush positions, which \
                     this database role may not: {} (pg_read_all_stats is enough), or run \
                     with --ack-after commit",
                    storage::replication::MONITOR_GRANT
                ))
                .into())
            }
            outcome => {
                let error = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer within 5s".to_string(),
                };
                if !std::mem::replace(&mut said, true) {
                    tracing::warn!(%error, "--ack-after standby: waiting for the database, to check that this role may read the standbys' positions");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.wait() => {}
                }
            }
        }
    }
    Ok(())
}
