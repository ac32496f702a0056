//! The steps every scenario ends with: timing the recovery, draining, stopping the
//! processes gracefully and judging the database and the broker. A failed step is
//! recorded in the row (`soft`) so that the judging still runs.

use super::*;

/// Records a failed step without abandoning the scenario.
pub(super) fn soft<T>(row: &mut Row, result: anyhow::Result<T>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            row.problem(format!("{e:#}"));
            None
        }
    }
}

/// After a fault: how long until the done count grows past `base` again.
pub(super) async fn time_recovery(row: &mut Row, db: &mut Db, base: i64, fault: Instant) {
    row.recovery = soft(
        row,
        recovery(db, base, fault, Duration::from_secs(60)).await,
    );
}

/// Waits until all `n` demands are done, then for the producer's confirmed count.
pub(super) async fn drain_all(row: &mut Row, db: &mut Db, producer: &mut Proc, n: u64) {
    soft(
        row,
        db.wait_done("every demand done", |d| d >= n as i64, FINISH)
            .await,
    );
    row.confirmed = producer_confirmed(row, producer, n, PRODUCER_AFTER).await;
}

/// Like `drain_all` with `api` works created through the API as well; returns the
/// producer's confirmed count (the row's confirmed count includes the API works).
pub(super) async fn drain_with_api(
    row: &mut Row,
    db: &mut Db,
    producer: &mut Proc,
    n: u64,
    api: u64,
) -> u64 {
    let total = (n + api) as i64;
    soft(
        row,
        db.wait_done("every queue and API work done", |d| d >= total, FINISH)
            .await,
    );
    let queue_confirmed = producer_confirmed(row, producer, n, PRODUCER_AFTER).await;
    row.confirmed = queue_confirmed + api;
    queue_confirmed
}

/// Stops every process gracefully (SIGTERM, exit 0, bounded).
pub(super) async fn stop_all(row: &mut Row, procs: &mut [&mut Proc]) {
    for p in procs.iter_mut() {
        let name = p.name.clone();
        if let Err(e) = p.stop(STOP).await {
            row.problem(format!("stopping {name}: {e:#}"));
        }
    }
}

/// Notes how many redelivered or republished demands the consumers acknowledged
/// without a second work: evidence that the fault exercised the deduplication.
pub(super) fn note_dedup(row: &mut Row, consumers: &[&Proc]) {
    let counts: Vec<Option<u64>> = consumers.iter().map(|p| p.deduplicated()).collect();
    if counts.iter().all(Option::is_none) {
        // Every scenario's consumers store batches: no line at all means the evidence
        // is not being logged (a moved module left RUST_LOG's target behind once).
        row.problem("no consumer logged a per-batch BatchOutcome debug line: the deduplication evidence cannot be read (check RUST_LOG in procs.rs)");
        return;
    }
    let n: u64 = counts.into_iter().flatten().sum();
    row.notes.push(format!(
        "{n} redelivered demands recognised as already stored (acked, no second work)"
    ));
}

/// Fails the row for each process that crashed or exited with an error. A clean exit
/// is the producer done with its `--count` (the consumers exit only when signalled).
pub(super) fn ensure_running(row: &mut Row, procs: &mut [&mut Proc], when: &str) {
    for p in procs.iter_mut() {
        if p.failed() {
            row.problem(format!(
                "{} exited {when}; log tail:\n{}",
                p.name,
                p.tail(10)
            ));
        }
    }
}

/// Judges the end state: the database against the confirmed demands, then the broker.
pub(super) async fn finish(
    row: &mut Row,
    env: &Env,
    db: &mut Db,
    queue_confirmed: u64,
    queue_published: u64,
    api_expected: u64,
    dead: u64,
) {
    if let Some(s) = soft(row, stats(db).await) {
        judge(row, &s, queue_confirmed, queue_published, api_expected);
    }
    judge_broker(row, &env.amqp_url, &env.queue, dead).await;
}
