//! Scenario 13: a switchover. The old primary stays up but refuses writes (as a demoted
//! primary seen through a stale DNS name or pooler does), the standby catches up and is
//! promoted. Every writer and listener must move to the new primary on its own.

use super::failover::*;
use super::posts::*;
use super::*;
use anyhow::Context;

/// Writers must be writing on the new primary this soon after the promotion.
const MOVE_WITHIN: Duration = Duration::from_secs(15);
/// An API work created after the promotion is done this soon (the sweeper polls only
/// once a minute: sooner means a NOTIFY on the new primary woke it).
const WAKE_WITHIN: f64 = 5.0;
/// How long the old primary is read-only before the standby is promoted.
const HOLD: Duration = Duration::from_millis(1500);

/// Makes n1 read-only, waits for n2 to replay all of n1's WAL, promotes n2; returns
/// when the promotion finished. Read-only first: nothing commits on n1 after the
/// standby caught up, so the switchover itself loses nothing.
async fn switch(row: &mut Row, pair: &crate::infra::PgPair, addr: &str) -> anyhow::Result<Instant> {
    let old = &pair.nodes[0];
    old.scalar("ALTER SYSTEM SET default_transaction_read_only = on")
        .await?;
    old.scalar("SELECT pg_reload_conf()").await?;
    // A switchover tool checks things before it promotes: writers meet the read-only
    // server meanwhile, and /health must not call that healthy.
    tokio::time::sleep(HOLD).await;
    health_refuses(row, addr, "with the old primary read-only").await;
    let caught_up = pair.wait_caught_up(0, 1).await?;
    let start = Instant::now();
    pair.nodes[1].promote().await?;
    row.notes.push(format!(
        "old primary made read-only; {HOLD:?} later the standby caught up in {caught_up:.2}s, promoted in {:.1}s",
        start.elapsed().as_secs_f64()
    ));
    Ok(Instant::now())
}

pub(super) async fn switchover(c: &mut Cluster, row: &mut Row) -> anyhow::Result<()> {
    const N: u64 = 6000;
    let (pair, env, mut db) = pair_setup(c, "s13", false, true, 1).await?;
    let addr = env.http_addr.clone().context("http addr")?;
    let mut serve = start_serve(&env, &["serve"]).await?;
    // Polling once a minute: an API work is done promptly only if serve's NOTIFY and
    // the consumers' LISTEN both moved to the new primary (NOTIFY is not replicated).
    let args = [&CONSUME_1MS[..], &["--sweep-every", "60s"]].concat();
    let mut c1 = Proc::spawn(&env, "consumer1", &args)?;
    let mut c2 = Proc::spawn(&env, "consumer2", &args)?;
    let mut producer = start_paced_producer(&env, row, N, "200ms", 200)?;
    let poster = Poster::start(&addr);
    let third = N as i64 / 3;
    wait_done_alive(&mut db, &mut [&mut serve, &mut c1, &mut c2], third).await?;
    let fault = Instant::now();
    let promoted = switch(row, &pair, &addr).await?;
    let base = db.must(DONE_SQL).await?;
    let (health, moved) = tokio::join!(
        health_on(&addr, pair.nodes[1].port, promoted, MOVE_WITHIN),
        recovery(&mut db, base, promoted, Duration::from_secs(60))
    );
    note_health(row, health);
    judge_moved(row, moved, fault, promoted);
    ensure_running(
        row,
        &mut [&mut c1, &mut c2, &mut serve],
        "after the switchover",
    );
    let (posts, created) = judge_api_moved(row, poster, fault, promoted).await?;
    let api = api_expected(row, &mut db, &addr, &posts, &created).await?;
    let queue_confirmed = drain_if_recovered(row, &mut db, &mut producer, N, api).await;
    woken(row, &mut db, &posts, promoted).await?;
    left_on_old_primary(row, &pair, "chaos_s13").await;
    stop_all(row, &mut [&mut c1, &mut c2, &mut serve]).await;
    note_dedup(row, &[&c1, &c2]);
    finish(row, &env, &mut db, queue_confirmed, N, api, 0).await;
    Ok(())
}

