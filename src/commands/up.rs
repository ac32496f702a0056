//! `ppctl up`: development mode. Sets the database up, then runs serve, consume and
//! produce in one process until SIGINT/SIGTERM.

use crate::cli::UpArgs;
use crate::shutdown::Shutdown;
use crate::storage::{self, admin};
use anyhow::Context;

pub async fn run(args: UpArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    super::check_amqp_url(&args.amqp.amqp_url)?;
    super::webhook::deliverer(&args.worker.webhook)?;
    let applied = admin::setup(&args.db.database_url).await?;
    tracing::info!(applied, "database ready");
    let pool = storage::pool(&args.db.database_url, args.db.db_pool_size)?;
    let consumer = {
        let (pool, amqp, worker, shutdown) = (
            pool.clone(),
            args.amqp.clone(),
            args.worker.clone(),
            shutdown.clone(),
        );
        tokio::spawn(
            async move { super::consume::run_with_pool(pool, &amqp, &worker, shutdown).await },
        )
    };
    let producer = {
        let (amqp, produce, shutdown) = (args.amqp.clone(), args.produce.clone(), shutdown.clone());
        tokio::spawn(
            async move { super::produce::produce(&amqp, &produce, &shutdown, false).await },
        )
    };
    let topology = crate::amqp::Topology::chosen(&args.amqp.queue, args.amqp.queue_type);
    let dead_letters = crate::http::dead::DeadLetterSource::new(&args.amqp.amqp_url, topology)?;
    let served = super::serve::serve(pool, &args.serve, Some(dead_letters), shutdown).await;
    let consumed = consumer.await.context("the consumer panicked")?;
    let produced = producer.await.context("the producer panicked")?;
    served?;
    consumed?;
    produced.map(|_| ())
}
