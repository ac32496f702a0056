//! Scenario 17: scenario 12's failover with TLS on both links, then the broker lost as
//! well. A synchronous PostgreSQL pair that takes ppctl over TLS only (`hostssl`) and a
//! RabbitMQ node whose only listener is TLS, both with certificates made at run time;
//! every process gets `sslmode=verify-full` and `amqps://…?cacertfile=`. What proves
//! TLS was on is what the servers say: `pg_stat_ssl` for every ppctl session, and the
//! broker's `list_connections ssl`, before the faults and after them.

use super::failover::*;
use super::posts::*;
use super::primary::fail_over;
use super::*;
use crate::checks::queue_counts;
use crate::infra::{PgPair, PrivateRabbit};
use crate::tls_certs::Certs;
use anyhow::Context;
use std::os::unix::fs::PermissionsExt;

/// ppctl's sessions on a server as it sees them: "<not encrypted> <all> <versions>".
const PPCTL_TLS_SQL: &str = "SELECT count(*) FILTER (WHERE NOT s.ssl)::text || ' ' \
    || count(*)::text || ' ' || coalesce(string_agg(DISTINCT s.version, ','), '-') \
    FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'ppctl'";

/// The scenario's own servers: dropped (killed) when it ends.
struct TlsServers {
    pair: PgPair,
    rabbit: PrivateRabbit,
}

/// Certificates, the TLS pair and the TLS broker (booted side by side), the database
/// made by `ppctl db setup` over TLS, and a poller on n2 (plain, through its Unix socket).
async fn tls_setup(c: &mut Cluster) -> anyhow::Result<(TlsServers, Env, Db)> {
    let dir = c.run.path.join("tls-s17");
    std::fs::create_dir_all(&dir)?;
    // The postgres user reads the server certificate here.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let certs = Certs::generate(&dir).map_err(anyhow::Error::msg)?;
    let (pair, rabbit) = tokio::join!(
        PgPair::start_with(&c.run, "s17", true, Some(&certs)),
        PrivateRabbit::start_tls(&c.run, "s17", &certs)
    );
    let pair = pair.context("start the TLS PostgreSQL pair")?;
    let rabbit = rabbit.context("start the TLS-only RabbitMQ node")?;
    let watch_url = pair.url(1, "chaos_s17");
    let (amqp, pg) = (rabbit.url(), pair.multi_url("chaos_s17"));
    let env = setup_with(c, "s17", true, amqp, pg, &watch_url).await?;
    Ok((TlsServers { pair, rabbit }, env, Db::new(&watch_url)))
}

