//! The history phase: the read paths timed on a table of `small` works and again after
//! it has grown to `big` (10 million in a full run), in the same run, plus bytes per
//! work, the write rates with the history in place, and what pruning costs.

use crate::procs::{self, Proc};
use crate::report::Report;
use std::time::{Duration, Instant};

pub struct HistorySizes {
    pub small: u64,
    pub big: u64,
    pub chunk: u64,
    pub samples: usize,
    /// Demands per drain (`drain`).
    pub demands: u64,
}

/// Rows shaped as `consume` and the API leave them, over 40 days (so a quarter is past
/// a 30-day retention): done queue works with their events in the row, 2% API works,
/// a few failed, expired and cancelled. Adds them to the running totals.
const GROW: &str = "\
    WITH ins AS ( \
      INSERT INTO works (message_id, work_code, add_up_to, status, result, created_on, \
                         updated_on, first_event_id) \
      SELECT CASE WHEN api THEN NULL ELSE md5(i::text) END, \
             CASE WHEN api THEN 'api-' ELSE 'consumer-' END || lpad(i::text, 10, '0'), \
             i % 1000, st, CASE WHEN st = 'done' THEN (i % 1000) * (i % 1000 + 1) / 2 END, \
             at, at, CASE WHEN NOT api THEN nextval('event_log_id_seq') END \
      FROM generate_series($1::bigint, $2::bigint) AS i, \
      LATERAL (SELECT i % 50 = 0 AS api, \
                      now() - interval '40 days' + (i::float8 / $3::bigint) * interval '40 days' AS at, \
                      CASE i % 1000 WHEN 7 THEN 'failed' WHEN 8 THEN 'expired' \
                                    WHEN 9 THEN 'cancelled' ELSE 'done' END AS st) AS s \
      RETURNING status) \
    UPDATE work_counts SET done = done + (SELECT count(*) FROM ins WHERE status = 'done'), \
        failed = failed + (SELECT count(*) FROM ins WHERE status = 'failed'), \
        expired = expired + (SELECT count(*) FROM ins WHERE status = 'expired'), \
        cancelled = cancelled + (SELECT count(*) FROM ins WHERE status = 'cancelled') \
    WHERE shard = 0";

