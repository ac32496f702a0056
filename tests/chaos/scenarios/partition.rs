//! Scenario 18: a network partition. Mid-stream, every packet to and from the
//! synchronous primary's port is dropped (iptables, both ways, loopback only): its
//! clients and its standby see a host gone dark, not a refusal, and their open
//! connections hang instead of breaking. The standby is promoted. The harness then plays
//! Patroni on the isolated side: having lost its leader lock, the old primary is stopped
//! (a fast demote: no commit waiting for the lost standby is answered) and started again
//! read-only (`default_transaction_read_only`, over its Unix socket, which iptables does
//! not touch), still cut off; then the partition heals with it up. Nothing may be lost or
//! done twice, no process restarted, and no row written to the old primary after the
//! promotion.

use super::failover::*;
use super::posts::*;
use super::switchover::{judge_api_moved, judge_moved, left_on_old_primary, woken};
use super::*;
use anyhow::Context;
use std::collections::HashSet;

/// How long the harness waits before it decides the primary is gone and promotes.
const DECIDE: Duration = Duration::from_secs(3);
/// How long the partition lasts after the promotion: past the time a dark host's
/// connections are given up (~6 s), so that it is the processes, not the healing,
/// that move them.
const HEAL_AFTER: Duration = Duration::from_secs(20);
// Writers must be writing on the new primary within switchover's MOVE_WITHIN (15 s) of
// the promotion here too: a dark host's open connections are given up within ~6 s (TCP
// keepalives and user timeout, src/config), a new connection passes the dark host in
// its connect_timeout (2 s).

/// The iptables rules that cut `port` off, removed on drop (even when the scenario
/// fails).
struct Partition(u16);

impl Partition {
    /// `--dport`: what clients and the standby send; `--sport`: what the server sends
    /// back. On loopback both cross INPUT.
    fn rules(port: u16) -> [[String; 9]; 2] {
        let rule = |dir: &str| {
            [
                "INPUT",
                "-p",
                "tcp",
                "-d",
                "127.0.0.1",
                dir,
                &port.to_string(),
                "-j",
                "DROP",
            ]
            .map(String::from)
        };
        [rule("--dport"), rule("--sport")]
    }

    fn cut(port: u16) -> anyhow::Result<Self> {
        let cut = Self(port);
        for rule in Self::rules(port) {
            let status = std::process::Command::new("iptables")
                .arg("-I")
                .args(&rule)
                .status()
                .context("run iptables (root needed)")?;
            anyhow::ensure!(status.success(), "iptables -I {rule:?}: {status}");
        }
        Ok(cut)
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        for rule in Self::rules(self.0) {
            let _ = std::process::Command::new("iptables")
                .arg("-D")
                .args(&rule)
                .status();
        }
    }
}

/// Cuts n1 off and promotes n2; returns the cut, when n2 was promoted and its clock
/// then (epoch seconds).
async fn cut_and_promote(
    row: &mut Row,
    pair: &crate::infra::PgPair,
) -> anyhow::Result<(Partition, Instant, f64)> {
    let cut = Partition::cut(pair.nodes[0].port)?;
    tokio::time::sleep(DECIDE).await;
    let start = Instant::now();
    pair.nodes[1].promote().await?;
    let promoted = Instant::now();
    let epoch = pair.nodes[1]
        .scalar("SELECT extract(epoch FROM clock_timestamp())::float8")
        .await?
        .parse::<f64>()?;
    row.notes.push(format!(
        "primary's port dropped both ways; standby promoted {DECIDE:?} later (took {:.1}s)",
        start.elapsed().as_secs_f64()
    ));
    Ok((cut, promoted, epoch))
}

/// Fences n1 while it is cut off (stopped, started read-only), then heals; returns
/// what to note.
async fn fence_and_heal(
    pair: &mut crate::infra::PgPair,
    cut: Partition,
    promoted: Instant,
) -> anyhow::Result<String> {
    let old = &mut pair.nodes[0];
    old.probe_through_socket();
    old.kill()?;
    old.start().await?;
    old.scalar("ALTER SYSTEM SET default_transaction_read_only = on")
        .await?;
    old.scalar("SELECT pg_reload_conf()").await?;
    tokio::time::sleep(HEAL_AFTER.saturating_sub(promoted.elapsed())).await;
    drop(cut);
    Ok(format!(
        "old primary stopped and started read-only while cut off; partition healed {:.1}s after the promotion",
        promoted.elapsed().as_secs_f64()
    ))
}

