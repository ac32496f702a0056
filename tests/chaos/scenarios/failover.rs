//! What the PostgreSQL failover scenarios (12-15) share: a private primary+standby
//! pair per scenario with the processes given both hosts (libpq's multi-host URL with
//! `target_session_attrs=read-write`), process checks that fail fast, and what
//! /health must say around a failover.

use super::*;
use crate::infra::PgPair;
use anyhow::Context;

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
/// (`port`), within `within`; a note or a problem for the row. Run beside the recovery
/// timing (tokio::join!), so that neither delays the other's measurement.
pub(super) async fn health_on(
    addr: &str,
    port: u16,
    since: Instant,
    within: Duration,
) -> Result<String, String> {
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
        Ok(()) => Ok(format!(
            "GET /health 200, writable, host {host} {:.1}s after the promotion",
            since.elapsed().as_secs_f64()
        )),
        Err(e) => {
            let last = http(addr, "GET", "/health", None, Duration::from_secs(5)).await;
            let last = last.map(|(s, b)| format!("{s} {}", String::from_utf8_lossy(&b)));
            Err(format!(
                "{e:#}; last answer: {}",
                last.unwrap_or_else(|e| format!("{e:#}"))
            ))
        }
    }
}

pub(super) fn note_health(row: &mut Row, health: Result<String, String>) {
    match health {
        Ok(note) => row.notes.push(note),
        Err(problem) => row.problem(problem),
    }
}
