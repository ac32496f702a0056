//! Scenario 14: the replica lost. `serve --database-read-url` reads from the standby
//! under a steady GET load (and a client that reads back each work it creates); the
//! standby first lags (replay paused beyond the lag bound), then is SIGKILLed; reads
//! must fall back to the primary each time.

use super::failover::*;
use super::posts::*;
use super::*;
use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Requests may fail this long after the kill (pools noticing the dead replica);
/// none after.
const FALLBACK_WITHIN: Duration = Duration::from_secs(5);
const READERS: usize = 3;
/// How long the replica's replay is paused: beyond serve's default 5 s lag bound.
const PAUSED: Duration = Duration::from_secs(8);

/// (sent, what, status) of one request; status None: no answer within 5 s.
type Probe = (Instant, String, Option<u16>);

/// A reader: GETs the list, one work and its events in turn; the writer-reader (index
/// 0) POSTs a work and reads it back at once, which a lagging replica must not 404.
async fn read_load(
    (addr, known): (String, i64),
    who: usize,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Vec<Probe>>>,
) {
    let mut id = known;
    let t = Duration::from_secs(5);
    for i in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if who == 0 {
            if let Ok((201, body)) = http(&addr, "POST", "/works", None, t).await {
                id = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|w| w["id"].as_i64())
                    .unwrap_or(id);
            }
        }
        let target = match (who, i % 3) {
            (0, _) | (_, 0) => format!("/works/{id}"),
            (_, 1) => "/works?limit=20".to_string(),
            _ => format!("/works/{id}/events"),
        };
        let sent = Instant::now();
        let status = http(&addr, "GET", &target, None, t)
            .await
            .ok()
            .map(|(s, _)| s);
        out.lock().expect("probes").push((sent, target, status));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(super) async fn replica_lost(c: &mut Cluster, row: &mut Row) -> anyhow::Result<()> {
    const N: u64 = 3000;
    let (mut pair, env, mut db) = pair_setup(c, "s14", false, true, 0).await?;
    let addr = env.http_addr.clone().context("http addr")?;
    let read_url = pair.url(1, "chaos_s14");
    let mut serve = start_serve(&env, &["serve", "--database-read-url", &read_url]).await?;
    let mut consumer = Proc::spawn(&env, "consumer", &CONSUME_1MS)?;
    let mut producer = start_paced_producer(&env, row, N, "200ms", 100)?;
    // Readers ask for a work that exists (ids are not dense: a failed insert leaves a gap).
    wait_done_alive(&mut db, &mut [&mut serve, &mut consumer], 1).await?;
    let known = db.must("SELECT min(id) FROM works").await?;
    let (stop, probes) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let readers: Vec<_> = (0..READERS)
        .map(|who| {
            tokio::spawn(read_load(
                (addr.clone(), known),
                who,
                stop.clone(),
                probes.clone(),
            ))
        })
        .collect();
    let third = N as i64 / 3;
    wait_done_alive(&mut db, &mut [&mut serve, &mut consumer], third).await?;
    // The read URL must really be in use, or the kill proves nothing.
    let (on_replica, _) = sessions_on(&pair, 1, "chaos_s14").await?;
    row.check(on_replica > 0, || {
        "serve has no session on the replica: the read URL is not used".into()
    });
    lagging_replica(row, &pair, &addr).await?;
    let fault = Instant::now();
    pair.nodes[1].kill()?;
    tokio::time::sleep(Duration::from_secs(15)).await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.context("a reader")?;
    }
    let probes = std::mem::take(&mut *probes.lock().expect("probes"));
    judge_reads(row, &probes, fault);
    let health = http(&addr, "GET", "/health", None, Duration::from_secs(5)).await;
    let health = health.map(|(s, b)| format!("{s} {}", String::from_utf8_lossy(&b)));
    row.notes.push(format!(
        "with the replica dead, GET /health: {}",
        health.unwrap_or_else(|e| format!("{e:#}"))
    ));
    ensure_running(
        row,
        &mut [&mut consumer, &mut serve],
        "after the replica was killed",
    );
    let api = api_works(&mut db).await?;
    let queue_confirmed = drain_with_api(row, &mut db, &mut producer, N, api).await;
    row.published = N + api;
    stop_all(row, &mut [&mut consumer, &mut serve]).await;
    note_dedup(row, &[&consumer]);
    finish(row, &env, &mut db, queue_confirmed, N, api, 0).await;
    Ok(())
}

