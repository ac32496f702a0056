//! Servers that die: RabbitMQ (scenario 2) and PostgreSQL (scenario 3), SIGKILLed
//! and restarted under running ppctl processes.

use super::*;
use crate::checks;
use anyhow::{bail, Context};

/// RabbitMQ 3.10 (this machine's) does not bring back a single-node quorum queue declared
/// a few seconds before a SIGKILL: its Raft member is not registered on disk yet, the
/// queue stays leaderless ("leader not known") and every consume times out. That is the
/// broker's bug, not the pipeline's, so the queue is declared (with the library's default
/// type, as the processes do) and left to age first. `CHAOS_S2_QUEUE_AGE=0` reproduces it.
async fn age_queue(env: &Env, row: &mut Row) -> anyhow::Result<()> {
    let secs = std::env::var("CHAOS_S2_QUEUE_AGE")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(20);
    let (conn, channel) = ppctl::amqp::connect(&env.amqp_url, "chaos-declare").await?;
    ppctl::amqp::Topology::new(&env.queue)
        .declare(&channel)
        .await?;
    let _ = conn.close(200, "bye".into()).await;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    row.notes.push(format!(
        "queue declared {secs}s before the pipeline started"
    ));
    Ok(())
}

/// Scenario 2: The broker is SIGKILLed and restarted while the producer and the consumer run;
/// both must reconnect on their own and the producer must still reach --count.
pub(super) async fn restart_rabbitmq(c: &mut Cluster, row: &mut Row) -> anyhow::Result<()> {
    const N: u64 = 6000;
    let env = setup(c, "s2", false).await?;
    age_queue(&env, row).await?;
    let mut db = Db::new(&env.database_url);
    let mut consumer = Proc::spawn(&env, "consumer", &CONSUME_1MS)?;
    // Bursts of 1000 every 250 ms, each taking about that long: the producer is nearly
    // always waiting for a burst's confirms, so the restart lands mid-burst.
    let mut producer = start_paced_producer(&env, row, N, "250ms", 1000)?;
    // The fault once about a third is published (stored, or waiting in the queue).
    let start = Instant::now();
    loop {
        let done = db.int(DONE_SQL).await.unwrap_or(0);
        let ready = checks::queue_counts(&env.amqp_url, &env.queue)
            .await
            .map_or(0, |(ready, _)| i64::from(ready));
        if done + ready >= N as i64 / 3 {
            break;
        }
        if start.elapsed() > FINISH {
            bail!("the producer did not publish a third of its demands in {FINISH:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !producer.running() {
        bail!("the producer finished before the fault: the scenario proves nothing");
    }
    let fault = Instant::now();
    c.rabbit.kill()?;
    let at_fault = db.must(DONE_SQL).await?;
    let reported = reported_confirmed(&producer.log_text(), N);
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure_running(
        row,
        &mut [&mut consumer, &mut producer],
        "while RabbitMQ was down",
    );
    c.rabbit.restart().await?;
    let down = fault.elapsed().as_secs_f64();
    let base = db.must(DONE_SQL).await?;
    row.notes.push(format!(
        "broker SIGKILLed with {at_fault}/{N} done (producer had reported {reported:?} confirmed), back after {down:.1}s"
    ));
    time_recovery(row, &mut db, base, fault).await;
    if row.recovery.is_some() {
        drain_all(row, &mut db, &mut producer, N).await;
    } else {
        // No progress at all: say what the broker thinks of the queue, and do not wait
        // minutes more for a drain that cannot happen.
        let queues = c
            .rabbit
            .ctl(&["list_queues", "name", "type", "leader", "messages"]);
        let queues = queues.await.unwrap_or_else(|e| format!("{e:#}"));
        row.problem(format!(
            "no progress after the restart; the broker lists (name type leader messages): {}",
            queues
                .lines()
                .filter(|l| l.contains(&env.queue))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
        // The queue's Raft member is named '%2F_<queue>' in the node's log.
        let member = format!("_{}'", env.queue);
        let leaderless = c
            .rabbit
            .node_log()
            .lines()
            .filter(|l| l.contains(&member) && l.contains("leader not known"))
            .count();
        if leaderless > 0 {
            row.problem(format!("the broker log says \"leader not known\" {leaderless} times for this quorum queue: its Raft member did not come back after the SIGKILL (a broker-side recovery failure; cf. rabbitmq-server#10070)"));
        }
        row.confirmed = reported_confirmed(&producer.log_text(), N).unwrap_or(0);
        let _ = producer.kill9().await;
    }
    stop_all(row, &mut [&mut consumer]).await;
    note_dedup(row, &[&consumer]);
    finish(row, &env, &mut db, row.confirmed, N, 0, 0).await;
    Ok(())
}

/// Scenario 3: PostgreSQL is SIGKILLed (postmaster and backends) and restarted under a running
/// consumer and API: /health answers 503 (promptly) while it is down, 200 after.
pub(super) async fn restart_postgres(c: &mut Cluster, row: &mut Row) -> anyhow::Result<()> {
    const N: u64 = 4000;
    let env = setup(c, "s3", true).await?;
    let addr = env.http_addr.clone().context("http addr")?;
    let mut db = Db::new(&env.database_url);
    let mut serve = Proc::spawn(&env, "serve", &["serve"])?;
    wait_healthy(&addr, Duration::from_secs(30)).await?;
    let mut consumer = Proc::spawn(&env, "consumer", &CONSUME_1MS)?;
    let mut producer = start_producer(&env, row, N)?;
    let at_fault = db
        .wait_done("1000 works done", |n| n >= 1000, FINISH)
        .await?;
    let fault = Instant::now();
    c.pg.crash()?;
    row.notes
        .push(format!("PostgreSQL SIGKILLed with ~{at_fault}/{N} done"));
    // While it is down: every API call must answer 503 within a bounded time.
    let mut slowest = 0f64;
    for (method, target) in [
        ("GET", "/health"),
        ("GET", "/works/1"),
        ("POST", "/works"),
        ("GET", "/health"),
    ] {
        let asked = Instant::now();
        match http(&addr, method, target, None, Duration::from_secs(8)).await {
            Ok((503, _)) => slowest = slowest.max(asked.elapsed().as_secs_f64()),
            Ok((status, body)) => row.problem(format!(
                "{method} {target} answered {status} while PostgreSQL was down (expected 503): {}",
                String::from_utf8_lossy(&body)
            )),
            Err(e) => row.problem(format!(
                "{method} {target} while PostgreSQL was down: {e:#}"
            )),
        }
    }
    row.notes.push(format!(
        "API answered 503 during the outage, slowest in {slowest:.1}s"
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure_running(
        row,
        &mut [&mut consumer, &mut serve],
        "while PostgreSQL was down",
    );
    c.pg.restart().await?;
    let down = fault.elapsed().as_secs_f64();
    let base = db.must(DONE_SQL).await?;
    row.notes.push(format!("PostgreSQL back after {down:.1}s"));
    time_recovery(row, &mut db, base, fault).await;
    let healthy = Instant::now();
    if soft(row, wait_healthy(&addr, Duration::from_secs(30)).await).is_some() {
        row.notes.push(format!(
            "GET /health 200 again {:.1}s after the restart",
            healthy.elapsed().as_secs_f64()
        ));
    }
    drain_all(row, &mut db, &mut producer, N).await;
    stop_all(row, &mut [&mut consumer, &mut serve]).await;
    note_dedup(row, &[&consumer]);
    finish(row, &env, &mut db, row.confirmed, N, 0, 0).await;
    Ok(())
}
