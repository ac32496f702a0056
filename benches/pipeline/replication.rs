//! The replication phase (issue 16): what a streaming standby costs, on a private
//! primary+standby pair, the same pair switched between asynchronous and synchronous
//! replication. A per-row committer (pgbench's single-row INSERT, and POST /works) pays
//! one wait for the standby per row; the consumer pays one per batch, whether the server
//! makes commits wait (synchronous) or the consumer waits before it acks
//! (`--ack-after standby` on the asynchronous pair).

use crate::load;
use crate::pgpair::PgPair;
use crate::procs::{self, Proc};
use crate::report::Report;
use anyhow::Context;
use std::time::Instant;

pub struct ReplSizes {
    /// Each pgbench and wrk run.
    pub secs: u64,
    /// Demands per drain.
    pub demands: u64,
    /// POSTs per second for the POST -> done latency with a synchronous standby.
    pub api_rate: u64,
}

pub async fn run(
    report: &mut Report,
    s: &ReplSizes,
    amqp: &str,
    queue: &str,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let pair = PgPair::start()
        .await
        .context("cannot start the private PostgreSQL pair")?;
    let queues: Vec<String> = ["commit", "sync", "standby"]
        .iter()
        .map(|m| format!("{queue}.repl.{m}"))
        .collect();
    let up = start.elapsed().as_secs_f64();
    let result = measure(report, s, &pair, amqp, &queues).await;
    crate::delete_queues(amqp, &queues).await;
    report.note(format!(
        "replication phase: the pair was streaming in {up:.1} s, the phase took {:.0} s",
        start.elapsed().as_secs_f64()
    ));
    result
}

