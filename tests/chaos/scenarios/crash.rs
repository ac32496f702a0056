//! Processes that die: a consumer SIGKILLed mid-work (scenario 1), a consumer
//! SIGTERMed mid-batch (scenario 5).

use super::*;
use crate::checks;

/// Scenario 1: A consumer is SIGKILLed mid-work; a new one must finish everything, once.
pub(super) async fn kill_consumer(c: &mut Cluster, row: &mut Row) -> anyhow::Result<()> {
    const N: u64 = 4000;
    let env = setup(c, "s1", false).await?;
    let mut db = Db::new(&env.database_url);
    let mut c1 = Proc::spawn(&env, "consumer1", &CONSUME_1MS)?;
    let mut producer = start_producer(&env, row, N)?;
    db.wait_done("1000 works done", |n| n >= 1000, FINISH)
        .await?;
    let fault = Instant::now();
    c1.kill9().await?;
    let base = db.must(DONE_SQL).await?;
    row.notes
        .push(format!("consumer SIGKILLed with {base}/{N} done"));
    let mut c2 = Proc::spawn(&env, "consumer2", &CONSUME_1MS)?;
    time_recovery(row, &mut db, base, fault).await;
    drain_all(row, &mut db, &mut producer, N).await;
    stop_all(row, &mut [&mut c2]).await;
    note_dedup(row, &[&c1, &c2]);
    finish(row, &env, &mut db, row.confirmed, N, 0, 0).await;
    Ok(())
}

/// Scenario 5: SIGTERM while a consumer is in the middle of a slow batch: it must commit and
/// acknowledge that batch and exit 0 promptly; a new consumer finishes the rest.
pub(super) async fn sigterm_in_batch(c: &mut Cluster, row: &mut Row) -> anyhow::Result<()> {
    const N: u64 = 3000;
    let env = setup(c, "s5", false).await?;
    let mut db = Db::new(&env.database_url);
    let mut producer = start_producer(&env, row, N)?;
    row.confirmed = producer_confirmed(row, &mut producer, N, FINISH).await;
    // 20 ms a work: a batch of 50 takes about a second.
    let mut c1 = Proc::spawn(&env, "consumer1", &["consume", "--work-delay", "20ms"])?;
    let first = db
        .wait_done("the first batches", |n| n >= 100, FINISH)
        .await?;
    // Right after a batch commits, the next one is being computed: signal 300 ms in.
    db.wait_done("the next batch", |n| n > first, Duration::from_secs(20))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_term = db.must(DONE_SQL).await?;
    let fault = Instant::now();
    c1.sigterm();
    let status = c1.wait(Duration::from_secs(15)).await?;
    let took = fault.elapsed().as_secs_f64();
    row.check(status.success(), || {
        format!(
            "consumer exited with {status} after SIGTERM: {}",
            c1.tail(10)
        )
    });
    let after = db.must(DONE_SQL).await?;
    row.notes.push(format!(
        "SIGTERM with {at_term}/{N} done: exited {status} after {took:.2}s with {after} done"
    ));
    row.check(after > at_term, || {
        format!("the in-flight batch was not committed before exit ({at_term} done at SIGTERM, {after} after)")
    });
    let confirmed = row.confirmed;
    match checks::queue_counts(&env.amqp_url, &env.queue).await {
        Ok((ready, dead)) => row.check(after + i64::from(ready) == confirmed as i64 && dead == 0, || {
            format!("after the graceful stop: {after} stored + {ready} queued != {confirmed} confirmed ({dead} dead)")
        }),
        Err(e) => row.problem(format!("queue counts: {e:#}")),
    }
    let mut c2 = Proc::spawn(&env, "consumer2", &["consume"])?;
    row.recovery = soft(
        row,
        recovery(&mut db, after, fault, Duration::from_secs(60)).await,
    );
    let confirmed = row.confirmed as i64;
    soft(
        row,
        db.wait_done("every confirmed demand done", |n| n >= confirmed, FINISH)
            .await,
    );
    stop_all(row, &mut [&mut c2]).await;
    note_dedup(row, &[&c1, &c2]);
    finish(row, &env, &mut db, row.confirmed, N, 0, 0).await;
    Ok(())
}
