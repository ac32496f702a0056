//! What the PostgreSQL failover scenarios (12-15) share: a private primary+standby
//! pair per scenario with the processes given both hosts (libpq's multi-host URL with
//! `target_session_attrs=read-write`), API POSTs throughout, and the judging of them.

use super::*;
use crate::infra::PgPair;
use anyhow::Context;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A POST /works is judged unanswered after this (scenario 9 asks for 5 s).
const POST_TIMEOUT: Duration = Duration::from_secs(8);

/// A fresh pair for scenario `tag`, the scenario's database created on it through the
/// multi-host URL, and a poller on server `watch`: the one that survives the fault
/// (a standby holds the same rows, so the done count reads the same there).
pub(super) async fn pair_setup(
    c: &mut Cluster,
    tag: &str,
    sync: bool,
    http: bool,
    watch: usize,
) -> anyhow::Result<(PgPair, Env, Db)> {
    let pair = PgPair::start(&c.run, tag, sync)
        .await
        .with_context(|| format!("start the PostgreSQL pair of {tag}"))?;
    let db_name = format!("chaos_{tag}");
    let watch_url = pair.url(watch, &db_name);
    let amqp_url = c.rabbit.url();
    let env = setup_with(c, tag, http, amqp_url, pair.multi_url(&db_name), &watch_url).await?;
    Ok((pair, env, Db::new(&watch_url)))
}

/// One POST /works: when it was sent, how long it took, its status (None: no answer
/// within POST_TIMEOUT or a broken connection), the id it created.
pub(super) struct Post {
    pub sent: Instant,
    pub took: Duration,
    pub status: Option<u16>,
    pub id: Option<i64>,
}

/// POST /works every 100 ms (one at a time) until stopped: a client that keeps asking
/// through the failover.
pub(super) struct Poster {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Post>>,
}

impl Poster {
    pub fn start(addr: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, addr) = (stop.clone(), addr.to_string());
        let task = tokio::spawn(async move {
            let mut posts = Vec::new();
            for i in 0u64.. {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let sent = Instant::now();
                let body = format!("{{\"add_up_to\": {}}}", i * 7919 % 100_000);
                let answer = http(&addr, "POST", "/works", Some(&body), POST_TIMEOUT).await;
                let status = answer.as_ref().ok().map(|(s, _)| *s);
                let id = answer.ok().filter(|(s, _)| *s == 201).and_then(|(_, b)| {
                    serde_json::from_slice::<serde_json::Value>(&b).ok()?["id"].as_i64()
                });
                let took = sent.elapsed();
                posts.push(Post {
                    sent,
                    took,
                    status,
                    id,
                });
                tokio::time::sleep(Duration::from_millis(100).saturating_sub(took)).await;
            }
            posts
        });
        Self { stop, task }
    }

    pub async fn stop(self) -> anyhow::Result<Vec<Post>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.context("the API poster")
    }
}

/// Judges the POSTs sent around a fault at `fault` (promotion at `promoted`): none may
/// answer 500 or go unanswered (503 is right while no server takes writes), and the
/// first 201 after the fault is reported. Returns the ids created.
pub(super) fn judge_posts(
    row: &mut Row,
    posts: &[Post],
    fault: Instant,
    promoted: Instant,
) -> Vec<i64> {
    row.published += posts.len() as u64;
    let mut refused = 0;
    let mut bad = Vec::new();
    for p in posts {
        match p.status {
            Some(201) => {}
            Some(503) => refused += 1,
            other => bad.push(format!(
                "{other:?} after {:.1}s, sent {:+.1}s from the fault",
                p.took.as_secs_f64(),
                secs_between(fault, p.sent)
            )),
        }
    }
    // "Again": the first 201 sent after the first refusal that followed the fault (a
    // switchover may take effect a moment after it is ordered).
    let after: Vec<&Post> = posts.iter().filter(|p| p.sent >= fault).collect();
    let refused_at = after
        .iter()
        .position(|p| p.status != Some(201))
        .unwrap_or(0);
    let again = after[refused_at..]
        .iter()
        .find(|p| p.status == Some(201))
        .map(|p| secs_between(fault, p.sent + p.took));
    row.notes.push(format!(
        "{} POST /works: {} answered 201, {refused} answered 503; 201 again {} after the fault ({} after the promotion)",
        posts.len(),
        posts.iter().filter(|p| p.status == Some(201)).count(),
        again.map_or("never".into(), |s| format!("{s:.1}s")),
        again.map_or("-".into(), |s| format!("{:.1}s", s - secs_between(fault, promoted)))
    ));
    row.check(bad.is_empty(), || {
        format!(
            "{} POST /works neither 201 nor 503 (a 500, another status, or no answer within {POST_TIMEOUT:?}): {}",
            bad.len(),
            bad.iter().take(6).cloned().collect::<Vec<_>>().join("; ")
        )
    });
    row.check(again.is_some(), || {
        "POST /works never answered 201 after the fault".into()
    });
    posts.iter().filter_map(|p| p.id).collect()
}

/// Seconds from `a` to `b`, negative when `b` is earlier.
pub(super) fn secs_between(a: Instant, b: Instant) -> f64 {
    if b >= a {
        (b - a).as_secs_f64()
    } else {
        -(a - b).as_secs_f64()
    }
}

