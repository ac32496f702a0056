//! Works that run later, at the edges: a bad `run_at` or `delay` is a 422 over HTTP and
//! a dead letter with the reason from the queue; `ppctl work create --in | --at` makes
//! a scheduled work through the API and the database, and refuses (exit 2) past the
//! bound.

use super::helpers::*;
use super::pipeline::{amqp_opts, start_consumer, stop, worker_opts, WAIT};
use super::scheduled::{variables, SWEEP_EVERY};
use ppctl::amqp::Nodes;
use std::time::{Duration, SystemTime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_run_at_or_delay_is_a_422_or_a_dead_letter_with_the_reason() {
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
        assert_eq!(status, 422, "{body}: {error}");
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
