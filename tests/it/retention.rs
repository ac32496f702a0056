//! Retention: `db prune` and the consumer's pruner delete finished works past the
//! cut-off with their events, keep everything else, and keep the counts exact.

use super::helpers::*;
use super::totals::{counts, exact_counts};
use ppctl::storage::{prune, works};
use std::time::{Duration, SystemTime};

const THIRTY_DAYS: Duration = Duration::from_secs(30 * 86_400);

/// 10 done queue works, one pending and one failed API work; then the first five done,
/// the pending and the failed one are aged to 40 days.
pub(super) async fn history(db: &TestDb) {
    let client = db.client().await;
    let batch: Vec<works::Finished> = (0..10)
        .map(|i| works::Finished {
            message_id: format!("retention-{i}"),
            work_code: format!("consumer-retention{i:02}"),
            add_up_to: i,
            result: i * (i + 1) / 2,
            started: SystemTime::now(),
            stopped: SystemTime::now(),
            trace_parent: None,
            possible_repeat: false,
            run_at: None,
        })
        .collect();
    assert_eq!(
        works::insert_finished(&client, &batch)
            .await
            .expect("insert"),
        10
    );
    let pending = works::create_pending(&client, "api-retention-p", 1, None, None)
        .await
        .expect("work");
    let failed = works::create_pending(&client, "api-retention-f", 2, None, None)
        .await
        .expect("work");
    client
        .execute(
            "UPDATE works SET status = 'failed' WHERE id = $1",
            &[&failed.id],
        )
        .await
        .expect("fail it");
    // By hand, so counted by hand, as a sweeper's failure would be.
    client
        .batch_execute("UPDATE work_counts SET failed = failed + 1 WHERE shard = 0")
        .await
        .expect("count it");
    let old = "UPDATE works SET created_on = now() - interval '40 days', \
                                updated_on = now() - interval '40 days' \
               WHERE message_id IN ('retention-0','retention-1','retention-2','retention-3','retention-4') \
                  OR id = $1 OR id = $2";
    client
        .execute(old, &[&pending.id, &failed.id])
        .await
        .expect("age");
    // Created long ago, finished today (a retried work): a month away from pruning.
    let retried = "UPDATE works SET created_on = now() - interval '40 days' \
                   WHERE message_id = 'retention-5'";
    client.batch_execute(retried).await.expect("age");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_old_finished_works_and_their_events_only() {
    let db = TestDb::new().await;
    history(&db).await;
    let pruned = prune::prune(&db.pool, THIRTY_DAYS).await.expect("prune");
    assert_eq!((pruned.ran, pruned.works), (true, 6), "5 done + 1 failed");
    assert_eq!(
        db.count("SELECT count(*) FROM works").await,
        6,
        "5 done + pending"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM works WHERE status = 'pending'")
            .await,
        1,
        "pending works are never pruned, however old"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM works WHERE message_id = 'retention-5'")
            .await,
        1,
        "retention counts from when a work finished, not from when it was created"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM works w WHERE w.id = e.work_id)")
            .await,
        0
    );
    assert_eq!(db.count("SELECT count(*) FROM events").await, 5 * 4 + 1);
    assert_eq!(
        counts(&db).await,
        exact_counts(&db).await,
        "the done total follows"
    );
    // Nothing left to prune: a second run deletes nothing.
    let again = prune::prune(&db.pool, THIRTY_DAYS).await.expect("prune");
    assert_eq!(again.works, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pruner_at_a_time_and_the_cli_reports_what_it_did() {
    let db = TestDb::new().await;
    history(&db).await;
    let holder = db.client().await;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&prune::LOCK_KEY])
        .await
        .expect("take the pruning lock");
    let blocked = prune::prune(&db.pool, THIRTY_DAYS).await.expect("prune");
    assert!(!blocked.ran, "another process holds the lock: {blocked:?}");
    assert_eq!(db.count("SELECT count(*) FROM works").await, 12);
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&prune::LOCK_KEY])
        .await
        .expect("release");
    let output = ppctl(&[
        "db",
        "prune",
        "--older-than",
        "30d",
        "--database-url",
        &db.url,
    ])
    .await;
    let (stdout, stderr) = outputs(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("pruned 6 works finished over 30days ago"),
        "{stdout}"
    );
    assert_eq!(db.count("SELECT count(*) FROM works").await, 6);
}

