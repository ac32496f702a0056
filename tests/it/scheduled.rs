//! Works that run later: a demand's `delay` or `run_at`, over HTTP and AMQP, waits as
//! `scheduled`, runs when due (lateness measured), can be cancelled before, and a bad
//! value is a 400 or a dead letter with the reason.

use super::helpers::*;
use super::pipeline::{amqp_opts, start_consumer, stop, worker_opts, WAIT};
use ppctl::amqp::Nodes;
use ppctl::telemetry::TELEMETRY;
use std::time::{Duration, Instant, SystemTime};

/// The consumers' sweep interval in these tests: the bound on lateness.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

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

async fn variables(db: &TestDb, id: i64) -> Vec<String> {
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
    let took = done_after(&db, id, asked).await;
    assert!(
        took >= Duration::from_millis(1900),
        "ran early, after {took:?}"
    );
    assert!(
        took < Duration::from_secs(2) + SWEEP_EVERY + SLACK,
        "late: {took:?}"
    );
    assert_eq!(
        variables(&db, id).await,
        [
            "work/created",
            "work/scheduled",
            "compute/start",
            "compute/stop",
            "compute/result"
        ]
    );
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
    let took = done_after(&db, id, asked).await;
    assert!(
        took >= Duration::from_millis(1900),
        "ran early, after {took:?}"
    );
    assert!(
        took < Duration::from_secs(2) + SWEEP_EVERY + SLACK,
        "late: {took:?}"
    );
    assert_eq!(
        variables(&db, id).await,
        [
            "work/created",
            "work/scheduled",
            "compute/start",
            "compute/stop",
            "compute/result"
        ]
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_run_at_or_delay_is_a_400_or_a_dead_letter_with_the_reason() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let bad = [
        (
            r#"{"add_up_to": 1, "delay": "soon"}"#,
            "delay must be a duration",
        ),
        (r#"{"add_up_to": 1, "run_at": "tomorrow"}"#, "RFC 3339"),
        (
            r#"{"add_up_to": 1, "delay": "1s", "run_at": "2030-01-01T00:00:00Z"}"#,
            "not both",
        ),
        (
            r#"{"add_up_to": 1, "run_at": "2099-01-01T00:00:00Z"}"#,
            "at most",
        ),
    ];
    for (body, why) in bad {
        let (status, error) = app.call("POST", "/works", Some(body)).await;
        assert_eq!(status, 400, "{body}: {error}");
        let said = error["error"].as_str().unwrap_or_default();
        assert!(said.contains(why), "{body}: {said}");
    }
    let queue = TestQueue::new();
    let (_conn, channel) = queue.channel().await;
    for (i, (body, _)) in bad.iter().enumerate() {
        queue
            .publish_raw(&channel, body.as_bytes(), Some(&format!("bad-{i}")))
            .await;
    }
    let (trigger, task) = start_consumer(&db, &queue, worker_opts(Duration::ZERO, SWEEP_EVERY));
    eventually("the bad ones dead-lettered", WAIT, || async {
        (queue.counts(&channel).await == (0, 4)).then_some(())
    })
    .await;
    stop(trigger, task).await;
    let amqp = amqp_opts(&queue);
    let nodes = Nodes::parse(&amqp.amqp_url).expect("url");
    let listing = ppctl::amqp::dead::list(&nodes, &queue.topology, 10)
        .await
        .expect("list");
    for (i, (_, why)) in bad.iter().enumerate() {
        let id = format!("bad-{i}");
        let letter = listing
            .dead_letters
            .iter()
            .find(|d| d.message_id.as_deref() == Some(&id));
        let reason = letter.map(|d| d.reason.as_str()).unwrap_or_default();
        assert!(reason.contains(why), "{id}: {reason:?}");
    }
    assert_eq!(db.count("SELECT count(*) FROM works").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_create_in_and_at_make_scheduled_works_through_the_api_and_the_database() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let url = app.url();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let via_http = ppctl(&["work", "create", "--in", "1h", "--json", "--api-url", &url]).await;
    // Thirty days ahead, written with a +01:00 offset.
    let due = now + 30 * 86_400;
    let offset = chrono::FixedOffset::east_opt(3600).expect("offset");
    let at = chrono::DateTime::from_timestamp(due, 0)
        .expect("time")
        .with_timezone(&offset)
        .to_rfc3339();
    let via_db = ppctl(&[
        "work",
        "create",
        "--at",
        &at,
        "--json",
        "--via",
        "db",
        "--database-url",
        &db.url,
    ])
    .await;
    for (out, due) in [(&via_http, now + 3600), (&via_db, due)] {
        let (stdout, stderr) = outputs(out);
        assert!(out.status.success(), "{stderr}");
        let work: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
        assert_eq!(work["status"], "scheduled", "{work}");
        let run_at = work["run_at"].as_i64().expect("run_at");
        assert!((due - 2..=due + 2).contains(&run_at), "{run_at} for {due}");
        let id = work["id"].as_i64().expect("id");
        assert_eq!(variables(&db, id).await, ["work/created", "work/scheduled"]);
    }
    let far = ppctl(&["work", "create", "--in", "400d", "--api-url", &url]).await;
    let (_, stderr) = outputs(&far);
    assert_eq!(far.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("366 days"), "{stderr}");
}
