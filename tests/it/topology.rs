//! A reconnecting consumer makes sure of the whole topology, not only the work queue:
//! an operator who deleted the dead-letter queue and exchange must not see dead letters
//! returned or dropped until every process restarts.

use super::helpers::*;
use super::pipeline::{start_consumer, stop, worker_opts, WAIT};
use std::time::Duration;

/// Closes every broker connection whose name mentions `queue` (the consumer's). The
/// plain listing: its pids are in the form `close_connection` takes.
async fn close_connections_of(queue: &str) -> usize {
    let rabbitmqctl = |args: Vec<String>| async move {
        let out = tokio::process::Command::new("rabbitmqctl")
            .arg("-q")
            .args(&args)
            .output()
            .await
            .expect("run rabbitmqctl");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listing = rabbitmqctl(vec![
        "list_connections".into(),
        "pid".into(),
        "client_properties".into(),
    ])
    .await;
    let pids: Vec<String> = listing
        .lines()
        .filter(|line| line.contains(queue))
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect();
    for pid in &pids {
        rabbitmqctl(vec![
            "close_connection".into(),
            pid.clone(),
            "test: forced reconnect".into(),
        ])
        .await;
    }
    pids.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_declares_a_deleted_dead_letter_queue_and_exchange_again() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let (_conn, channel) = queue.channel().await;
    let (trigger, task) = start_consumer(&db, &queue, worker_opts(Duration::ZERO, WAIT));
    let t = &queue.topology;
    // The consumer's first connection declared everything; then the operator deletes
    // the dead-letter queue and exchange.
    eventually("the topology declared", WAIT, || async {
        let (_, probe) = queue.channel().await;
        t.dead_count(&probe).await.ok()
    })
    .await;
    let (_, deleting) = queue.channel().await;
    let dead_queue = t.dead_queue.as_str().into();
    deleting
        .queue_delete(dead_queue, Default::default())
        .await
        .expect("delete");
    let exchange = t.dead_exchange.as_str().into();
    deleting
        .exchange_delete(exchange, Default::default())
        .await
        .expect("delete");
    eventually("a forced reconnect", WAIT, || async {
        (close_connections_of(&t.queue).await > 0).then_some(())
    })
    .await;
    // Once it consumes again, a poison demand must reach a dead-letter queue.
    tokio::time::sleep(Duration::from_secs(2)).await;
    queue
        .publish_raw(&channel, b"not json", Some("poison-after-reconnect"))
        .await;
    let dead = eventually("the dead letter stored", WAIT, || async {
        let (_, probe) = queue.channel().await;
        t.dead_count(&probe).await.ok().filter(|n| *n == 1)
    })
    .await;
    assert_eq!(dead, 1);
    stop(trigger, task).await;
}