/// The lock is held for the whole run, not batch by batch: no other pruner can start
/// between two batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pruning_lock_is_held_between_batches() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let total = prune::PRUNE_BATCH * 2 + 500;
    works::insert_finished(&client, &finished("lock", total))
        .await
        .expect("insert");
    client
        .batch_execute("UPDATE works SET updated_on = now() - interval '40 days'")
        .await
        .expect("age");
    let other = ppctl::storage::admin::connect(&db.url)
        .await
        .expect("connect");
    let pool = db.pool.clone();
    let run = tokio::spawn(async move { prune::prune(&pool, THIRTY_DAYS).await });
    // Mid-run (some works pruned, some left) the lock must be held. Two samples in a
    // row are needed to call it free: one can fall between the last commit and the
    // unlock.
    let sample = "SELECT (SELECT count(*) FROM works), EXISTS (SELECT 1 FROM pg_locks \
                  WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid())";
    let (mut free_in_a_row, mut gaps) = (0, 0);
    while !run.is_finished() {
        let row = other.query_one(sample, &[]).await.expect(sample);
        let (left, held): (i64, bool) = (row.get(0), row.get(1));
        let mid_run = left > 0 && left < total;
        free_in_a_row = if mid_run && !held {
            free_in_a_row + 1
        } else {
            0
        };
        gaps += i32::from(free_in_a_row == 2);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let pruned = run.await.expect("no panic").expect("prune");
    assert!(pruned.ran, "{pruned:?}");
    assert_eq!(gaps, 0, "the pruning lock was free between two batches");
    assert_eq!(db.count("SELECT count(*) FROM works").await, 0);
}

/// Finished works, `n` of them, under message ids `prefix-0…`.
fn finished(prefix: &str, n: i64) -> Vec<works::Finished> {
    (0..n)
        .map(|i| works::Finished {
            message_id: format!("{prefix}-{i}"),
            work_code: ppctl::model::new_work_code(ppctl::model::Origin::Consumer),
            add_up_to: 1,
            result: 1,
            started: SystemTime::now(),
            stopped: SystemTime::now(),
            trace_parent: None,
            possible_repeat: false,
            run_at: None,
        })
        .collect()
}

/// A round's cut-off is fixed when it starts: works that finish while it runs, however
/// many and however often, are the next round's. Recomputing `now()` per batch chases
/// them (with `--older-than 0` the round then ends only when the writers pause).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruning_round_leaves_works_that_finish_while_it_runs() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // Enough for a round of 20 batches, well over a second.
    let old = prune::PRUNE_BATCH * 20 + 500;
    works::insert_finished(&client, &finished("old", old))
        .await
        .expect("insert");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let pool = db.pool.clone();
    // 20 works every millisecond or so until told to stop (at most 30 s); the time
    // each batch finished at.
    let inserter = tokio::spawn(async move {
        let client = pool.get().await.expect("connection");
        let (started, mut batches) = (std::time::Instant::now(), Vec::new());
        while !*stopped.borrow() && started.elapsed() < Duration::from_secs(30) {
            let batch = finished(&format!("late-{}", batches.len()), 20);
            works::insert_finished(&client, &batch).await.expect("late");
            batches.push(batch[0].stopped);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        batches
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The round's cut-off is taken within a query of this; half a second is margin.
    let after = SystemTime::now() + Duration::from_millis(500);
    let round = prune::prune(&db.pool, Duration::ZERO);
    let pruned = tokio::time::timeout(Duration::from_secs(20), round).await;
    let _ = stop.send(true);
    let batches = inserter.await.expect("no panic");
    let pruned = pruned.expect("the round ends").expect("prune");
    assert!(pruned.works >= old as u64, "{pruned:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM works WHERE message_id LIKE 'old-%'")
            .await,
        0
    );
    let later = batches.iter().filter(|t| **t > after).count() as i64 * 20;
    let kept = "SELECT count(*) FROM works WHERE message_id LIKE 'late-%' AND updated_on > $1";
    let row = client.query_one(kept, &[&after]).await.expect(kept);
    assert_eq!(
        row.get::<_, i64>(0),
        later,
        "works finished after the round began were pruned"
    );
}
