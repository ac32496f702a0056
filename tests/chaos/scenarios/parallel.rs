//! Scenario 4: three consumers, API works swept under leases, one consumer killed.

use super::*;
use anyhow::Context;

/// POSTs `count` works; returns the ids of those created (201).
async fn post_works(addr: String, seed: u64, count: usize) -> (usize, Vec<i64>) {
    let mut ids = Vec::new();
    for i in 0..count {
        // A spread of sizes, with both ends of the range.
        let n = match (seed + i as u64) % 50 {
            0 => 0,
            1 => 4_294_967_295,
            k => (seed * 7919 + i as u64 * 104_729 + k) % 1_000_000,
        };
        let body = format!("{{\"add_up_to\": {n}}}");
        if let Ok((201, body)) = http(
            &addr,
            "POST",
            "/works",
            Some(&body),
            Duration::from_secs(10),
        )
        .await
        {
            if let Some(id) = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|w| w["id"].as_i64())
            {
                ids.push(id);
            }
        }
    }
    (count, ids)
}

/// Scenario 4: Three consumers share the queue and sweep API works created meanwhile; one of
/// them is SIGKILLed while it holds leased API works, which the others re-claim when
/// the lease expires.
pub(super) async fn consumers_and_api(c: &mut Cluster, row: &mut Row) -> anyhow::Result<()> {
    const N: u64 = 4000;
    const POSTERS: usize = 6;
    const PER_POSTER: usize = 100;
    let env = setup(c, "s4", true).await?;
    let addr = env.http_addr.clone().context("http addr")?;
    let mut db = Db::new(&env.database_url);
    let mut serve = Proc::spawn(&env, "serve", &["serve"])?;
    wait_healthy(&addr, Duration::from_secs(30)).await?;
    let args = [
        "consume",
        "--work-delay",
        "5ms",
        "--lease",
        "2s",
        "--sweep-every",
        "1s",
    ];
    let mut consumers = Vec::new();
    for i in 1..=3 {
        consumers.push(Proc::spawn(&env, &format!("consumer{i}"), &args)?);
    }
    let mut producer = start_producer(&env, row, N)?;
    let posters: Vec<_> = (0..POSTERS)
        .map(|i| tokio::spawn(post_works(addr.clone(), i as u64, PER_POSTER)))
        .collect();
    // Kill whichever consumer holds the most leased API works, once one holds a few:
    // a sweep batch of them takes long enough that the kill lands inside it.
    let pids: Vec<u32> = consumers.iter().map(Proc::pid).collect();
    let start = Instant::now();
    let victim = loop {
        let top = db.client().await?.query_opt(TOP_HOLDER, &[]).await?;
        let holder = top.map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)));
        if let Some((by, n)) = holder.filter(|(_, n)| *n >= 5) {
            if let Some(i) = pids.iter().position(|p| by.contains(&format!("-{p}-"))) {
                break Some((i, by, n));
            }
        }
        if start.elapsed() > Duration::from_secs(60) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let killed = victim.as_ref().map(|(i, _, _)| *i);
    if let Some((i, by, _)) = victim {
        let fault = Instant::now();
        consumers[i].kill9().await?;
        let held: Vec<i64> = db
            .client()
            .await?
            .query(
                "SELECT id FROM works WHERE status = 'running' AND locked_by = $1",
                &[&by],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let name = consumers[i].name.clone();
        if held.is_empty() {
            row.notes.push(format!(
                "{name} completed its sweep just before the kill: no re-claim exercised"
            ));
        } else {
            row.notes.push(format!(
                "{name} SIGKILLed holding {} leased API works",
                held.len()
            ));
            reclaimed(row, &mut db, &held, fault).await?;
        }
    } else {
        row.notes
            .push("no consumer ever held 5 leased API works: nobody killed".into());
    }
    let (mut posted, mut created) = (0, Vec::new());
    for p in posters {
        let (n, ids) = p.await.context("poster task")?;
        posted += n;
        created.extend(ids);
    }
    row.published = N + posted as u64;
    let api = created.len() as u64;
    row.check(api == posted as u64, || {
        format!("only {api} of {posted} POST /works answered 201")
    });
    let queue_confirmed = drain_with_api(row, &mut db, &mut producer, N, api).await;
    let mut alive: Vec<&mut Proc> = consumers
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| Some(*i) != killed)
        .map(|(_, p)| p)
        .collect();
    alive.push(&mut serve);
    stop_all(row, &mut alive).await;
    note_dedup(row, &consumers.iter().collect::<Vec<_>>());
    finish(row, &env, &mut db, queue_confirmed, N, api, 0).await;
    Ok(())
}

/// The consumer holding the most leased (running) API works, and how many.
const TOP_HOLDER: &str = "SELECT locked_by, count(*) FROM works \
    WHERE status = 'running' AND locked_by IS NOT NULL \
    GROUP BY locked_by ORDER BY count(*) DESC LIMIT 1";

/// Waits until the works a dead consumer held are re-claimed and done; the recovery
/// time is from the kill until the last of them is done.
async fn reclaimed(row: &mut Row, db: &mut Db, held: &[i64], fault: Instant) -> anyhow::Result<()> {
    let ids = held
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let n = held.len() as i64;
    let sql = format!("SELECT count(*) FROM works WHERE id IN ({ids}) AND status = 'done'");
    let what = "the dead consumer's works to be re-claimed and done";
    let done = db
        .wait_until(what, &sql, |d| d == n, Duration::from_secs(60))
        .await;
    if soft(row, done).is_some() {
        row.recovery = Some(fault.elapsed().as_secs_f64());
    }
    let sql = format!("SELECT count(*) FROM works WHERE id IN ({ids}) AND attempts >= 2");
    let again = db.must(&sql).await?;
    row.check(again == n, || {
        format!("only {again} of the {n} works held by the dead consumer show a second claim")
    });
    Ok(())
}
