//! Faults of a three-node RabbitMQ cluster: the quorum queue's leader SIGKILLed
//! (scenario 7), a rolling restart (8), the clients' node frozen with SIGSTOP (10).

use super::*;
use anyhow::Context;

/// How long a node stays frozen in scenario 10: several heartbeat intervals.
const FROZEN: Duration = Duration::from_secs(25);
const REJOIN: Duration = Duration::from_secs(90);
/// In-flight batches commit this soon after a fault; later progress is recovery.
const SETTLE: Duration = Duration::from_secs(3);

/// The cluster (started on first use), a fresh database and queue; every process of the
/// scenario gets the URL list from `env_on`.
async fn cluster_setup(c: &mut Cluster, tag: &str) -> anyhow::Result<(Env, Db)> {
    if c.rabbits.is_none() {
        let started = Instant::now();
        c.rabbits = Some(
            RabbitCluster::start(&c.run)
                .await
                .context("start the three-node RabbitMQ cluster")?,
        );
        println!(
            "chaos: three-node RabbitMQ cluster up after {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    let urls = nodes(c)?.urls_from(0);
    let env = setup_on(c, tag, false, urls).await?;
    let db = Db::new(&env.database_url);
    Ok((env, db))
}

fn nodes(c: &mut Cluster) -> anyhow::Result<&mut RabbitCluster> {
    c.rabbits
        .as_mut()
        .context("the RabbitMQ cluster is not running")
}

/// `env` with an AMQP_URL list that starts with node `first`.
fn env_on(env: &Env, rc: &RabbitCluster, first: usize) -> Env {
    Env {
        amqp_url: rc.urls_from(first),
        ..env.clone()
    }
}

/// 300 demands every 200 ms: about 5 s of stream for 6000.
const BRISK: (&str, u64) = ("200ms", 300);

/// A producer preferring node `p` and publishing `burst` demands `every` so often, and
/// two consumers preferring nodes `c1` and `c2`.
fn start_pipeline(
    env: &Env,
    rc: &RabbitCluster,
    row: &mut Row,
    n: u64,
    [p, c1, c2]: [usize; 3],
    (every, burst): (&str, u64),
) -> anyhow::Result<[Proc; 3]> {
    let consumer1 = Proc::spawn(&env_on(env, rc, c1), "consumer1", &CONSUME_1MS)?;
    let consumer2 = Proc::spawn(&env_on(env, rc, c2), "consumer2", &CONSUME_1MS)?;
    let producer = start_paced_producer(&env_on(env, rc, p), row, n, every, burst)?;
    Ok([producer, consumer1, consumer2])
}

/// Drains, stops the consumers and judges: the common end of the cluster scenarios.
async fn end(row: &mut Row, env: &Env, db: &mut Db, procs: [Proc; 3], n: u64) {
    let [mut producer, mut c1, mut c2] = procs;
    drain_all(row, db, &mut producer, n).await;
    stop_all(row, &mut [&mut c1, &mut c2]).await;
    note_dedup(row, &[&c1, &c2]);
    finish(row, env, db, row.confirmed, n, 0, 0).await;
}

/// Scenario 7: the node leading the quorum queue is SIGKILLed mid-stream; the other two
/// carry on, then it is started again and rejoins.
pub(super) async fn kill_leader(c: &mut Cluster, row: &mut Row) -> anyhow::Result<()> {
    const N: u64 = 6000;
    let (env, mut db) = cluster_setup(c, "s7").await?;
    let rc = nodes(c)?;
    let mut procs = start_pipeline(&env, rc, row, N, [1, 2, 0], BRISK)?;
    db.wait_done("a quarter done", |d| d >= N as i64 / 4, FINISH)
        .await?;
    let leader = rc.leader_of(&env.queue, None).await?;
    let fault = Instant::now();
    rc.nodes[leader].kill()?;
    let base = db.must(DONE_SQL).await?;
    row.notes.push(format!(
        "leader n{} SIGKILLed with {base}/{N} done",
        leader + 1
    ));
    // Progress must resume on the two survivors, before the node is back.
    time_recovery(row, &mut db, base, fault).await;
    let [p, c1, c2] = &mut procs;
    ensure_running(row, &mut [p, c1, c2], "after the leader was killed");
    rc.nodes[leader].restart().await?;
    rc.wait_member(leader, REJOIN).await?;
    let new_leader = rc.leader_of(&env.queue, None).await.ok();
    row.notes.push(format!(
        "n{} back in the cluster {:.1}s after the kill; leader now {:?}",
        leader + 1,
        fault.elapsed().as_secs_f64(),
        new_leader.map(|i| format!("n{}", i + 1))
    ));
    end(row, &env, &mut db, procs, N).await;
    Ok(())
}

/// Scenario 8: each node in turn is shut down, started again and waited for until it is
/// back in the cluster, under a producer and two consumers.
pub(super) async fn rolling_restart(c: &mut Cluster, row: &mut Row) -> anyhow::Result<()> {
    const N: u64 = 6000;
    let (env, mut db) = cluster_setup(c, "s8").await?;
    let rc = nodes(c)?;
    // 80 every 500 ms, 37.5 s of stream: it outlasts the rolling restart (3 nodes at
    // about 9 s each, after the first 300 works), so every restart meets publishes.
    let mut procs = start_pipeline(&env, rc, row, N, [0, 1, 2], ("500ms", 80))?;
    db.wait_done("the first works", |d| d >= 300, FINISH)
        .await?;
    let mut slowest = 0f64;
    for i in 0..3 {
        let fault = Instant::now();
        rc.nodes[i].shutdown().await?;
        // Recovery: until works are done again with the node down (it boots meanwhile).
        let base = db.must(DONE_SQL).await?;
        let node = async {
            rc.nodes[i].restart().await?;
            rc.wait_member(i, REJOIN).await
        };
        let (back, resumed) = tokio::join!(node, recovery(&mut db, base, fault, REJOIN));
        back?;
        row.notes.push(format!(
            "n{} shut down with {base}/{N} done, back in the cluster after {:.1}s",
            i + 1,
            fault.elapsed().as_secs_f64()
        ));
        if let Some(s) = soft(row, resumed) {
            slowest = slowest.max(s);
        }
        let [p, c1, c2] = &mut procs;
        ensure_running(row, &mut [p, c1, c2], "during the rolling restart");
    }
    row.recovery = Some(slowest);
    end(row, &env, &mut db, procs, N).await;
    Ok(())
}

/// Scenario 10: the node every client prefers is frozen with SIGSTOP: heartbeats must
/// notice and the clients move on to the other two; then it is thawed.
pub(super) async fn freeze_node(c: &mut Cluster, row: &mut Row) -> anyhow::Result<()> {
    const N: u64 = 6000;
    let (env, mut db) = cluster_setup(c, "s10").await?;
    let rc = nodes(c)?;
    // The node frozen is the one every client is connected to, not the queue's leader:
    // this is about the clients noticing and moving. (A frozen leader stalls the queue
    // itself until RabbitMQ elects another, which 3.10 did not do within a 25 s freeze:
    // the broker's failure detection, not the clients'; scenario 7 kills the leader.)
    let (conn, channel) = ppctl::amqp::connect(&rc.urls_from(0), "chaos-declare").await?;
    ppctl::amqp::Topology::new(&env.queue)
        .declare(&channel)
        .await?;
    let _ = conn.close(200, "declared".into()).await;
    let leader = rc.leader_of(&env.queue, None).await?;
    let f = (leader + 1) % 3;
    let procs = start_pipeline(&env, rc, row, N, [f, f, f], BRISK)?;
    db.wait_done("a fifth done", |d| d >= N as i64 / 5, FINISH)
        .await?;
    let fault = Instant::now();
    let frozen = rc.nodes[f].freeze()?;
    let probe = tokio::spawn(time_redeclare(rc.urls_from((f + 1) % 3), env.queue.clone()));
    // Batches already in flight commit in the first moments: progress after that can
    // only come through another node (heartbeats notice within ~2 intervals).
    tokio::time::sleep(SETTLE).await;
    let base = db.must(DONE_SQL).await?;
    match recovery(&mut db, base, fault, FROZEN.saturating_sub(fault.elapsed())).await {
        Ok(s) => {
            row.recovery = Some(s);
            tokio::time::sleep(FROZEN.saturating_sub(fault.elapsed())).await;
        }
        Err(_) => row.problem(format!(
            "no work done from {SETTLE:?} to {FROZEN:?} after n{} was frozen (SIGSTOP) with every client connected to it ({base}/{N} done): the clients did not resume on another node while it stayed frozen",
            f + 1
        )),
    }
    frozen.thaw();
    let during = db.must(DONE_SQL).await?;
    row.notes.push(format!(
        "n{} (not the leader, n{}) frozen for {:.1}s with {base}/{N} done {SETTLE:?} in; {during} done at SIGCONT",
        f + 1,
        leader + 1,
        fault.elapsed().as_secs_f64()
    ));
    match probe.await {
        Ok(took) => row.notes.push(format!(
            "diagnostic: declaring the topology on n{} (as a first connection does), started 0.5s into the freeze, {took}",
            (f + 1) % 3 + 1
        )),
        Err(e) => row.notes.push(format!("diagnostic probe failed: {e}")),
    }
    soft(row, rc.wait_member(f, REJOIN).await);
    end(row, &env, &mut db, procs, N).await;
    Ok(())
}

/// How long a passive declare, then the topology declaration a reconnecting client
/// makes, take on another node while one is frozen (the broker may block them on the
/// frozen member): a diagnostic for the report.
async fn time_redeclare(urls: String, queue: String) -> String {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    let mut passive = None;
    let declare = async {
        let (conn, channel) = ppctl::amqp::connect(&urls, "chaos-probe").await?;
        let connected = start.elapsed().as_secs_f64();
        let options = lapin::options::QueueDeclareOptions {
            passive: true,
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(queue.as_str().into(), options, Default::default())
            .await?;
        passive = Some((connected, start.elapsed().as_secs_f64()));
        ppctl::amqp::Topology::new(&queue).declare(&channel).await?;
        let _ = conn.close(200, "bye".into()).await;
        anyhow::Ok(())
    };
    let outcome = tokio::time::timeout(Duration::from_secs(40), declare).await;
    let took = start.elapsed().as_secs_f64();
    let steps = match passive {
        Some((c, p)) => format!("connected after {c:.1}s, passive queue declare done at {p:.1}s"),
        None => "no passive declare".into(),
    };
    match outcome {
        Ok(Ok(())) => format!("{steps}, full declare done at {took:.1}s"),
        Ok(Err(e)) => format!("{steps}, failed after {took:.1}s: {e:#}"),
        Err(_) => format!("{steps}, full declare not done within 40s"),
    }
}
