//! Scenario 9: PostgreSQL frozen with SIGSTOP (postmaster and every backend) for 20 s
//! under the API, a consumer and a producer. A frozen server accepts TCP and answers
//! nothing, so only the product's own timeouts keep the API answering.

use super::*;
use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const FROZEN: Duration = Duration::from_secs(20);
/// Every API answer must come within this, frozen database or not.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// After SIGCONT the API may still answer 503 this long (pools re-connecting).
const GRACE: Duration = Duration::from_secs(5);
const MARGIN: Duration = Duration::from_millis(250);
const PROBES: [(&str, &str); 3] = [("GET", "/works/1"), ("GET", "/health"), ("POST", "/works")];

/// One probe: when it was sent (since the poller started), what, the status (None: no
/// answer within 8 s or a broken connection), how long it took, and a created work id.
struct Probe {
    sent: Duration,
    what: &'static str,
    status: Option<u16>,
    took: Duration,
    created: Option<i64>,
}

/// Sends the three probes once a second, concurrently, until `stop` is set.
async fn poll_api(addr: String, stop: Arc<AtomicBool>, out: Arc<Mutex<Vec<Probe>>>) {
    let origin = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        for (method, target) in PROBES {
            let (addr, out) = (addr.clone(), out.clone());
            tokio::spawn(async move {
                let sent = origin.elapsed();
                let answer = http(&addr, method, target, None, Duration::from_secs(8)).await;
                let took = origin.elapsed() - sent;
                let created = answer.as_ref().ok().and_then(|(_, body)| {
                    serde_json::from_slice::<serde_json::Value>(body).ok()?["id"].as_i64()
                });
                let status = answer.ok().map(|(s, _)| s);
                let created = created.filter(|_| method == "POST" && status == Some(201));
                let what = if method == "POST" {
                    "POST /works"
                } else {
                    target
                };
                let probe = Probe {
                    sent,
                    what,
                    status,
                    took,
                    created,
                };
                out.lock().expect("probes").push(probe);
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Let the last probes finish (each is bounded).
    tokio::time::sleep(Duration::from_secs(9)).await;
}

/// Checks every probe against the phase it was sent in; returns the ids created.
fn judge_probes(row: &mut Row, probes: &[Probe], frozen: Duration, thawed: Duration) -> Vec<i64> {
    let mut bad = Vec::new();
    let mut during = 0;
    for p in probes {
        let late = p.status.is_none() || p.took > ANSWER_WITHIN;
        // A margin for signal delivery and scheduling on a loaded machine.
        let in_freeze = p.sent >= frozen + MARGIN && p.sent + p.took + MARGIN < thawed;
        let healthy_phase = p.sent + p.took < frozen || p.sent > thawed + GRACE;
        let ok_status = match p.status {
            Some(503) if in_freeze => {
                during += 1;
                true
            }
            _ if in_freeze => false,
            Some(s) if healthy_phase => matches!(s, 200 | 201 | 404),
            Some(s) => matches!(s, 200 | 201 | 404 | 503),
            None => false,
        };
        if late || !ok_status {
            bad.push(format!(
                "{} at {:.1}s: {:?} after {:.2}s",
                p.what,
                p.sent.as_secs_f64(),
                p.status,
                p.took.as_secs_f64()
            ));
        }
    }
    let slowest = probes.iter().map(|p| p.took).max().unwrap_or_default();
    row.notes.push(format!(
        "{} API probes, {during} answered 503 while frozen ({:.1}s..{:.1}s on the probe clock), slowest {:.2}s",
        probes.len(),
        frozen.as_secs_f64(),
        thawed.as_secs_f64(),
        slowest.as_secs_f64()
    ));
    row.check(bad.is_empty(), || {
        format!(
            "{} API probes late (> {ANSWER_WITHIN:?}), unanswered or with the wrong status (frozen {:.1}s..{:.1}s): {}",
            bad.len(),
            frozen.as_secs_f64(),
            thawed.as_secs_f64(),
            bad.iter().take(8).cloned().collect::<Vec<_>>().join("; ")
        )
    });
    probes.iter().filter_map(|p| p.created).collect()
}

/// Scenario 9: PostgreSQL frozen for 20 s; the API answers 503 within 5 s throughout,
/// nothing is lost, the consumer resumes after SIGCONT.
pub(super) async fn freeze_postgres(c: &mut Cluster, row: &mut Row) -> anyhow::Result<()> {
    const N: u64 = 4000;
    let env = setup(c, "s9", true).await?;
    let addr = env.http_addr.clone().context("http addr")?;
    let mut db = Db::new(&env.database_url);
    let mut serve = Proc::spawn(&env, "serve", &["serve"])?;
    wait_healthy(&addr, Duration::from_secs(30)).await?;
    let mut consumer = Proc::spawn(&env, "consumer", &CONSUME_1MS)?;
    // 100 every 200 ms: still publishing when the database freezes.
    let mut producer = start_paced_producer(&env, row, N, "200ms", 100)?;
    let (stop, probes) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let origin = Instant::now();
    let poller = tokio::spawn(poll_api(addr.clone(), stop.clone(), Arc::clone(&probes)));
    let base = db
        .wait_done("1000 works done", |n| n >= 1000, FINISH)
        .await?;
    let frozen_at = origin.elapsed();
    let frozen = c.pg.freeze()?;
    tokio::time::sleep(FROZEN).await;
    // Taken before SIGCONT: kill(1) delivers it some milliseconds into its run.
    let (thawed_at, thawed) = (origin.elapsed(), Instant::now());
    frozen.thaw();
    ensure_running(
        row,
        &mut [&mut consumer, &mut serve],
        "while PostgreSQL was frozen",
    );
    // Recovery: from SIGCONT until the consumer commits again.
    let at_thaw = db.must(DONE_SQL).await?;
    row.notes.push(format!(
        "PostgreSQL frozen for 20s with ~{base}/{N} done ({at_thaw} at SIGCONT)"
    ));
    time_recovery(row, &mut db, at_thaw, thawed).await;
    tokio::time::sleep(GRACE + Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    poller.await.context("the API poller")?;
    let probes = std::mem::take(&mut *probes.lock().expect("probes"));
    let created = judge_probes(row, &probes, frozen_at, thawed_at);
    let api = created.len() as u64;
    let queue_confirmed = drain_with_api(row, &mut db, &mut producer, N, api).await;
    row.published = N + probes.iter().filter(|p| p.what == "POST /works").count() as u64;
    stop_all(row, &mut [&mut consumer, &mut serve]).await;
    note_dedup(row, &[&consumer]);
    finish(row, &env, &mut db, queue_confirmed, N, api, 0).await;
    ghosts(row, &mut db, &created, origin).await
}

/// API works that exist although their POST was not answered 201 (it answered 503 or
/// nothing): a client that retries such a POST gets two works.
async fn ghosts(
    row: &mut Row,
    db: &mut Db,
    created: &[i64],
    origin: Instant,
) -> anyhow::Result<()> {
    let sql = "SELECT id, EXTRACT(EPOCH FROM now() - created_on)::float8 FROM works \
        WHERE message_id IS NULL AND NOT (id = ANY($1)) ORDER BY id";
    let rows = db.client().await?.query(sql, &[&created]).await?;
    let age_origin = origin.elapsed().as_secs_f64();
    let found: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "id {} created at {:.1}s",
                r.get::<_, i64>(0),
                age_origin - r.get::<_, f64>(1)
            )
        })
        .collect();
    row.check(found.is_empty(), || {
        format!(
            "POST /works not answered 201 yet the work was created (a retrying client gets a duplicate): {}",
            found.join(", ")
        )
    });
    Ok(())
}