pub(super) async fn partition(c: &mut Cluster, row: &mut Row) -> anyhow::Result<()> {
    const N: u64 = 6000;
    let (mut pair, env, mut db) = pair_setup(c, "s18", true, true, 1).await?;
    let addr = env.http_addr.clone().context("http addr")?;
    let mut serve = start_serve(&env, &["serve"]).await?;
    // Polling once a minute: API works done promptly prove the LISTEN moved.
    let args = [&CONSUME_1MS[..], &["--sweep-every", "60s"]].concat();
    let mut c1 = Proc::spawn(&env, "consumer1", &args)?;
    let mut c2 = Proc::spawn(&env, "consumer2", &args)?;
    let mut producer = start_paced_producer(&env, row, N, "200ms", 100)?;
    let poster = Poster::start(&addr);
    let third = N as i64 / 3;
    wait_done_alive(&mut db, &mut [&mut serve, &mut c1, &mut c2], third).await?;
    let fault = Instant::now();
    let (cut, promoted, epoch) = cut_and_promote(row, &pair).await?;
    let base = db.must(DONE_SQL).await?;
    // Timed while the partition lasts: the processes must move before it heals.
    let (moved, healed) = tokio::join!(
        recovery(&mut db, base, promoted, Duration::from_secs(60)),
        fence_and_heal(&mut pair, cut, promoted)
    );
    row.notes.push(healed?);
    judge_moved(row, moved, fault, promoted);
    ensure_running(
        row,
        &mut [&mut c1, &mut c2, &mut serve],
        "after the partition",
    );
    let (posts, created) = judge_api_moved(row, poster, fault, promoted).await?;
    let api = api_expected(row, &mut db, &addr, &posts, &created).await?;
    let queue_confirmed = drain_if_recovered(row, &mut db, &mut producer, N, api).await;
    woken(row, &mut db, &posts, promoted).await?;
    left_on_old_primary(row, &pair, "chaos_s18").await;
    stop_all(row, &mut [&mut c1, &mut c2, &mut serve]).await;
    note_dedup(row, &[&c1, &c2]);
    compare_old_primary(row, &pair, &mut db, epoch).await;
    finish(row, &env, &mut db, queue_confirmed, N, api, 0).await;
    Ok(())
}

/// What the old primary holds against the new one: no row may have been written there
/// after the promotion; rows committed there during the partition and never
/// replicated (a commit waiting for the lost standby when it was stopped: never
/// answered, so never acknowledged) are noted.
async fn compare_old_primary(row: &mut Row, pair: &crate::infra::PgPair, db: &mut Db, epoch: f64) {
    let after = format!(
        "SELECT count(*) FROM works WHERE updated_on > to_timestamp({epoch}) \
         OR created_on > to_timestamp({epoch})"
    );
    let written = pair.nodes[0].scalar_in("chaos_s18", &after).await;
    match written.as_deref().map(str::parse::<i64>) {
        Ok(Ok(0)) => row
            .notes
            .push("no row written to the old primary after the promotion".into()),
        Ok(Ok(n)) => row.problem(format!(
            "{n} works written to the old primary after the promotion"
        )),
        other => row.problem(format!("cannot read the old primary's works: {other:?}")),
    }
    let ids = "SELECT coalesce(string_agg(id::text, ','), '') FROM works";
    let old = pair.nodes[0].scalar_in("chaos_s18", ids).await;
    let new = db.client().await.ok();
    let new = match new {
        Some(client) => client.query(ids, &[]).await.ok(),
        None => None,
    };
    let (Ok(old), Some(new)) = (old, new) else {
        row.problem("cannot compare the old primary's works with the new one's");
        return;
    };
    let set = |text: &str| -> HashSet<String> {
        text.split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let new_text: String = new.first().map(|r| r.get(0)).unwrap_or_default();
    let only_old = set(&old).difference(&set(&new_text)).count();
    row.notes.push(format!(
        "{only_old} works only on the old primary (committed there during the partition, never replicated nor acknowledged)"
    ));
}
