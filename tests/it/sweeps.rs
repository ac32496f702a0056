//! The sweeper for works created through the API: woken by NOTIFY, leases that expire
//! and are claimed again, workers that keep dying, concurrent sweepers.

use super::helpers::*;
use super::pipeline::*;
use super::totals::{assert_consistent, count_of, counts, exact_counts};
use ppctl::storage::{claims, works};
use ppctl::worker::sweep::{self, SweepOpts};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_works_are_swept_on_notify() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    // Polling once an hour: only the NOTIFY can wake the sweeper within the wait below.
    let (trigger, task) = start_consumer(
        &db,
        &queue,
        worker_opts(Duration::ZERO, Duration::from_secs(3600)),
    );
    let app = TestApp::spawn(&db).await;
    // Let the sweeper's first poll pass, and its LISTEN start, before creating works.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, work) = app
        .call("POST", "/works", Some(r#"{"add_up_to": 10}"#))
        .await;
    assert_eq!(status, 201);
    let id = work["id"].as_i64().expect("id");
    let done = eventually(
        "the API work to be done",
        Duration::from_secs(10),
        || async {
            let (_, work) = app.call("GET", &format!("/works/{id}"), None).await;
            (work["status"] == "done").then_some(work)
        },
    )
    .await;
    assert_eq!(done["result"], 55);
    assert_eq!(done["done"], true);
    let (_, events) = app.call("GET", &format!("/works/{id}/events"), None).await;
    let names: Vec<&str> = events
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["variable"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "work/created",
            "compute/start",
            "compute/stop",
            "compute/result"
        ]
    );
    assert_eq!(events[3]["value"], "55");
    stop(trigger, task).await;
    assert_consistent(&db).await;
}

pub(super) fn sweep_opts(worker: &str, lease: Duration, max_attempts: i32) -> SweepOpts {
    SweepOpts {
        worker: worker.into(),
        work_delay: Duration::ZERO,
        lease,
        window: Duration::from_secs(3600),
        max_attempts,
        batch: 100,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_claimed_again_and_the_old_worker_cannot_complete() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let work = works::create_pending(&client, "api-leasetest01", 3, None, None)
        .await
        .expect("create");
    // Worker A claims with a lease that is already over, then "dies".
    let a = claims::claim(&client, "A", 10, Duration::ZERO, Duration::from_secs(60), 3)
        .await
        .expect("claim");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].attempts, 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let outcome = sweep::sweep_once(&db.pool, &sweep_opts("B", Duration::from_secs(30), 3))
        .await
        .expect("sweep");
    assert_eq!(
        (outcome.claimed, outcome.completed, outcome.failed),
        (1, 1, 0)
    );
    // A wakes up and tries to finish: the work is B's now.
    assert_eq!(
        claims::complete(&client, "A", &[(work.id, 6)])
            .await
            .expect("complete"),
        0
    );
    let done = works::get(&client, work.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((done.status.as_str(), done.result), ("done", Some(6)));
    let results = db
        .count("SELECT count(*) FROM events WHERE variable = 'compute/result'")
        .await;
    assert_eq!(results, 1, "the work was completed twice");
    assert_eq!(
        db.count("SELECT count(*) FROM events WHERE variable = 'compute/start'")
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_whose_workers_keep_dying_fails_after_max_attempts() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let work = works::create_pending(&client, "api-dyingwork01", 3, None, None)
        .await
        .expect("create");
    for attempt in 1..=2 {
        let claimed = claims::claim(
            &client,
            "dies",
            10,
            Duration::ZERO,
            Duration::from_secs(60),
            2,
        )
        .await
        .expect("claim");
        assert_eq!(claimed.len(), 1, "attempt {attempt}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outcome = sweep::sweep_once(&db.pool, &sweep_opts("C", Duration::from_secs(30), 2))
        .await
        .expect("sweep");
    assert_eq!((outcome.claimed, outcome.failed), (0, 1));
    let failed = works::get(&client, work.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (failed.status.as_str(), failed.result, failed.done),
        ("failed", None, false)
    );
    let reason: String = client
        .query_one(
            "SELECT value FROM events WHERE work_id = $1 AND variable = 'compute/failed'",
            &[&work.id],
        )
        .await
        .expect("failed event")
        .get(0);
    assert!(reason.contains("2 attempts"), "{reason}");
    // fail_exhausted keeps the failed total in the statement that fails the work.
    let totals = counts(&db).await;
    assert_eq!(count_of(&totals, "failed"), 1, "{totals:?}");
    assert_eq!(totals, exact_counts(&db).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sweepers_never_do_a_work_twice() {
    let db = TestDb::new().await;
    {
        let client = db.client().await;
        for i in 0..400 {
            works::create_pending(&client, &format!("api-conc{i:06}"), i, None, None)
                .await
                .expect("create");
        }
    }
    let sweepers = (0..4).map(|w| {
        let (pool, opts) = (
            db.pool.clone(),
            sweep_opts(&format!("w{w}"), Duration::from_secs(30), 3),
        );
        let opts = SweepOpts { batch: 25, ..opts };
        tokio::spawn(async move {
            let mut done = 0;
            loop {
                let outcome = sweep::sweep_once(&pool, &opts).await.expect("sweep");
                done += outcome.completed;
                if outcome.claimed == 0 {
                    return done;
                }
            }
        })
    });
    let mut total = 0;
    for s in sweepers.collect::<Vec<_>>() {
        total += s.await.expect("sweeper");
    }
    assert_eq!(total, 400);
    assert_eq!(
        db.count("SELECT count(*) FROM works WHERE status = 'done'")
            .await,
        400
    );
    assert_eq!(
        db.count("SELECT count(*) FROM events WHERE variable = 'compute/start'")
            .await,
        400
    );
    assert_consistent(&db).await;
}
