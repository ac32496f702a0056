//! Scenario 16: the synchronous standby lost. The primary keeps
//! `synchronous_standby_names` with no standby left (as a promoted server that kept the
//! setting does), so every commit waits; the server still answers reads. Writes may
//! answer 503, but reads must go on answering, and the flow must resume, nothing lost,
//! once the operator connects a new standby.

use super::failover::*;
use super::posts::*;
use super::*;
use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// How long commits wait for a standby that is not there.
const STUCK: Duration = Duration::from_secs(10);
/// Reads may fail this long after the standby is lost; none after.
const READS_WITHIN: Duration = Duration::from_secs(5);
const POSTERS: usize = 4;

/// (sent, status; None: no answer within 8 s) of each GET.
type Reads = Arc<Mutex<Vec<(Instant, Option<u16>)>>>;

/// GET /works/{id} every 200 ms, each in its own task (a stuck request must not delay
/// the next one), until stopped; then lets the last ones finish.
async fn read_one(addr: String, id: i64, stop: Arc<AtomicBool>, out: Reads) {
    let target = format!("/works/{id}");
    while !stop.load(Ordering::Relaxed) {
        let (addr, target, out) = (addr.clone(), target.clone(), out.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            let answer = http(&addr, "GET", &target, None, Duration::from_secs(8)).await;
            out.lock()
                .expect("reads")
                .push((sent, answer.ok().map(|(s, _)| s)));
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(9)).await;
}

/// What the operator sees while commits wait: /health and `ppctl db status`.
async fn operator_view(row: &mut Row, env: &Env, addr: &str) -> anyhow::Result<()> {
    let health = http(addr, "GET", "/health", None, Duration::from_secs(8)).await;
    let health = health.map(|(s, b)| format!("{s} {}", String::from_utf8_lossy(&b)));
    let health = health.unwrap_or_else(|e| format!("{e:#}"));
    row.notes
        .push(format!("GET /health while commits wait: {health}"));
    row.check(
        health.starts_with("503") && health.contains("commits-waiting"),
        || format!("/health does not say commits wait for a missing standby: {health}"),
    );
    let mut status = Proc::spawn(env, "db-status", &["db", "status"])?;
    status.wait(Duration::from_secs(20)).await?;
    let text = status.log_text();
    let line = text
        .lines()
        .find(|l| l.contains("replication:"))
        .unwrap_or("(no replication line)");
    row.notes.push(format!(
        "ppctl db status while commits wait: {}",
        line.trim()
    ));
    row.check(line.contains("no synchronous standby"), || {
        format!(
            "`ppctl db status` does not say commits wait for a missing standby: {}",
            status.tail(6)
        )
    });
    Ok(())
}

pub(super) async fn sync_standby_lost(c: &mut Cluster, row: &mut Row) -> anyhow::Result<()> {
    const N: u64 = 3000;
    let (mut pair, env, mut db) = pair_setup(c, "s16", true, true, 0).await?;
    let addr = env.http_addr.clone().context("http addr")?;
    let mut serve = start_serve(&env, &["serve"]).await?;
    let mut consumer = Proc::spawn(&env, "consumer", &CONSUME_1MS)?;
    let mut producer = start_paced_producer(&env, row, N, "200ms", 100)?;
    // Several clients, as behind a load balancer: each stuck write holds a connection.
    let posters: Vec<Poster> = (0..POSTERS).map(|_| Poster::start(&addr)).collect();
    wait_done_alive(&mut db, &mut [&mut serve, &mut consumer], 1).await?;
    let known = db.must("SELECT min(id) FROM works").await?;
    let (stop, reads) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let reader = tokio::spawn(read_one(addr.clone(), known, stop.clone(), reads.clone()));
    wait_done_alive(&mut db, &mut [&mut serve, &mut consumer], N as i64 / 3).await?;
    let fault = Instant::now();
    pair.nodes[1].kill()?;
    tokio::time::sleep(STUCK).await;
    operator_view(row, &env, &addr).await?;
    ensure_running(
        row,
        &mut [&mut consumer, &mut serve],
        "while commits waited",
    );
    // The operator's fix: a new standby, which the waiting commits accept at once.
    let (base, fixed) = (db.must(DONE_SQL).await?, Instant::now());
    pair.add_standby(0).await?;
    let resumed = recovery(&mut db, base, fixed, Duration::from_secs(60)).await;
    row.recovery = soft(row, resumed).map(|_| fault.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    reader.await.context("the reader")?;
    let mut posts = Vec::new();
    for poster in posters {
        posts.extend(poster.stop().await?);
    }
    posts.sort_by_key(|p| p.sent);
    judge_reads(row, &reads.lock().expect("reads"), fault, fixed);
    let created = judge_posts(row, &posts, fault, (fixed, "the new standby"));
    let api = api_expected(row, &mut db, &addr, &posts, &created).await?;
    let queue_confirmed = drain_if_recovered(row, &mut db, &mut producer, N, api).await;
    stop_all(row, &mut [&mut consumer, &mut serve]).await;
    note_dedup(row, &[&consumer]);
    finish(row, &env, &mut db, queue_confirmed, N, api, 0).await;
    Ok(())
}

/// The server answers reads throughout: from READS_WITHIN after the loss, every GET must
/// answer 200 (a write stuck in its commit must not take the reads down with it).
fn judge_reads(row: &mut Row, reads: &[(Instant, Option<u16>)], fault: Instant, fixed: Instant) {
    let window: Vec<_> = reads
        .iter()
        .filter(|(t, _)| *t >= fault + READS_WITHIN && *t < fixed)
        .collect();
    let failed: Vec<_> = window.iter().filter(|(_, s)| *s != Some(200)).collect();
    row.notes.push(format!(
        "GET /works/{{id}} while commits waited (from {READS_WITHIN:?} after the loss until the new standby): {} sent, {} failed",
        window.len(),
        failed.len()
    ));
    row.check(!window.is_empty() && failed.is_empty(), || {
        let first: Vec<String> = failed
            .iter()
            .take(4)
            .map(|(t, s)| format!("{s:?} at {:+.1}s", secs_between(fault, *t)))
            .collect();
        format!(
            "{} of {} reads failed while only commits waited (the server answers reads): {}",
            failed.len(),
            window.len(),
            first.join("; ")
        )
    });
}
