//! Periodic schedules: exactly one work per slot with three consumers, through kills
//! and restarts; slots missed while no consumer ran are not backfilled past the grace;
//! bad schedules refused by the API (JSON 4xx) and the CLI (one line, exit 2).

use super::helpers::*;
use super::pipeline::{start_consumer, stop, worker_opts};
use deadpool_postgres::GenericClient;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// Works per slot of schedule `name` (Unix seconds), from the works' `schedule/slot`
/// events: what the works table really holds.
async fn works_per_slot(db: &impl GenericClient, name: &str) -> BTreeMap<i64, i64> {
    let sql =
        "SELECT floor(extract(epoch FROM split_part(e.value, ' ', 2)::timestamptz))::bigint, \
               count(*) FROM events e JOIN works w ON w.id = e.work_id \
               WHERE e.variable = 'schedule/slot' AND split_part(e.value, ' ', 1) = $1 \
                 AND w.work_code LIKE 'cron-' || $1 || '-%' GROUP BY 1 ORDER BY 1";
    let rows = db.query(sql, &[&name]).await.expect(sql);
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_make_exactly_one_work_per_slot_through_kills_and_restarts() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let queue = TestQueue::new();
    let (_conn, _channel) = queue.channel().await;
    let body = r#"{"name": "tick", "every": "1s", "add_up_to": 3}"#;
    let (status, added) = app.call("POST", "/schedules", Some(body)).await;
    assert_eq!(status, 201, "{added}");
    let start = unix_now();
    let opts = || worker_opts(Duration::ZERO, SWEEP_EVERY);
    let mut consumers: Vec<_> = (0..3)
        .map(|_| start_consumer(&db, &queue, opts()))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // One killed (its task dropped mid-step: the transaction rolls back), one stopped.
    let (killed_trigger, killed) = consumers.remove(0);
    killed.abort();
    let (trigger, task) = consumers.remove(0);
    stop(trigger, task).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    consumers.push(start_consumer(&db, &queue, opts()));
    consumers.push(start_consumer(&db, &queue, opts()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (trigger, task) in consumers {
        stop(trigger, task).await;
    }
    // Aborting a consumer's task ends only that task: its spawned ticker may still run.
    killed_trigger.fire();
    let end = unix_now();
    // One snapshot for both counts, so a slot made meanwhile is in both or in neither.
    let client = db.client().await;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .expect("begin");
    let slots = works_per_slot(&client, "tick").await;
    let repeated: Vec<_> = slots.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        repeated.is_empty(),
        "slots with more than one work: {repeated:?}"
    );
    let seconds: Vec<i64> = slots.keys().copied().collect();
    let gaps: Vec<_> = seconds.windows(2).filter(|w| w[1] - w[0] != 1).collect();
    assert!(
        gaps.is_empty(),
        "gaps between slots: {gaps:?} in {seconds:?}"
    );
    let (first, last) = (seconds[0], seconds[seconds.len() - 1]);
    assert!(
        first <= start + 2 && last >= end - 2,
        "{first}..{last} for {start}..{end}"
    );
    let runs: i64 = client
        .query_one(
            "SELECT count(DISTINCT slot) FROM schedule_runs WHERE name = 'tick'",
            &[],
        )
        .await
        .expect("runs")
        .get(0);
    client.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(runs as usize, slots.len(), "one slot record per work");
    let done = "SELECT count(*) FROM works WHERE work_code LIKE 'cron-tick-%' AND status = 'done'";
    assert!(
        db.count(done).await >= slots.len() as i64 - 2,
        "the sweepers ran them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_missed_while_no_consumer_ran_are_not_backfilled_past_the_grace() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let queue = TestQueue::new();
    let (_conn, _channel) = queue.channel().await;
    let body = r#"{"name": "hourly-catchup", "every": "1s", "add_up_to": 1}"#;
    assert_eq!(app.call("POST", "/schedules", Some(body)).await.0, 201);
    // As if the schedule was made an hour ago and every consumer has been down since.
    let backdate = "UPDATE schedules SET created_on = now() - interval '1 hour'";
    db.client()
        .await
        .execute(backdate, &[])
        .await
        .expect(backdate);
    let start = unix_now();
    let (trigger, task) = start_consumer(&db, &queue, worker_opts(Duration::ZERO, SWEEP_EVERY));
    eventually(
        "the first step's works",
        Duration::from_secs(10),
        || async {
            let n = works_per_slot(&db.client().await, "hourly-catchup")
                .await
                .len();
            (n > 0).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop(trigger, task).await;
    let slots = works_per_slot(&db.client().await, "hourly-catchup").await;
    let grace = ppctl::schedule::GRACE.as_secs() as i64;
    let oldest = *slots.keys().next().expect("a slot");
    assert!(
        oldest >= start - grace - 1,
        "backfilled past the grace: {oldest} < {start} - {grace}"
    );
    assert!(
        oldest <= start - grace + 3,
        "the grace's slots were kept: oldest {oldest}, start {start}"
    );
    assert!(slots.values().all(|n| *n == 1), "{slots:?}");
    assert!(
        slots.len() < 3600 / 10,
        "an hour was not replayed: {}",
        slots.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schedules_are_refused_by_the_api_and_the_cli() {
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(db.pool.clone(), Some("s3cret".into())).await;
    let (status, _) = app
        .call(
            "POST",
            "/schedules",
            Some(r#"{"name": "x", "every": "1h", "add_up_to": 1}"#),
        )
        .await;
    assert_eq!(status, 401, "the token is required");
    let app = TestApp::spawn(&db).await;
    for (body, status_wanted, why) in [
        (
            r#"{"name": "x", "cron": "61 * * * *", "add_up_to": 1}"#,
            422,
            "cron",
        ),
        (
            r#"{"name": "x", "cron": "every hour", "add_up_to": 1}"#,
            422,
            "cron",
        ),
        (
            r#"{"name": "X Y", "every": "1h", "add_up_to": 1}"#,
            400,
            "schedule name",
        ),
        (
            r#"{"name": "x", "every": "1h", "cron": "0 * * * *", "add_up_to": 1}"#,
            422,
            "one of them",
        ),
        (
            r#"{"name": "x", "every": "500ms", "add_up_to": 1}"#,
            422,
            "at least 1s",
        ),
        (
            r#"{"name": "x", "every": "1h", "add_up_to": 4294967296}"#,
            400,
            "4294967295",
        ),
        (
            r#"{"name": "x", "every": "1h", "add_up_to": 1, "when": 1}"#,
            400,
            "unknown field",
        ),
    ] {
        let (status, error) = app.call("POST", "/schedules", Some(body)).await;
        assert_eq!(status, status_wanted, "{body}: {error}");
        let said = error["error"].as_str().unwrap_or_default();
        assert!(said.contains(why), "{body}: {said}");
    }
    let ok = r#"{"name": "top-of-hour", "cron": "0 * * * *", "add_up_to": 2}"#;
    assert_eq!(app.call("POST", "/schedules", Some(ok)).await.0, 201);
    assert_eq!(app.call("POST", "/schedules", Some(ok)).await.0, 409);
    let (_, list) = app.call("GET", "/schedules", None).await;
    assert_eq!(list[0]["name"], "top-of-hour", "{list}");
    assert_eq!(
        list[0]["next_slot"].as_i64().unwrap_or(1) % 3600,
        0,
        "on the hour, UTC"
    );
    let (status, error) = app.call("DELETE", "/schedules/nope", None).await;
    assert_eq!(status, 404, "{error}");
    let url = db.url.as_str();
    let bad = ppctl(&[
        "schedule",
        "add",
        "x",
        "--cron",
        "61 * * * *",
        "--add-up-to",
        "1",
        "--database-url",
        url,
    ])
    .await;
    let (_, stderr) = outputs(&bad);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.trim().lines().count() <= 3, "short: {stderr}");
    assert!(stderr.contains("cron"), "{stderr}");
    let added = ppctl(&[
        "schedule",
        "add",
        "nightly",
        "--every",
        "1d",
        "--add-up-to",
        "5",
        "--database-url",
        url,
    ])
    .await;
    assert!(added.status.success(), "{:?}", outputs(&added));
    let listed = ppctl(&["schedule", "list", "--json", "--database-url", url]).await;
    let (stdout, _) = outputs(&listed);
    let names: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&stdout)
        .expect("JSON list")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, ["nightly", "top-of-hour"]);
    let removed = ppctl(&["schedule", "remove", "nightly", "--database-url", url]).await;
    assert!(removed.status.success(), "{:?}", outputs(&removed));
    let again = ppctl(&["schedule", "remove", "nightly", "--database-url", url]).await;
    assert_eq!(again.status.code(), Some(3), "{:?}", outputs(&again));
    let (status, removed) = app.call("DELETE", "/schedules/top-of-hour", None).await;
    assert_eq!(
        (status, &removed["name"]),
        (200, &"top-of-hour".into()),
        "{removed}"
    );
    assert_eq!(
        app.call("GET", "/schedules", None).await.1,
        serde_json::json!([])
    );
}
