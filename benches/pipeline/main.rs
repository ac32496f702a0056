//! `make bench`: ppctl measured against this machine's own limits, every baseline taken
//! in the same run. `--smoke` runs tiny sizes in seconds, so the harness never rots.
//! `--soak` (`make soak`) runs the processes under a steady load instead, for `SOAK`.
//! `--only tracing`, `--only replication` or `--only webhooks` runs only that phase
//! (with or without `--smoke`), its table to target/, never over bench/results.

mod baseline;
mod history;
mod latency;
mod load;
mod pgpair;
mod procs;
mod replication;
mod report;
mod soak;
mod tracing;
mod webhooks;

use anyhow::Context;
use procs::Proc;
use report::Report;

const PG: &str = "postgres://postgres:postgres@127.0.0.1:5432";
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The sizes of one run.
pub struct Sizes {
    pub seed_works: u64,
    pub http_secs: u64,
    pub demands: u64,
    pub e2e_rate: u64,
    pub e2e_secs: u64,
    pub api_rate: u64,
    pub soak_conns: u32,
    pub soak_secs: u64,
    pub history: history::HistorySizes,
    pub replication: replication::ReplSizes,
}

const FULL: Sizes = Sizes {
    seed_works: 100_000,
    http_secs: 10,
    demands: 200_000,
    e2e_rate: 1_000,
    e2e_secs: 10,
    api_rate: 100,
    soak_conns: 1_000,
    soak_secs: 30,
    history: history::HistorySizes {
        small: 100_000,
        big: 10_000_000,
        chunk: 1_000_000,
        samples: 200,
        demands: 300_000,
    },
    replication: replication::ReplSizes {
        secs: 10,
        demands: 200_000,
        api_rate: 5_000,
    },
};
const SMOKE: Sizes = Sizes {
    seed_works: 1_000,
    http_secs: 3,
    demands: 2_000,
    e2e_rate: 200,
    e2e_secs: 1,
    api_rate: 20,
    soak_conns: 50,
    soak_secs: 1,
    history: history::HistorySizes {
        small: 1_000,
        big: 5_000,
        chunk: 2_000,
        samples: 10,
        demands: 1_000,
    },
    replication: replication::ReplSizes {
        secs: 1,
        demands: 500,
        api_rate: 200,
    },
};

fn suffix() -> String {
    format!("{:010x}", rand::random::<u64>() & 0xff_ffff_ffff)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let sizes = if smoke { SMOKE } else { FULL };
    load::self_check();
    match only()? {
        Some("tracing") => return tracing::alone(smoke).await,
        Some("webhooks") => return webhooks::alone(smoke).await,
        Some(_) => return replication_alone(&sizes, smoke).await,
        None => {}
    }
    let db_url = format!("{PG}/ppctl_bench_{}", suffix());
    ppctl::storage::admin::setup(&db_url)
        .await
        .context("is PostgreSQL up? run scripts/services.sh")?;
    let queue = format!("pp_bench_{}", suffix());
    if std::env::args().any(|a| a == "--soak") {
        soak::verdict::self_check();
        let result = soak::run(&db_url, &queue).await;
        cleanup(&db_url, &queue).await;
        return result;
    }
    let result = run(&sizes, &db_url, &queue, smoke).await;
    cleanup(&db_url, &queue).await;
    let report = result?;
    report.print();
    report.save(smoke)?;
    Ok(())
}

/// The phase `--only` names, if any.
fn only() -> anyhow::Result<Option<&'static str>> {
    let args: Vec<String> = std::env::args().collect();
    let Some(i) = args.iter().position(|a| a == "--only") else {
        return Ok(None);
    };
    match args.get(i + 1).map(String::as_str) {
        Some("tracing") => Ok(Some("tracing")),
        Some("replication") => Ok(Some("replication")),
        Some("webhooks") => Ok(Some("webhooks")),
        _ => anyhow::bail!("--only takes one phase: tracing, replication or webhooks"),
    }
}

/// The replication phase alone: it starts its own pair, so no main database is needed.
async fn replication_alone(s: &Sizes, smoke: bool) -> anyhow::Result<()> {
    let mut report = Report::new(smoke);
    let queue = format!("pp_bench_{}", suffix());
    replication::run(&mut report, &s.replication, AMQP, &queue).await?;
    report.print();
    let name = if smoke {
        "replication-smoke"
    } else {
        "replication"
    };
    Ok(report.save_alone(name)?)
}