/// The API works expected at the end: every id answered 201 must be there; works
/// whose POST was not answered 201 (the server died between commit and answer) are
/// noted, and counted as expected so the judge does not call them duplicates.
pub(super) async fn api_expected(
    row: &mut Row,
    db: &mut Db,
    created: &[i64],
) -> anyhow::Result<u64> {
    let sql = "SELECT id FROM works WHERE message_id IS NULL";
    let stored: HashSet<i64> = db
        .client()
        .await?
        .query(sql, &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let created_set: HashSet<i64> = created.iter().copied().collect();
    let missing = created_set.difference(&stored).count();
    let unanswered = stored.difference(&created_set).count();
    if unanswered > 0 {
        row.notes.push(format!(
            "{unanswered} API works exist whose POST was not answered 201 (committed as the server went away: a retrying client would create a second)"
        ));
    }
    row.check(missing == 0, || {
        format!("LOSS: {missing} works answered 201 are not in the new primary")
    });
    Ok((created.len() + unanswered) as u64)
}

/// Client sessions still connected to `db_name` on node `i` (a demoted or dead-end server
/// must not hold any process), with what they last ran.
pub(super) async fn sessions_on(
    pair: &PgPair,
    i: usize,
    db_name: &str,
) -> anyhow::Result<(i64, String)> {
    let sql = format!(
        "SELECT count(*)::text || ' ' || coalesce(string_agg(state || ': ' || left(query, 60), ' | '), '') \
         FROM pg_stat_activity WHERE datname = '{db_name}' AND backend_type = 'client backend' \
         AND pid <> pg_backend_pid()"
    );
    let text = pair.nodes[i].scalar(&sql).await?;
    let (n, what) = text.split_once(' ').unwrap_or((&text, ""));
    Ok((n.parse().unwrap_or(0), what.to_string()))
}

/// `drain_with_api` once the flow has recovered; without recovery, only the producer's
/// confirmed count (its broker is fine), so a stuck flow fails in seconds, not minutes.
pub(super) async fn drain_if_recovered(
    row: &mut Row,
    db: &mut Db,
    producer: &mut Proc,
    n: u64,
    api: u64,
) -> u64 {
    if row.recovery.is_some() {
        return drain_with_api(row, db, producer, n, api).await;
    }
    row.problem("no progress on the new primary: not waiting for the drain");
    let queue_confirmed = producer_confirmed(row, producer, n, PRODUCER_AFTER).await;
    row.confirmed = queue_confirmed + api;
    queue_confirmed
}

/// Waits until `target` works are done, failing at once if a process exits meanwhile
/// (a flag the product does not know yet, say), not after minutes of waiting.
pub(super) async fn wait_done_alive(
    db: &mut Db,
    procs: &mut [&mut Proc],
    target: i64,
) -> anyhow::Result<i64> {
    let start = Instant::now();
    loop {
        for p in procs.iter_mut() {
            if p.failed() {
                anyhow::bail!(
                    "{} exited before the fault; log tail:\n{}",
                    p.name,
                    p.tail(8)
                );
            }
        }
        if let Some(done) = db.int(DONE_SQL).await.filter(|d| *d >= target) {
            return Ok(done);
        }
        if start.elapsed() > FINISH {
            anyhow::bail!("timed out after {FINISH:?} waiting for {target} works done");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `ppctl serve` with `args` and waits until /health answers 200; fails at once
/// if it exits.
pub(super) async fn start_serve(env: &Env, args: &[&str]) -> anyhow::Result<Proc> {
    let addr = env.http_addr.clone().context("http addr")?;
    let mut serve = Proc::spawn(env, "serve", args)?;
    let start = Instant::now();
    loop {
        if serve.failed() {
            anyhow::bail!("serve exited at start; log tail:\n{}", serve.tail(8));
        }
        if let Ok((200, _)) = http(&addr, "GET", "/health", None, Duration::from_secs(5)).await {
            return Ok(serve);
        }
        if start.elapsed() > Duration::from_secs(30) {
            anyhow::bail!("serve not healthy within 30s; log tail:\n{}", serve.tail(8));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET /health while no server takes writes (the primary dead or read-only, the standby
/// not promoted yet): it must not say healthy (the switchover answered 200).
pub(super) async fn health_refuses(row: &mut Row, addr: &str, when: &str) {
    match http(addr, "GET", "/health", None, Duration::from_secs(5)).await {
        Ok((200, body)) => row.problem(format!(
            "GET /health answered 200 {when}, when no server takes writes: {}",
            String::from_utf8_lossy(&body)
        )),
        Ok((status, body)) => row.notes.push(format!(
            "GET /health {when}: {status} {}",
            String::from_utf8_lossy(&body)
        )),
        Err(e) => row.problem(format!("GET /health {when}: {e:#}")),
    }
}

/// After the promotion: /health must come to answer 200, writable, on the new primary
/// (`port`), within `within`.
pub(super) async fn health_on(
    row: &mut Row,
    addr: &str,
    port: u16,
    since: Instant,
    within: Duration,
) {
    let host = format!("127.0.0.1:{port}");
    let on_new = crate::db::wait_for("GET /health 200 on the new primary", within, || async {
        let (status, body) = http(addr, "GET", "/health", None, Duration::from_secs(5))
            .await
            .ok()?;
        let health: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let ok = status == 200 && health["writable"] == true && health["host"] == host.as_str();
        ok.then_some(())
    })
    .await;
    match on_new {
        Ok(()) => row.notes.push(format!(
            "GET /health 200, writable, host {host} {:.1}s after the promotion",
            since.elapsed().as_secs_f64()
        )),
        Err(e) => {
            let last = http(addr, "GET", "/health", None, Duration::from_secs(5)).await;
            let last = last.map(|(s, b)| format!("{s} {}", String::from_utf8_lossy(&b)));
            row.problem(format!(
                "{e:#}; last answer: {}",
                last.unwrap_or_else(|e| format!("{e:#}"))
            ));
        }
    }
}
