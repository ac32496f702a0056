//! `ppctl serve`: the HTTP API until SIGINT/SIGTERM, then a graceful stop.

use crate::amqp::{depth, Nodes, Topology};
use crate::cli::{ServeArgs, ServeOpts};
use crate::http::{self, dead::DeadLetterSource, ServerConfig};
use crate::shutdown::Shutdown;
use crate::storage::{self, PgPool};
use anyhow::Context;
use std::net::TcpListener;
use std::sync::Arc;

pub async fn run(args: ServeArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    super::check_amqp_url(&args.amqp.amqp_url)?;
    let pool = storage::pool(&args.db.database_url, args.db.db_pool_size)?;
    // The dashboard's dead-letter card: the queues' depths, watched (never declared).
    let nodes = Nodes::parse(&args.amqp.amqp_url)?;
    let topology = Topology::chosen(&args.amqp.queue, args.amqp.queue_type);
    let dead_letters = DeadLetterSource::new(&args.amqp.amqp_url, topology.clone())?;
    super::links::log_at_start(pool.clone(), Some(&nodes));
    tokio::spawn(depth::watch(nodes, topology, shutdown.clone()));
    serve(pool, &args.serve, Some(dead_letters), shutdown).await
}

/// Binds, serves, and on shutdown stops taking connections and lets in-flight
/// requests finish (actix's shutdown timeout bounds the wait).
pub async fn serve(
    pool: PgPool,
    opts: &ServeOpts,
    dead_letters: Option<Arc<DeadLetterSource>>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(opts.http_addr)
        .with_context(|| format!("cannot listen on {}", opts.http_addr))?;
    let config = ServerConfig {
        api_token: opts.api_token.clone(),
        workers: opts.http_workers.map(usize::from),
        max_streams: usize::from(opts.max_streams),
        dead_letters,
        read_replica: match &opts.database_read_url {
            Some(url) => Some((
                storage::replica_pool(url, pool.status().max_size as u16)?,
                opts.max_replica_lag,
            )),
            None => None,
        },
        access_log: opts.access_log,
    };
    storage::replication::log_at_start(pool.clone(), false);
    let server = http::start_until(listener, pool, config, shutdown.clone())?;
    tracing::info!(addr = %opts.http_addr, "serving HTTP");
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.wait().await;
        handle.stop(true).await;
    });
    server.await.context("the HTTP server failed")?;
    tracing::info!("HTTP server stopped");
    Ok(())
}