async fn cleanup(db_url: &str, queue: &str) {
    let _ = ppctl::storage::admin::drop_database(db_url).await;
    delete_queues(AMQP, &[queue.to_string(), format!("{queue}.bare")]).await;
}

/// Deletes each queue with its dead-letter queue and exchange, whatever state it is in.
pub async fn delete_queues(amqp: &str, queues: &[String]) {
    let Ok((_conn, channel)) = ppctl::amqp::connect(amqp, "bench-cleanup").await else {
        return;
    };
    for queue in queues {
        let t = ppctl::amqp::Topology::new(queue);
        for q in [&t.queue, &t.dead_queue] {
            let _ = channel
                .queue_delete(q.as_str().into(), Default::default())
                .await;
        }
        let _ = channel
            .exchange_delete(t.dead_exchange.as_str().into(), Default::default())
            .await;
    }
}

/// A per-row committer: pgbench's single-row insert into the API's table.
pub const PG_INSERT: &str =
    "INSERT INTO works (work_code, add_up_to) VALUES ('pgb-' || md5(random()::text), 10);\n";
pub const POST_LUA: &str = "wrk.method = 'POST'\nwrk.path = '/works'\nwrk.body = '{\"add_up_to\": 10}'\nwrk.headers['Content-Type'] = 'application/json'\n";

