//! One set of rules for a demand, over HTTP and AMQP (`ppctl::demand`), and a warning
//! when a redelivery reuses a stored message_id with another body.

use super::helpers::*;
use super::pipeline::{start_consumer, stop, wait_for_works, worker_opts, WAIT};
use ppctl::telemetry::TELEMETRY;
use std::time::Duration;

const DONE: &str = "SELECT count(*) FROM works WHERE status = 'done'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_and_the_api_take_and_refuse_the_same_demands() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let queue = TestQueue::new();
    let (_conn, channel) = queue.channel().await;
    let taken = [
        r#"{"add_up_to": 4.0}"#,
        r#"{"add_up_to": 5, "done": false}"#,
    ];
    let refused = [
        r#"{"add_up_to": 4, "priority": 1}"#,
        r#"{"add_up_to": 2.5}"#,
    ];
    for (i, body) in taken.iter().chain(&refused).enumerate() {
        queue
            .publish_raw(&channel, body.as_bytes(), Some(&format!("rules-{i}")))
            .await;
    }
    let (trigger, task) = start_consumer(&db, &queue, worker_opts(Duration::ZERO, WAIT));
    wait_for_works(&db, DONE, 2).await;
    eventually("the refused ones dead-lettered", WAIT, || async {
        (queue.counts(&channel).await == (0, 2)).then_some(())
    })
    .await;
    stop(trigger, task).await;
    let stored = "SELECT string_agg(message_id, ',' ORDER BY message_id) FROM works";
    let ids: String = db
        .client()
        .await
        .query_one(stored, &[])
        .await
        .expect(stored)
        .get(0);
    assert_eq!(ids, "rules-0,rules-1", "the taken ones are the works");
    for body in taken {
        let (status, work) = app.call("POST", "/works", Some(body)).await;
        assert_eq!(status, 201, "{body}: {work}");
    }
    for body in refused {
        let (status, error) = app.call("POST", "/works", Some(body)).await;
        assert_eq!(status, 400, "{body}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_with_another_body_is_counted_and_keeps_the_stored_work() {
    let db = TestDb::new().await;
    let queue = TestQueue::new();
    let (_conn, channel) = queue.channel().await;
    queue
        .publish_raw(&channel, br#"{"add_up_to": 5}"#, Some("reused-id"))
        .await;
    let (trigger, task) = start_consumer(&db, &queue, worker_opts(Duration::ZERO, WAIT));
    wait_for_works(&db, DONE, 1).await;
    let before = TELEMETRY.changed_redeliveries.get();
    queue
        .publish_raw(&channel, br#"{"add_up_to": 6}"#, Some("reused-id"))
        .await;
    eventually("the changed body noticed", WAIT, || async {
        (TELEMETRY.changed_redeliveries.get() > before).then_some(())
    })
    .await;
    stop(trigger, task).await;
    let kept = "SELECT count(*) FROM works WHERE message_id = 'reused-id' AND add_up_to = 5";
    assert_eq!(db.count(kept).await, 1);
    assert_eq!(db.count("SELECT count(*) FROM works").await, 1);
}