async fn measure(
    report: &mut Report,
    s: &ReplSizes,
    pair: &PgPair,
    amqp: &str,
    queues: &[String],
) -> anyhow::Result<()> {
    let db = pair.url("ppctl_bench");
    Proc::run(
        "repl-db-setup",
        &["db", "setup"],
        &env(&db, amqp, &queues[0]),
    )?;

    // Per-row commits: every transaction waits for the standby on its own. An unmeasured
    // run first, so neither mode meets a cold catalog and table.
    let warm = s.secs.min(2);
    load::pgbench(&db, 64, warm, crate::PG_INSERT, &[])?;
    let mut tps = [0.0; 2];
    for (i, sync) in [false, true].into_iter().enumerate() {
        pair.set_sync(sync).await?;
        checkpoint(pair).await?;
        tps[i] = load::pgbench(&db, 64, s.secs, crate::PG_INSERT, &[])?;
    }
    report.contrast(
        "pgbench single-row INSERT tps, 64 clients, sync standby",
        tps[1],
        "same pair, asynchronous",
        tps[0],
    );
    // The floor under POST -> done at api_rate: one commit that waits for the standby,
    // at that rate, with nothing else on the machine (still `sync` from the loop).
    let busy = procs::Busy::start()?;
    let floor = load::pgbench_paced(&db, 64, s.secs, s.api_rate, crate::PG_INSERT)?;
    let floor_busy = busy.percent()?;

    let addr = format!("127.0.0.1:{}", procs::free_port()?);
    let mut serve_env = env(&db, amqp, &queues[0]);
    serve_env.push(("PP_HTTP_ADDR", addr.clone()));
    let serve = Proc::spawn("repl-serve", &["serve", "--db-pool-size", "64"], &serve_env)?;
    procs::wait_healthy(&addr).await?;
    // serve opens its pool's connections as load arrives: not inside the first figure.
    load::wrk_clean(&addr, 64, warm, crate::POST_LUA)?;
    let mut post = [load::HttpRun::default(); 2];
    for (i, sync) in [false, true].into_iter().enumerate() {
        pair.set_sync(sync).await?;
        checkpoint(pair).await?;
        post[i] = load::wrk_clean(&addr, 64, s.secs, crate::POST_LUA)?;
    }
    // POST -> done at a steady rate, every commit (the API's and the sweep's) waiting
    // for the synchronous standby: still `sync` from the loop above. The works wrk
    // created are not swept first: they would be a backlog ahead of the measured ones.
    // Nor are their dead rows left to an autovacuum that would run during the runs.
    let primary = ppctl::storage::admin::connect(&pair.primary_url("ppctl_bench")).await?;
    primary
        .batch_execute("DELETE FROM works WHERE status = 'pending'")
        .await?;
    primary.batch_execute("VACUUM ANALYZE works").await?;
    let sweeper = Proc::spawn(
        "repl-consume-api",
        &["consume"],
        &env(&db, amqp, &queues[0]),
    )?;
    let busy = procs::Busy::start()?;
    let api = crate::latency::api_latency(&addr, &db, s.api_rate, s.secs).await;
    let api_busy = busy.percent()?;
    // The same at a tenth, a fifth and two fifths of that rate: where this pair keeps
    // the bound (each run starts once the one before is all done).
    let mut lower = Vec::new();
    for rate in [s.api_rate / 10, s.api_rate / 5, s.api_rate * 2 / 5] {
        // The run before left dead rows (two updates per work): vacuum them now, not in
        // an autovacuum during this run (a 500/s p99 of 105 ms against a p50 of 13 ms
        // once). No checkpoint: its full-page writes would slow every run after it.
        primary.batch_execute("VACUUM works").await?;
        lower.push((
            rate,
            crate::latency::api_latency(&addr, &db, rate, s.secs).await,
        ));
    }
    sweeper.stop()?;
    serve.stop()?;
    let api = api?;
    let mut at_rates = Vec::new();
    for (rate, run) in lower {
        let run = run?;
        at_rates.push(format!(
            "{rate}/s p50 {:.1} ms, p99 {:.1} ms, done at {:.0}/s ({} answered 503)",
            run.p50_ms, run.p99_ms, run.done_per_s, run.refused
        ));
    }
    report.note(format!(
        "POST /works -> done, sync standby, at lower rates: {}",
        at_rates.join("; ")
    ));
    // A POST answered 503 (the rate is past what the pair takes) has no latency: it
    // counts as over the bound.
    let p99 = if api.refused > 0 {
        f64::INFINITY
    } else {
        api.p99_ms
    };
    report.target_below(
        &format!("POST /works -> done p99 at {}/s, sync standby", s.api_rate),
        p99,
        10.0,
        format!(
            "p50 {:.1} ms, p99 {:.1} ms of {} answered 201, done at {:.0}/s, machine {:.0}% busy; \
             {} answered 503; pgbench's single-row INSERT alone at {}/s on the pair: \
             p50 {:.1} ms, p99 {:.1} ms, machine {:.0}% busy",
            api.p50_ms,
            api.p99_ms,
            api.samples,
            api.done_per_s,
            api_busy,
            api.refused,
            s.api_rate,
            floor.p50_ms,
            floor.p99_ms,
            floor_busy
        ),
    );
    report.contrast(
        "POST /works req/s, 64 conns, sync standby",
        post[1].rps,
        "same pair, asynchronous",
        post[0].rps,
    );
    for (run, mode) in post.iter().zip(["asynchronous", "sync standby"]) {
        report.note(format!(
            "POST /works on the pair, {mode}: p50 {:.2} ms, p99 {:.2} ms",
            run.p50_ms, run.p99_ms
        ));
    }

    // Batched commits: each drain into a database of its own, so all three start from
    // the same empty table.
    pair.set_sync(false).await?;
    let commit = drain(pair, "commit", amqp, &queues[0], s.demands).await?;
    pair.set_sync(true).await?;
    let sync = drain(pair, "sync", amqp, &queues[1], s.demands).await?;
    pair.set_sync(false).await?;
    let standby = drain(pair, "standby", amqp, &queues[2], s.demands).await?;
    let against = "same pair, asynchronous, --ack-after commit";
    report.ratio(
        "consume drain works/s, sync standby",
        sync.rate,
        against,
        commit.rate,
        0.8,
    );
    report.ratio(
        "consume drain works/s, --ack-after standby (asynchronous pair)",
        standby.rate,
        against,
        commit.rate,
        0.8,
    );
    let durability =
        crate::durability(&pair.primary_url("ppctl_bench_standby"), &queues[2]).await?;
    report.per_core(
        "consume drain works/s, --ack-after standby",
        standby.rate,
        &format!("{durability}, acked once a streaming standby flushed it"),
    );
    for (d, mode) in [
        (&commit, "asynchronous"),
        (&sync, "sync standby"),
        (&standby, "--ack-after standby"),
    ] {
        report.note(format!(
            "drain on the pair, {mode}: {:.0} works/s, {:.0} works per batch{}",
            d.rate, d.batch, d.wait
        ));
    }
    Ok(())
}