async fn run(s: &Sizes, db_url: &str, queue: &str, smoke: bool) -> anyhow::Result<Report> {
    let mut report = Report::new(smoke);
    let port = procs::free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let env = procs::env(db_url, queue, &addr);
    seed(db_url, s.seed_works).await?;

    // 1 and 2: the API against pgbench on the same table.
    // As many database connections as pgbench's clients: the same concurrency into the
    // database on both sides of each ratio.
    let serve = Proc::spawn("serve", &["serve", "--db-pool-size", "64"], &env)?;
    procs::wait_healthy(&addr).await?;
    let max = ("max", s.seed_works.to_string());
    let get_lua = format!(
        "request = function() return wrk.format('GET', '/works/' .. math.random(1, {})) end",
        s.seed_works
    );
    let get = load::wrk_clean(&addr, 64, s.http_secs, &get_lua)?;
    let select = format!(
        "\\set id random(1, :max)\nSELECT {} FROM works WHERE id = :id;\n",
        WORK_COLUMNS
    );
    let pg_select = load::pgbench(db_url, 64, s.http_secs, &select, &[max])?;
    report.ratio(
        "GET /works/{id} req/s, 64 conns",
        get.rps,
        "pgbench select by id, 64 clients",
        pg_select,
        0.5,
    );
    report.note(format!(
        "GET /works/{{id}}: p50 {:.2} ms, p99 {:.2} ms, errors {}",
        get.p50_ms, get.p99_ms, get.errors
    ));
    let post = load::wrk_clean(&addr, 64, s.http_secs, POST_LUA)?;
    let pg_insert = load::pgbench(db_url, 64, s.http_secs, PG_INSERT, &[])?;
    report.ratio(
        "POST /works req/s, 64 conns",
        post.rps,
        "pgbench single-row INSERT, 64 clients",
        pg_insert,
        0.8,
    );
    report.note(format!(
        "POST /works: p50 {:.2} ms, p99 {:.2} ms, errors {}",
        post.p50_ms, post.p99_ms, post.errors
    ));
    // The API's own statement (one row: the work/created event is read from it, and its
    // id taken from the event sequence) through pgbench shows what is HTTP overhead and
    // what is database.
    let api_sql = "INSERT INTO works (work_code, add_up_to, first_event_id) \
                   VALUES ('pgb-' || md5(random()::text), 10, nextval('event_log_id_seq'));\n";
    let pg_api = load::pgbench(db_url, 64, s.http_secs, api_sql, &[])?;
    report.note(format!(
        "pgbench with the API's own insert (one row), 64 clients: {pg_api:.0}/s; POST /works is {:.2} of it",
        post.rps / pg_api
    ));
    // Pending API works would be swept by the consumer below and skew its drain.
    ppctl::storage::admin::connect(db_url)
        .await?
        .batch_execute("DELETE FROM works WHERE status = 'pending'")
        .await?;

    // 4 then 3: the producer fills the queue the consumer drains.
    let n = s.demands;
    let bare_queue = format!("{queue}.bare");
    let bare = baseline::bare_publish(AMQP, &bare_queue, n).await?;
    let count = n.to_string();
    let produced = Proc::run(
        "produce",
        &["produce", "--every", "0", "--count", &count],
        &env,
    )?;
    report.ratio(
        "produce --every 0 msg/s",
        n as f64 / produced.as_secs_f64(),
        "bare confirmed publisher",
        bare,
        0.8,
    );
    let ack_only = baseline::ack_only_drain(AMQP, &bare_queue, n).await?;
    let copy = baseline::copy_works(db_url, n).await?;
    let before = count_done(db_url).await?;
    let metrics = format!("127.0.0.1:{}", procs::free_port()?);
    let start = std::time::Instant::now();
    let consume = Proc::spawn("consume", &["consume", "--metrics-addr", &metrics], &env)?;
    // Watch the consumer's own counter, not count(*): polling a growing table would
    // take database CPU from the consumer being measured.
    procs::wait_counter(&metrics, "ppctl_works_stored_total", n).await?;
    let drain = n as f64 / start.elapsed().as_secs_f64();
    anyhow::ensure!(
        count_done(db_url).await? == before + n as i64,
        "the drain stored a wrong number of works"
    );
    // The drain leaves the latency phase a checkpoint's worth of dirty pages: flush them
    // first so each phase measures itself.
    checkpoint(db_url).await?;
    let (limit, which) = if ack_only < copy {
        (ack_only, "ack-only drain")
    } else {
        (copy, "COPY works (events in the row)")
    };
    report.ratio(
        "consume drain works/s",
        drain,
        &format!("slower of ack-only / COPY: {which}"),
        limit,
        0.5,
    );
    report.note(format!("baselines: ack-only drain {ack_only:.0} msg/s, COPY {copy:.0} works/s (events in the row, as the consumer stores them)"));
    // Each baseline above had both cores to itself; a drain must receive and store at
    // once on the same two cores. Both together, timed to the later one's end, are the
    // machine's bound for that.
    baseline::bare_publish(AMQP, &bare_queue, n).await?;
    let start = std::time::Instant::now();
    let (acked, copied) = tokio::join!(
        baseline::ack_only_drain(AMQP, &bare_queue, n),
        baseline::copy_works(db_url, n)
    );
    let (_, _) = (acked?, copied?);
    let together = n as f64 / start.elapsed().as_secs_f64();
    report.ratio(
        "consume drain works/s, against the machine's bound",
        drain,
        "ack-only drain and COPY at the same time",
        together,
        0.8,
    );
    let durability = durability(db_url, queue).await?;
    report.per_core(
        "consume drain works/s",
        drain,
        &format!("{durability}, ack after commit"),
    );
    report.per_core("POST /works req/s (64 conns)", post.rps, &durability);

    // 5: latency at a steady rate, through the queue and through the API.
    let lat = latency::queue_latency(AMQP, queue, db_url, s.e2e_rate, s.e2e_secs).await?;
    report.target_below(
        &format!("publish -> done p99 at {}/s", s.e2e_rate),
        lat.p99_ms,
        50.0,
        format!("p50 {:.1} ms, {} samples", lat.p50_ms, lat.samples),
    );
    let api = latency::api_latency(&addr, db_url, s.api_rate, s.e2e_secs).await?;
    report.target_below(
        &format!("POST /works -> done p99 at {}/s", s.api_rate),
        if api.refused > 0 {
            f64::INFINITY
        } else {
            api.p99_ms
        },
        100.0,
        format!(
            "p50 {:.1} ms, {} samples, {} answered 503",
            api.p50_ms, api.samples, api.refused
        ),
    );

    // 6: many connections at once.
    let soak = load::wrk(&addr, s.soak_conns, s.soak_secs, &get_lua)?;
    report.target_below(
        &format!("{} conns GET for {} s: errors", s.soak_conns, s.soak_secs),
        soak.errors as f64,
        0.5,
        format!(
            "{:.0} req/s, p99 {:.1} ms, {} requests",
            soak.rps, soak.p99_ms, soak.requests
        ),
    );

    // 7: memory.
    for proc in [&serve, &consume] {
        let mib = proc.peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
        report.target_below(
            &format!("peak RSS of {} (MiB)", proc.name),
            mib,
            64.0,
            String::new(),
        );
    }
    consume.stop()?;
    serve.stop()?;

    // 7b: what tracing costs the drain and POST (issue 18).
    tracing::run(&mut report, smoke, queue, Some((post.rps, drain))).await?;

    // 7c: what the webhook outbox and its deliverer cost the drain (issue 24).
    webhooks::run(&mut report, smoke, queue).await?;

    // 8: what a streaming standby costs, on a private pair. Before the history phase:
    // after it, with the main server's 10M works just pruned and dropped, the 5,000/s
    // run answered 503s that it never answered as a phase alone.
    replication::run(&mut report, &s.replication, AMQP, queue).await?;

    // 9: a history of `big` works, in a database of its own.
    let hist_db = format!("{PG}/ppctl_bench_hist_{}", suffix());
    ppctl::storage::admin::setup(&hist_db).await?;
    let hist_addr = format!("127.0.0.1:{}", procs::free_port()?);
    let hist_env = procs::env(&hist_db, queue, &hist_addr);
    let empty = (post.rps, drain);
    let history = history::run(
        &mut report,
        &s.history,
        &hist_env,
        &hist_db,
        &hist_addr,
        empty,
    )
    .await;
    let _ = ppctl::storage::admin::drop_database(&hist_db).await;
    history?;
    Ok(report)
}