/// Every ppctl session on node `i` is encrypted, and there is at least one; waits up
/// to 15 s for the processes to have connected (after a failover).
async fn pg_sessions_encrypted(row: &mut Row, pair: &PgPair, i: usize, when: &str) {
    let node = &pair.nodes[i];
    let mut last = String::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        last = node
            .scalar(PPCTL_TLS_SQL)
            .await
            .unwrap_or_else(|e| format!("{e:#}"));
        let f: Vec<&str> = last.split(' ').collect();
        if f.len() == 3 && f[0] == "0" && f[1] != "0" {
            row.notes.push(format!(
                "{when}: all {} ppctl sessions on {} encrypted ({}, pg_stat_ssl)",
                f[1], node.name, f[2]
            ));
            return;
        }
        if f.len() == 3 && f[0] != "0" {
            break; // a plain session: no need to wait for more
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    row.problem(format!(
        "{when}: ppctl sessions on {} not all encrypted (pg_stat_ssl: not encrypted, all, versions = {last})",
        node.name
    ));
}

/// Every client connection the broker lists is TLS, and there are at least `min`
/// (the consumers, say); waits up to 15 s for them to have reconnected.
async fn broker_connections_tls(row: &mut Row, rabbit: &PrivateRabbit, min: usize, when: &str) {
    let mut last = String::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        match rabbit.tls_connections().await {
            Ok((ssl, all, protocols)) if ssl == all && all >= min => {
                row.notes.push(format!(
                    "{when}: the broker lists {all} client connections, all ssl = true ({protocols})"
                ));
                return;
            }
            Ok((ssl, all, _)) => {
                last = format!("{ssl} of {all} with ssl = true");
                if ssl < all {
                    break; // a plain connection: no need to wait for more
                }
            }
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    row.problem(format!(
        "{when}: the broker's connections are not {min}+ all TLS: {last}"
    ));
}

/// What the servers say of the links: every ppctl session on PostgreSQL node `pg`
/// encrypted, and at least `amqp` broker connections, all TLS.
async fn all_encrypted(row: &mut Row, servers: &TlsServers, pg: usize, amqp: usize, when: &str) {
    pg_sessions_encrypted(row, &servers.pair, pg, when).await;
    broker_connections_tls(row, &servers.rabbit, amqp, when).await;
}

/// Waits until `target` demands are published (done, or waiting in the queue).
async fn wait_published(env: &Env, db: &mut Db, target: i64) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let done = db.int(DONE_SQL).await.unwrap_or(0);
        let ready = queue_counts(&env.amqp_url, &env.queue)
            .await
            .map_or(0, |(ready, _)| i64::from(ready));
        if done + ready >= target {
            return Ok(());
        }
        if start.elapsed() > FINISH {
            anyhow::bail!("{target} demands not published within {FINISH:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGKILLs the broker while the producer still publishes and boots it again on its
/// directories; notes how long it was down and when the flow moved again.
async fn broker_lost(
    row: &mut Row,
    rabbit: &mut PrivateRabbit,
    db: &mut Db,
    producer: &mut Proc,
    procs: &mut [&mut Proc],
) -> anyhow::Result<()> {
    row.check(producer.running(), || {
        "the producer finished before the broker was killed: the fault missed the stream".into()
    });
    let fault = Instant::now();
    rabbit.kill()?;
    let at_kill = db.must(DONE_SQL).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure_running(row, procs, "while RabbitMQ was down");
    rabbit.restart().await?;
    let down = fault.elapsed().as_secs_f64();
    let base = db.must(DONE_SQL).await?;
    let resumed = recovery(db, base, fault, Duration::from_secs(60)).await;
    if let Some(after) = soft(row, resumed) {
        row.notes.push(format!(
            "broker SIGKILLed mid-stream with {at_kill} done, back after {down:.1}s; works done again {after:.1}s after the kill"
        ));
    }
    Ok(())
}

/// Scenario 17: TLS on both links; the synchronous primary lost mid-stream (and the
/// standby promoted), then the broker. Nothing lost, nothing twice, no process exits,
/// POST answered 201 or 503 only, /health 200 again, and every session encrypted.
pub(super) async fn tls_failover(c: &mut Cluster, row: &mut Row) -> anyhow::Result<()> {
    const N: u64 = 12_000;
    let (mut servers, env, mut db) = tls_setup(c).await?;
    let addr = env.http_addr.clone().context("http addr")?;
    let mut serve = start_serve(&env, &["serve"]).await?;
    let mut c1 = Proc::spawn(&env, "consumer1", &CONSUME_1MS)?;
    let mut c2 = Proc::spawn(&env, "consumer2", &CONSUME_1MS)?;
    // 200 every 200 ms: a 12 s stream, still publishing through both faults.
    let mut producer = start_paced_producer(&env, row, N, "200ms", 200)?;
    let poster = Poster::start(&addr);
    // The producer too: one that cannot connect gives up in 60 s and says why (a
    // certificate it does not trust, say), sooner than the wait's own bound.
    let procs = &mut [&mut serve, &mut c1, &mut c2, &mut producer];
    wait_done_alive(&mut db, procs, N as i64 / 3).await?;
    all_encrypted(row, &servers, 0, 3, "before the faults").await;
    let fault = Instant::now();
    let pair = &mut servers.pair;
    let promoted = fail_over(row, pair, &mut db, N, None, Some(&addr)).await?;
    let base = db.must(DONE_SQL).await?;
    let (health, resumed) = tokio::join!(
        health_on(&addr, pair.nodes[1].port, promoted, Duration::from_secs(15)),
        recovery(&mut db, base, fault, Duration::from_secs(60))
    );
    note_health(row, health);
    row.recovery = soft(row, resumed);
    let procs = &mut [&mut c1, &mut c2, &mut serve];
    ensure_running(row, procs, "after the failover");
    wait_published(&env, &mut db, 2 * N as i64 / 3).await?;
    broker_lost(row, &mut servers.rabbit, &mut db, &mut producer, procs).await?;
    all_encrypted(row, &servers, 1, 2, "after both faults").await;
    ensure_running(row, procs, "after both faults");
    let posts = poster.stop().await?;
    let created = judge_posts(row, &posts, fault, (promoted, "the promotion"));
    let api = api_expected(row, &mut db, &addr, &posts, &created).await?;
    let queue_confirmed = drain_if_recovered(row, &mut db, &mut producer, N, api).await;
    stop_all(row, &mut [&mut c1, &mut c2, &mut serve]).await;
    note_dedup(row, &[&c1, &c2]);
    finish(row, &env, &mut db, queue_confirmed, N, api, 0).await;
    Ok(())
}
