//! Safe mode, in `make test` (it was only in `make chaos`): a message whose message_id is
//! not UTF-8 kills lapin's connection every time it is delivered. The consumer must
//! learn that from the connection's events, take one delivery at a time until the
//! quorum queue's delivery limit dead-letters the culprit, and store every good demand
//! exactly once.

use super::dead::publish_with_pika;
use super::helpers::*;
use super::pipeline::{start_consumer, stop, wait_for_works, worker_opts, WAIT};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_lapin_cannot_read_is_dead_lettered_alone_and_the_rest_stored_once() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let (_conn, channel) = queue.channel().await;
    queue.counts(&channel).await; // declares the quorum queue and its dead letters
    let ids: Vec<Vec<u8>> = (0..40).map(|i| format!("good-{i}").into_bytes()).collect();
    let body = br#"{"add_up_to": 3}"#;
    let mut messages: Vec<(&[u8], &[u8])> =
        ids.iter().map(|id| (id.as_slice(), &body[..])).collect();
    messages.insert(20, (b"bad\xff\xfe", &body[..]));
    publish_with_pika(&queue.topology.queue, &messages).await;
    let (trigger, task) = start_consumer(&db, &queue, worker_opts(Duration::ZERO, WAIT));
    wait_for_works(&db, "SELECT count(*) FROM works", 40).await;
    eventually(
        "the unreadable one dead-lettered",
        Duration::from_secs(60),
        || async { (queue.counts(&channel).await == (0, 1)).then_some(()) },
    )
    .await;
    stop(trigger, task).await;
    let distinct = "SELECT count(DISTINCT message_id) FROM works WHERE message_id LIKE 'good-%'";
    assert_eq!(db.count(distinct).await, 40);
}