/// A checkpoint on the server of `db_url`, so that what runs next neither pays for the
/// dirty pages of what ran before nor gets its full-page writes for free.
pub async fn checkpoint(db_url: &str) -> anyhow::Result<()> {
    ppctl::storage::admin::connect(db_url)
        .await?
        .batch_execute("CHECKPOINT")
        .await?;
    Ok(())
}

/// What the figures carry, read from the servers themselves: PostgreSQL's fsync and
/// synchronous_commit, the queue's type as the broker has it; publisher confirms are
/// always on in ppctl.
pub async fn durability(db_url: &str, queue: &str) -> anyhow::Result<String> {
    let client = ppctl::storage::admin::connect(db_url).await?;
    let row = client
        .query_one(
            "SELECT current_setting('fsync'), current_setting('synchronous_commit')",
            &[],
        )
        .await?;
    let (fsync, commit): (String, String) = (row.get(0), row.get(1));
    let listed = std::process::Command::new("rabbitmqctl")
        .args(["--silent", "list_queues", "name", "type"])
        .output()
        .context("rabbitmqctl (installed with rabbitmq-server by scripts/services.sh)")?;
    let text = String::from_utf8_lossy(&listed.stdout);
    let kind = text
        .lines()
        .find_map(|l| l.strip_prefix(queue)?.strip_prefix('\t'))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    Ok(format!(
        "fsync {fsync}, synchronous_commit {commit}, {kind} queue, publisher confirms"
    ))
}

const WORK_COLUMNS: &str = "id, work_code, add_up_to, status, result, \
    extract(epoch FROM created_on)::bigint, extract(epoch FROM updated_on)::bigint";

/// `n` done works as the consumer stores them (their events in the row), for the read
/// benchmarks.
async fn seed(db_url: &str, n: u64) -> anyhow::Result<()> {
    let client = ppctl::storage::admin::connect(db_url).await?;
    client
        .execute(
            "INSERT INTO works (work_code, add_up_to, status, result, message_id, first_event_id) \
             SELECT 'seed-' || lpad(i::text, 10, '0'), i % 100, 'done', (i % 100) * (i % 100 + 1) / 2, \
                    'seed-' || i, nextval('event_log_id_seq') \
             FROM generate_series(1, $1::bigint) i",
            &[&(n as i64)],
        )
        .await?;
    // One statement per call: VACUUM cannot run inside the implicit transaction of a
    // multi-statement query.
    client.batch_execute("VACUUM ANALYZE works").await?;
    client.batch_execute("VACUUM ANALYZE event_log").await?;
    Ok(())
}

async fn count_done(db_url: &str) -> anyhow::Result<i64> {
    let client = ppctl::storage::admin::connect(db_url).await?;
    Ok(client
        .query_one("SELECT count(*) FROM works WHERE status = 'done'", &[])
        .await?
        .get(0))
}
