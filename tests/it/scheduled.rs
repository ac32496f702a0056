//! Works that run later: a demand's `delay` or `run_at`, over HTTP and AMQP, waits as
//! `scheduled`, runs when due (lateness measured; the sweeper wakes for it), and can be
//! cancelled before. Bad values and the CLI: `scheduled_edges`.

use super::helpers::*;
use super::pipeline::{start_consumer, stop, worker_opts, WAIT};
use ppctl::telemetry::TELEMETRY;
use std::time::{Duration, Instant, SystemTime};

/// The consumers' sweep interval in these tests: the bound on lateness.
pub(super) const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// What a loaded machine may add to a claim's time (the suite runs tests side by side).
const SLACK: Duration = Duration::from_millis(1500);

async fn status_of(db: &TestDb, id: i64) -> String {
    let sql = "SELECT status FROM works WHERE id = $1";
    db.client()
        .await
        .query_one(sql, &[&id])
        .await
        .expect(sql)
        .get(0)
}

pub(super) async fn variables(db: &TestDb, id: i64) -> Vec<String> {
    let sql = "SELECT variable FROM events WHERE work_id = $1 ORDER BY id";
    let rows = db.client().await.query(sql, &[&id]).await.expect(sql);
    rows.iter().map(|r| r.get(0)).collect()
}

/// Works claimed late so far, as /metrics says (this process's; tests share it).
fn lateness_count() -> f64 {
    series(&TELEMETRY.render(), "ppctl_schedule_lateness_seconds_count").unwrap_or(0.0)
}

/// Waits for work `id` to be done; how long that took from `since`.
async fn done_after(db: &TestDb, id: i64, since: Instant) -> Duration {
    eventually("the scheduled work done", WAIT, || async {
        (status_of(db, id).await == "done").then(|| since.elapsed())
    })
    .await
}

/// A work due 2 s after `asked` ran then, within a sweep, with a scheduled work's events.
async fn ran_when_due(db: &TestDb, id: i64, asked: Instant) {
    let took = done_after(db, id, asked).await;
    assert!(
        took >= Duration::from_millis(1900),
        "ran early, after {took:?}"
    );
    assert!(
        took < Duration::from_secs(2) + SWEEP_EVERY + SLACK,
        "late: {took:?}"
    );
    assert_eq!(
        variables(db, id).await,
        [
            "work/created",
            "work/scheduled",
            "compute/start",
            "compute/stop",
            "compute/result"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_work_with_a_delay_waits_scheduled_then_runs_when_due() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let queue = TestQueue::new();
    let (_conn, _channel) = queue.channel().await;
    let (trigger, task) = start_consumer(&db, &queue, worker_opts(Duration::ZERO, SWEEP_EVERY));
    let observed = lateness_count();
    let asked = Instant::now();
    let (status, work) = app
        .call("POST", "/works", Some(r#"{"add_up_to": 4, "delay": "2s"}"#))
        .await;
    assert_eq!(status, 201, "{work}");
    assert_eq!(work["status"], "scheduled", "{work}");
    let id = work["id"].as_i64().expect("id");
    let run_at = work["run_at"].as_i64().expect("run_at in the Work JSON");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now + 1..=now + 3).contains(&run_at),
        "run_at {run_at}, now {now}"
    );
    tokio::time::sleep(Duration::from_secs(1).saturating_sub(asked.elapsed())).await;
    assert_eq!(
        status_of(&db, id).await,
        "scheduled",
        "not run before it is due"
    );
    ran_when_due(&db, id, asked).await;
    let (_, work) = app.call("GET", &format!("/works/{id}"), None).await;
    assert_eq!(work["result"], 10);
    assert!(lateness_count() > observed, "lateness observed");
    let sum = series(&TELEMETRY.render(), "ppctl_schedule_lateness_seconds_sum").unwrap_or(-1.0);
    assert!(sum >= 0.0, "lateness sum {sum}");
    stop(trigger, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_demand_with_run_at_is_stored_scheduled_and_runs_when_due() {
    let db = TestDb::new().await;
    let queue = TestQueue::new();
    let (_conn, channel) = queue.channel().await;
    let (trigger, task) = start_consumer(&db, &queue, worker_opts(Duration::ZERO, SWEEP_EVERY));
    let due = SystemTime::now() + Duration::from_secs(2);
    let body = format!(
        r#"{{"add_up_to": 5, "run_at": "{}"}}"#,
        humantime::format_rfc3339_millis(due)
    );
    let asked = Instant::now();
    queue
        .publish_raw(&channel, body.as_bytes(), Some("later-1"))
        .await;
    let id: i64 = eventually("the demand stored", WAIT, || async {
        let sql = "SELECT id FROM works WHERE message_id = 'later-1'";
        let row = db.client().await.query_opt(sql, &[]).await.expect(sql);
        row.map(|r| r.get(0))
    })
    .await;
    assert_eq!(queue.counts(&channel).await, (0, 0), "acked once stored");
    if asked.elapsed() < Duration::from_millis(1500) {
        assert_eq!(status_of(&db, id).await, "scheduled");
    }
    ran_when_due(&db, id, asked).await;
    let result: i64 = db
        .count(&format!("SELECT result FROM works WHERE id = {id}"))
        .await;
    assert_eq!(result, 15);
    // A past run_at runs at once, as today.
    let past = r#"{"add_up_to": 3, "run_at": "2001-01-01T00:00:00Z"}"#;
    queue
        .publish_raw(&channel, past.as_bytes(), Some("past-1"))
        .await;
    eventually(
        "the past one done at once",
        Duration::from_secs(5),
        || async {
            let n = db
                .count("SELECT count(*) FROM works WHERE message_id = 'past-1' AND status = 'done'")
                .await;
            (n == 1).then_some(())
        },
    )
    .await;
    stop(trigger, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_wakes_at_the_next_run_at_not_a_sweep_interval_later() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let queue = TestQueue::new();
    let (_conn, _channel) = queue.channel().await;
    let every = Duration::from_secs(8);
    let (trigger, task) = start_consumer(&db, &queue, worker_opts(Duration::ZERO, every));
    // Let its first sweep pass: the create's NOTIFY then wakes it once, 1 s early.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    let (_, work) = app
        .call("POST", "/works", Some(r#"{"add_up_to": 4, "delay": "1s"}"#))
        .await;
    let id = work["id"].as_i64().expect("id");
    let took = done_after(&db, id, asked).await;
    assert!(
        took < Duration::from_secs(1) + SLACK,
        "woke late: {took:?} (sweep interval {every:?})"
    );
    stop(trigger, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_work_cancelled_before_it_is_due_never_runs() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let queue = TestQueue::new();
    let (_conn, _channel) = queue.channel().await;
    let (trigger, task) = start_consumer(&db, &queue, worker_opts(Duration::ZERO, SWEEP_EVERY));
    let (_, work) = app
        .call("POST", "/works", Some(r#"{"add_up_to": 4, "delay": "1s"}"#))
        .await;
    let id = work["id"].as_i64().expect("id");
    let (status, cancelled) = app.call("POST", &format!("/works/{id}/cancel"), None).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    tokio::time::sleep(Duration::from_secs(1) + 3 * SWEEP_EVERY).await;
    assert_eq!(status_of(&db, id).await, "cancelled", "stays cancelled");
    let vars = variables(&db, id).await;
    assert_eq!(vars, ["work/created", "work/scheduled", "work/cancelled"]);
    stop(trigger, task).await;
}