/// Grows the works table from `from` rows to `to`, chunk by chunk, then tidies up.
async fn grow(db_url: &str, from: u64, to: u64, sizes: &HistorySizes) -> anyhow::Result<f64> {
    let client = ppctl::storage::admin::connect(db_url).await?;
    let start = Instant::now();
    let mut next = from + 1;
    while next <= to {
        let last = (next + sizes.chunk - 1).min(to);
        let params: [i64; 3] = [next as i64, last as i64, sizes.big as i64];
        client
            .execute(GROW, &[&params[0], &params[1], &params[2]])
            .await?;
        next = last + 1;
    }
    for sql in [
        "VACUUM ANALYZE works",
        "VACUUM ANALYZE event_log",
        "CHECKPOINT",
    ] {
        client.batch_execute(sql).await?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The read paths: (label, target). `{id}` becomes a random existing id.
const PATHS: [(&str, &str); 9] = [
    ("GET /metrics", "/metrics"),
    (
        "GET /works?status=failed&limit=20",
        "/works?status=failed&limit=20",
    ),
    (
        "GET /works?work_code=api-&limit=20",
        "/works?work_code=api-&limit=20",
    ),
    (
        "GET /work/search?work_code=api-",
        "/work/search?work_code=api-",
    ),
    (
        "GET /works?work_code=consumer-00000042",
        "/works?work_code=consumer-00000042",
    ),
    ("GET /works?limit=20", "/works?limit=20"),
    ("GET /works/{id}", "/works/{id}"),
    ("GET /works/{id}/events", "/works/{id}/events"),
    ("GET /health", "/health"),
];

/// (p50, p99) in ms of `samples` sequential calls, each spaced by `gap`.
async fn time_path(
    addr: &str,
    target: &str,
    max_id: u64,
    samples: usize,
    gap: Duration,
) -> anyhow::Result<(f64, f64)> {
    let mut ms = Vec::with_capacity(samples);
    for _ in 0..samples {
        let path = target.replace("{id}", &(1 + rand::random::<u64>() % max_id).to_string());
        let request = ppctl::rawhttp::Request::new("GET", &path)?;
        let start = Instant::now();
        let response = ppctl::rawhttp::send(addr, &request).await?;
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            response.status == 200,
            "GET {path} answered {}",
            response.status
        );
        tokio::time::sleep(gap).await;
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
    Ok((at(0.5), at(0.99)))
}

/// Every read path's (p50, p99) at the table's current size; `/stats` is spaced past
/// its one-second reuse, and `db status` is a whole process each time.
async fn read_paths(
    addr: &str,
    env: &[(&str, String)],
    rows: u64,
    samples: usize,
) -> anyhow::Result<Vec<(String, (f64, f64))>> {
    let mut out = Vec::new();
    for (label, target) in PATHS {
        out.push((
            label.to_string(),
            time_path(addr, target, rows, samples, Duration::ZERO).await?,
        ));
    }
    let gap = Duration::from_millis(1100);
    out.push((
        "GET /stats (uncached)".into(),
        time_path(addr, "/stats", rows, 7, gap).await?,
    ));
    let mut runs = Vec::new();
    for _ in 0..7 {
        runs.push(Proc::run("db-status", &["db", "status"], env)?.as_secs_f64() * 1000.0);
    }
    runs.sort_by(f64::total_cmp);
    out.push(("ppctl db status (whole process)".into(), (runs[3], runs[6])));
    Ok(out)
}

/// Works stored per second while `n` demands are drained by one `consume`, from a
/// checkpoint. The first change to an index page after a checkpoint logs the whole page,
/// and each stored work lands on a random leaf of the two random-key indexes
/// (`message_id`, `work_code`): a drain right after a checkpoint pays that for nearly
/// every leaf it touches, one long after pays it for few. 100k-demand drains that
/// started wherever the last timed checkpoint fell measured 0.57–0.95 of the empty
/// table's rate, so each drain starts from a checkpoint (as the replication phase's
/// do), and is long enough that the pages logged once are not the whole of it (a
/// sustained drain logs each page once per checkpoint).
async fn drain(env: &[(&str, String)], db_url: &str, n: u64) -> anyhow::Result<f64> {
    let count = n.to_string();
    Proc::run(
        "produce",
        &["produce", "--every", "0", "--count", &count],
        env,
    )?;
    crate::checkpoint(db_url).await?;
    let metrics = format!("127.0.0.1:{}", procs::free_port()?);
    let start = Instant::now();
    let consume = Proc::spawn(
        "consume",
        &["consume", "--retain", "forever", "--metrics-addr", &metrics],
        env,
    )?;
    procs::wait_counter(&metrics, "ppctl_works_stored_total", n).await?;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    consume.stop()?;
    Ok(rate)
}

/// The whole phase. `empty` holds the main run's figures on a nearly empty table:
/// (POST req/s, drain works/s).
pub async fn run(
    report: &mut Report,
    sizes: &HistorySizes,
    env: &[(&'static str, String)],
    db_url: &str,
    addr: &str,
    empty: (f64, f64),
) -> anyhow::Result<()> {
    grow(db_url, 0, sizes.small, sizes).await?;
    // The pool the empty-table POST ran with (see main.rs), so the rates compare.
    let serve = Proc::spawn("serve-history", &["serve", "--db-pool-size", "64"], env)?;
    procs::wait_healthy(addr).await?;
    let small = read_paths(addr, env, sizes.small, sizes.samples).await?;
    let grow_secs = grow(db_url, sizes.small, sizes.big, sizes).await?;
    report.note(format!(
        "history: grew {} to {} works in {grow_secs:.0} s",
        sizes.small, sizes.big
    ));
    let big = read_paths(addr, env, sizes.big, sizes.samples).await?;
    for ((label, (s50, s99)), (_, (b50, b99))) in small.iter().zip(&big) {
        let detail = format!(
            "p50 {b50:.2} ms; at {}: p50 {s50:.2}, p99 {s99:.2} ms; p99 ratio {:.2}",
            sizes.small,
            b99 / s99
        );
        let bound = if label.starts_with("ppctl db status") {
            1000.0
        } else {
            20.0
        };
        report.target_below(
            &format!("{label} p99 ms at {} works", sizes.big),
            *b99,
            bound,
            detail,
        );
        report.target_below(
            &format!("{label} p99 ratio {}/{}", sizes.big, sizes.small),
            b99 / s99.max(0.05),
            2.0,
            String::new(),
        );
    }
    let client = ppctl::storage::admin::connect(db_url).await?;
    let bytes: f64 = client
        .query_one("SELECT (pg_total_relation_size('works') + pg_total_relation_size('event_log'))::float8 / count(*) FROM works", &[])
        .await?
        .get(0);
    report.target_below(
        "bytes per work (works + events + indexes)",
        bytes,
        600.0,
        "about 1,000 before migration 0004".into(),
    );
    let post_lua = "wrk.method = 'POST'\nwrk.path = '/works'\nwrk.body = '{\"add_up_to\": 10}'\nwrk.headers['Content-Type'] = 'application/json'\n";
    let post = crate::load::wrk_clean(addr, 64, 10, post_lua)?;
    serve.stop()?;
    // The POSTed works are pending: out of the way before the drains.
    client
        .batch_execute("DELETE FROM works WHERE status = 'pending'")
        .await?;
    report.ratio(
        &format!("POST /works req/s with {} works", sizes.big),
        post.rps,
        "POST on the empty table, above",
        empty.0,
        0.8,
    );
    let full = drain(env, db_url, sizes.demands).await?;
    report.ratio(
        &format!("drain works/s with {} works", sizes.big),
        full,
        "drain on the empty table, above",
        empty.1,
        0.8,
    );
    // Pruning a quarter of the history, alone and then under a drain.
    let before: i64 = client
        .query_one("SELECT count(*) FROM works", &[])
        .await?
        .get(0);
    let pruner = std::thread::spawn({
        let env: Vec<(&'static str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
        move || Proc::run("prune", &["db", "prune", "--older-than", "30d"], &env)
    });
    let during = drain(env, db_url, sizes.demands).await?;
    let prune_secs = pruner
        .join()
        .map_err(|_| anyhow::anyhow!("prune thread panicked"))??
        .as_secs_f64();
    let after: i64 = client
        .query_one("SELECT count(*) FROM works", &[])
        .await?
        .get(0);
    let pruned = (before + sizes.demands as i64 - after) as f64;
    report.ratio(
        "drain works/s while db prune runs",
        during,
        "drain with the same history, no prune",
        full,
        0.5,
    );
    report.note(format!("db prune --older-than 30d: {pruned:.0} works in {prune_secs:.1} s, {:.0} works/s (while a drain ran)", pruned / prune_secs));
    Ok(())
}
