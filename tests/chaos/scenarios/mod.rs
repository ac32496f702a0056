//! The fault scenarios. Each gets its own database and queue on the private
//! instances, drives real `ppctl` processes, injects its fault, waits (bounded) for the
//! pipeline to finish, then judges the database and the broker. A failed step is
//! recorded in the row and the judging still runs, so the table shows what was lost.
//! Scenarios 7, 8 and 10 run on a three-node RabbitMQ cluster, started on first use;
//! 12-16 and 18 each on a PostgreSQL primary+standby pair of their own (failover.rs);
//! 17 on a TLS pair and a TLS-only RabbitMQ node of its own (tls.rs).

mod api;
mod cluster;
mod crash;
mod failover;
mod freeze;
mod hostile;
mod outage;
mod parallel;
mod partition;
mod poison;
mod posts;
mod primary;
mod producer;
mod replica;
mod steps;
mod switchover;
mod syncwait;
mod tls;
mod webhooks;

use api::{http, http_with, wait_healthy};
use producer::{producer_confirmed, reported_confirmed, start_paced_producer, start_producer};
use steps::*;

use crate::checks::{judge, judge_broker, stats};
use crate::db::{recovery, Db};
use crate::infra::{free_ports, PrivatePostgres, PrivateRabbit, RabbitCluster, RunDir};
use crate::procs::{run_ok, Env, Proc};
use crate::report::Row;
use crate::stall::StallMeter;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Everything a scenario may start, stop or crash. Fields drop in order: the servers
/// first, then the run directory (which kills whatever is left).
pub struct Cluster {
    pub pg: PrivatePostgres,
    pub rabbit: PrivateRabbit,
    /// The three-node cluster, started when a cluster scenario first needs it.
    pub rabbits: Option<RabbitCluster>,
    pub run: RunDir,
    pub log_dir: PathBuf,
    /// The current scenario's done-count sampler, started by `setup`.
    pub stall: Option<StallMeter>,
}

pub(super) const STOP: Duration = Duration::from_secs(20);
pub(super) const FINISH: Duration = Duration::from_secs(120);
/// Once every demand is stored, the producer has had them all confirmed or is stuck.
pub(super) const PRODUCER_AFTER: Duration = Duration::from_secs(30);
pub(super) const DONE_SQL: &str = "SELECT count(*) FROM works WHERE status = 'done'";

pub const NAMES: [&str; 19] = [
    "1 kill -9 consumer",
    "2 restart RabbitMQ",
    "3 restart PostgreSQL",
    "4 3 consumers + API",
    "5 SIGTERM in batch",
    "6 poison mix",
    "7 kill queue leader",
    "8 rolling restart",
    "9 freeze PostgreSQL",
    "10 freeze a node",
    "11 hostile messages",
    "12 primary lost (sync)",
    "13 switchover",
    "14 replica lost",
    "15 primary lost (async)",
    "16 sync standby lost",
    "17 tls failover",
    "18 network partition",
    "19 webhooks: consumer killed",
];

/// The rows of scenario `index`: one, except 15, which runs twice on fresh pairs.
fn parts(index: usize) -> Vec<&'static str> {
    match index {
        14 => vec![
            "15a async, ack after commit",
            "15b async, ack after standby",
        ],
        _ => vec![NAMES[index]],
    }
}

pub async fn run(index: usize, cluster: &mut Cluster) -> Vec<Row> {
    let mut rows = Vec::new();
    for (part, name) in parts(index).into_iter().enumerate() {
        rows.push(run_part(index, part, name, cluster).await);
    }
    rows
}

async fn run_part(index: usize, part: usize, name: &str, cluster: &mut Cluster) -> Row {
    let mut row = Row::new(name);
    let start = Instant::now();
    let result = match index {
        0 => crash::kill_consumer(cluster, &mut row).await,
        1 => outage::restart_rabbitmq(cluster, &mut row).await,
        2 => outage::restart_postgres(cluster, &mut row).await,
        3 => parallel::consumers_and_api(cluster, &mut row).await,
        4 => crash::sigterm_in_batch(cluster, &mut row).await,
        5 => poison::poison_mix(cluster, &mut row).await,
        6 => cluster::kill_leader(cluster, &mut row).await,
        7 => cluster::rolling_restart(cluster, &mut row).await,
        8 => freeze::freeze_postgres(cluster, &mut row).await,
        9 => cluster::freeze_node(cluster, &mut row).await,
        10 => hostile::hostile_messages(cluster, &mut row).await,
        11 => primary::primary_lost(cluster, &mut row).await,
        12 => switchover::switchover(cluster, &mut row).await,
        13 => replica::replica_lost(cluster, &mut row).await,
        14 => primary::async_primary_lost(cluster, &mut row, part == 1).await,
        15 => syncwait::sync_standby_lost(cluster, &mut row).await,
        16 => tls::tls_failover(cluster, &mut row).await,
        18 => webhooks::consumer_dies_mid_delivery(cluster, &mut row).await,
        _ => partition::partition(cluster, &mut row).await,
    };
    if let Err(e) = result {
        row.problem(format!("{e:#}"));
    }
    let unfinished = row.lost > 0;
    row.stall = cluster.stall.take().and_then(|s| s.stop(unfinished));
    row.notes
        .push(format!("took {:.1}s", start.elapsed().as_secs_f64()));
    row
}

/// A fresh database (migrated by `ppctl db setup`) and queue for scenario `tag`, on the
/// single private node.
pub(super) async fn setup(c: &mut Cluster, tag: &str, http: bool) -> anyhow::Result<Env> {
    let amqp_url = c.rabbit.url();
    setup_on(c, tag, http, amqp_url).await
}

/// Like `setup`, with the broker(s) at `amqp_url`; starts the scenario's stall meter.
pub(super) async fn setup_on(
    c: &mut Cluster,
    tag: &str,
    http: bool,
    amqp_url: String,
) -> anyhow::Result<Env> {
    let database_url = c.pg.url(&format!("chaos_{tag}"));
    setup_with(c, tag, http, amqp_url, database_url.clone(), &database_url).await
}

/// A fresh database at `database_url` (what the processes get) and queue; the stall
/// meter samples `watch_url` (one server of a replicated pair, which may not be the
/// one the processes write to, but holds the same rows).
pub(super) async fn setup_with(
    c: &mut Cluster,
    tag: &str,
    http: bool,
    amqp_url: String,
    database_url: String,
    watch_url: &str,
) -> anyhow::Result<Env> {
    let env = Env {
        scenario: tag.into(),
        database_url,
        amqp_url,
        queue: format!("chaos_{tag}_{:06x}", rand::random::<u32>() & 0xff_ffff),
        http_addr: http.then(|| format!("127.0.0.1:{}", free_ports::<1>()[0])),
        run_dir: c.run.path.clone(),
        log_dir: c.log_dir.clone(),
    };
    run_ok(&env, "db-setup", &["db", "setup"], Duration::from_secs(60)).await?;
    c.stall = Some(StallMeter::start(watch_url));
    Ok(env)
}

pub(super) const CONSUME_1MS: [&str; 5] = ["consume", "--work-delay", "1ms", "--prefetch", "300"];