/// `replica` of GET /health: (in use, lag in seconds).
async fn replica_state(addr: &str) -> Option<(bool, Option<f64>)> {
    let (_, body) = http(addr, "GET", "/health", None, Duration::from_secs(5))
        .await
        .ok()?;
    let health: serde_json::Value = serde_json::from_slice(&body).ok()?;
    Some((
        health["replica"]["in_use"].as_bool()?,
        health["replica"]["lag_seconds"].as_f64(),
    ))
}

/// The replica stops replaying (`pg_wal_replay_pause()`) for longer than the lag bound
/// (5 s by default) under the same load: serve must set it aside (reads keep answering
/// 200, and a work just created is read back, not 404), then use it again once resumed.
async fn lagging_replica(
    row: &mut Row,
    pair: &crate::infra::PgPair,
    addr: &str,
) -> anyhow::Result<()> {
    let standby = &pair.nodes[1];
    standby.scalar("SELECT pg_wal_replay_pause()").await?;
    tokio::time::sleep(PAUSED).await;
    let paused = replica_state(addr).await;
    standby.scalar("SELECT pg_wal_replay_resume()").await?;
    row.check(paused.is_some_and(|(in_use, _)| !in_use), || {
        format!("/health's replica after {PAUSED:?} without replay (bound 5s): {paused:?}, expected not in use")
    });
    let resumed = Instant::now();
    let back = crate::db::wait_for(
        "the replica in use again",
        Duration::from_secs(15),
        || async { replica_state(addr).await.filter(|(in_use, _)| *in_use) },
    )
    .await;
    if soft(row, back).is_some() {
        row.notes.push(format!(
            "replay paused {PAUSED:?}: replica set aside (/health {paused:?}), in use again {:.1}s after resuming",
            resumed.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

async fn api_works(db: &mut Db) -> anyhow::Result<u64> {
    Ok(db
        .must("SELECT count(*) FROM works WHERE message_id IS NULL")
        .await? as u64)
}

/// Every request before the kill and after FALLBACK_WITHIN must answer 200.
fn judge_reads(row: &mut Row, probes: &[Probe], fault: Instant) {
    let failed = |p: &Probe| p.2 != Some(200);
    let before: Vec<&Probe> = probes.iter().filter(|p| p.0 < fault).collect();
    let during: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.0 >= fault && p.0 < fault + FALLBACK_WITHIN)
        .collect();
    let after: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.0 >= fault + FALLBACK_WITHIN)
        .collect();
    let describe = |ps: &[&Probe]| {
        ps.iter()
            .filter(|p| failed(p))
            .take(6)
            .map(|p| format!("{} {:?} at {:+.1}s", p.1, p.2, secs_between(fault, p.0)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let n_failed = |ps: &[&Probe]| ps.iter().filter(|p| failed(p)).count();
    // Recovery: until the last failed read after the kill answered (0 when none failed).
    let last_failure = probes
        .iter()
        .filter(|p| p.0 >= fault && failed(p))
        .map(|p| p.0)
        .max();
    row.recovery = Some(last_failure.map_or(0.0, |at| secs_between(fault, at)));
    row.notes.push(format!(
        "{} reads: {} before the kill ({} failed), {} in the first {FALLBACK_WITHIN:?} after it ({} failed), {} later ({} failed)",
        probes.len(), before.len(), n_failed(&before), during.len(), n_failed(&during), after.len(), n_failed(&after)
    ));
    row.check(n_failed(&before) == 0, || {
        format!(
            "reads failed while the replica was up: {}",
            describe(&before)
        )
    });
    row.check(n_failed(&after) == 0, || {
        format!(
            "reads still failing {FALLBACK_WITHIN:?} after the replica died: {}",
            describe(&after)
        )
    });
    row.check(after.len() > 10, || {
        format!(
            "only {} reads answered after the fallback window",
            after.len()
        )
    });
}