/// No process may keep a session on the demoted primary: a pooled connection there is
/// a write that will fail, a LISTEN there hears nothing (NOTIFY is not replicated).
/// Sessions that errored are dropped at once; idle ones are given a few seconds.
pub(super) async fn left_on_old_primary(row: &mut Row, pair: &crate::infra::PgPair, db_name: &str) {
    let start = Instant::now();
    loop {
        match sessions_on(pair, 0, db_name).await {
            Ok((0, _)) => return,
            Ok((n, what)) if start.elapsed() > Duration::from_secs(10) => {
                row.problem(format!(
                    "{n} ppctl sessions still on the demoted primary after the drain: {what}"
                ));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                row.problem(format!("cannot list the old primary's sessions: {e:#}"));
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// API works created after the promotion: each must be done within WAKE_WITHIN of its
/// creation, which only a LISTEN re-subscribed on the new primary achieves.
pub(super) async fn woken(
    row: &mut Row,
    db: &mut Db,
    posts: &[Post],
    promoted: Instant,
) -> anyhow::Result<()> {
    let ids: Vec<i64> = posts
        .iter()
        .filter(|p| p.sent >= promoted)
        .filter_map(|p| p.id)
        .collect();
    let sql =
        "SELECT count(*), coalesce(max(EXTRACT(EPOCH FROM updated_on - created_on)), 0)::float8 \
        FROM works WHERE id = ANY($1) AND status = 'done'";
    let r = db.client().await?.query_one(sql, &[&ids]).await?;
    let (done, slowest): (i64, f64) = (r.get(0), r.get(1));
    row.notes.push(format!(
        "{done} of {} API works created after the promotion done, the slowest {slowest:.1}s after its POST (polling every 60s)",
        ids.len()
    ));
    row.check(done > 0 && slowest <= WAKE_WITHIN, || format!(
        "API works created after the promotion: {done} of {} done, slowest {slowest:.1}s (bound {WAKE_WITHIN}s): the wake-ups did not follow the primary",
        ids.len()
    ));
    Ok(())
}

/// The consumers' move: done works on the new primary within `MOVE_WITHIN` of the
/// promotion (`moved`: how long after it they were seen).
pub(super) fn judge_moved(
    row: &mut Row,
    moved: anyhow::Result<f64>,
    fault: Instant,
    promoted: Instant,
) {
    if let Some(s) = soft(row, moved) {
        row.recovery = Some(s + secs_between(fault, promoted));
        row.notes.push(format!(
            "works done on the new primary {s:.1}s after the promotion (bound {MOVE_WITHIN:?})"
        ));
        row.check(s <= MOVE_WITHIN.as_secs_f64(), || {
            format!(
                "the consumers took {s:.1}s to write on the new primary (bound {MOVE_WITHIN:?})"
            )
        });
    }
}

/// The API's move: stops the poster (3 s on), judges its POSTs, and checks one answered
/// 201 within `MOVE_WITHIN` of the promotion. Returns the POSTs and the works created.
pub(super) async fn judge_api_moved(
    row: &mut Row,
    poster: Poster,
    fault: Instant,
    promoted: Instant,
) -> anyhow::Result<(Vec<Post>, Vec<i64>)> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let posts = poster.stop().await?;
    let created = judge_posts(row, &posts, fault, (promoted, "the promotion"));
    let api_moved = posts
        .iter()
        .find(|p| p.sent >= promoted && p.status == Some(201))
        .map(|p| secs_between(promoted, p.sent + p.took));
    row.check(api_moved.is_some_and(|s| s <= MOVE_WITHIN.as_secs_f64()), || {
        format!("POST /works not answered 201 within {MOVE_WITHIN:?} of the promotion ({api_moved:?})")
    });
    Ok((posts, created))
}