struct Drain {
    rate: f64,
    /// Mean deliveries per batch: each batch pays one wait for the standby.
    batch: f64,
    /// What `--ack-after standby` waited, when it did.
    wait: String,
}

/// `n` demands queued by `ppctl produce`, then `ppctl consume` timed from its own counter
/// until it has stored them all.
async fn drain(
    pair: &PgPair,
    mode: &str,
    amqp: &str,
    queue: &str,
    n: u64,
) -> anyhow::Result<Drain> {
    let db_name = format!("ppctl_bench_{mode}");
    let mut env = env(&pair.url(&db_name), amqp, queue);
    Proc::run("repl-db-setup", &["db", "setup"], &env)?;
    let count = n.to_string();
    Proc::run(
        "repl-produce",
        &["produce", "--every", "0", "--count", &count],
        &env,
    )?;
    checkpoint(pair).await?;
    // Set for the default too, so a PP_ACK_AFTER inherited from the shell cannot move
    // the baseline.
    let ack_after = if mode == "standby" {
        "standby"
    } else {
        "commit"
    };
    env.push(("PP_ACK_AFTER", ack_after.to_string()));
    let metrics = format!("127.0.0.1:{}", procs::free_port()?);
    let name = format!("repl-consume-{mode}");
    let start = Instant::now();
    let consume = Proc::spawn(&name, &["consume", "--metrics-addr", &metrics], &env)?;
    procs::wait_counter(&metrics, "ppctl_works_stored_total", n).await?;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let batches = procs::metric(&metrics, "ppctl_batch_size_count").await;
    let delivered = procs::metric(&metrics, "ppctl_batch_size_sum").await;
    let scraped = procs::scrape(&metrics).await.unwrap_or_default();
    let waits = procs::sample(&scraped, "ppctl_standby_wait_seconds_count");
    let waited = procs::sample(&scraped, "ppctl_standby_wait_seconds_sum");
    let wait_q = |q| procs::quantile(&scraped, "ppctl_standby_wait_seconds", q);
    consume.stop()?;
    let done: i64 = ppctl::storage::admin::connect(&pair.primary_url(&db_name))
        .await?
        .query_one("SELECT count(*) FROM works WHERE status = 'done'", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        done == n as i64,
        "the {mode} drain stored {done} works of {n}"
    );
    let wait = match (waits, waited) {
        (Some(w), Some(secs)) if w > 0.0 => format!(
            "; {w:.0} waits for the standby's flush, mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms",
            secs * 1000.0 / w,
            wait_q(0.5).unwrap_or(f64::NAN) * 1000.0,
            wait_q(0.99).unwrap_or(f64::NAN) * 1000.0
        ),
        _ => String::new(),
    };
    Ok(Drain {
        rate,
        batch: delivered.zip(batches).map_or(0.0, |(d, b)| d / b.max(1.0)),
        wait,
    })
}

fn env(db: &str, amqp: &str, queue: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.to_string()),
        ("AMQP_URL", amqp.to_string()),
        ("PP_QUEUE", queue.to_string()),
    ]
}

/// Each measurement starts after a checkpoint, so none pays for the previous one's
/// dirty pages or gets its full-page writes for free.
async fn checkpoint(pair: &PgPair) -> anyhow::Result<()> {
    crate::checkpoint(&pair.primary_url("postgres")).await
}
