//! Reconnects must not leak: a consumer whose channel fails N times keeps one broker
//! connection and no more batch stores than it has in flight. Run as a process, so its
//! `/metrics` counts only its own store tasks.

use super::helpers::*;
use super::pipeline::WAIT;
use ppctl::amqp::Topology;
use ppctl::cli::QueueType;
use std::process::Stdio;
use std::time::Duration;

const RECONNECTS: usize = 5;

/// How many broker connections carry `name` (the client-provided connection name).
async fn connections_named(name: &str) -> usize {
    let output = tokio::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "-q",
            "client_properties",
            "--formatter",
            "json",
        ])
        .output()
        .await
        .expect("run rabbitmqctl");
    assert!(
        output.status.success(),
        "rabbitmqctl list_connections failed"
    );
    String::from_utf8_lossy(&output.stdout)
        .matches(&format!("\"{name}\""))
        .count()
}

/// The queue's line in `rabbitmqctl list_queues`: name, type, ready, unacked, consumers.
async fn queue_row(queue: &str) -> Result<Vec<String>, String> {
    let out = tokio::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-q",
            "name",
            "type",
            "messages_ready",
            "messages_unacknowledged",
            "consumers",
        ])
        .output()
        .await
        .map_err(|e| format!("rabbitmqctl list_queues failed: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|fields| fields.first().is_some_and(|n| n == queue))
        .ok_or_else(|| format!("no queue {queue}"))
}

async fn store_tasks(metrics_addr: &str) -> Option<i64> {
    let request = ppctl::rawhttp::Request::new("GET", "/metrics").ok()?;
    let response = ppctl::rawhttp::send(metrics_addr, &request).await.ok()?;
    let body = String::from_utf8_lossy(&response.body).into_owned();
    body.lines()
        .find_map(|l| l.strip_prefix("ppctl_store_tasks "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_leak_neither_connections_nor_store_tasks() {
    let db = TestDb::new().await;
    // Classic: each round deletes the queue and the consumer redeclares it at once, and
    // RabbitMQ 3.10 races a quorum queue's deletion with a redeclaration of the same
    // name (its Ra cluster is named after the queue). A CI run once got a queue that
    // took publishes and never delivered them. Queue type has nothing to do with leaks.
    let mut queue = TestQueue::new();
    queue.topology = Topology::with_type(queue.name(), QueueType::Classic);
    let (_conn, channel) = queue.channel().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    // The consumer's log, for the failure message (a CI run once waited out a round).
    let log_path = std::env::temp_dir().join(format!("ppctl-leaks-{}.log", queue.name()));
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut consumer = tokio::process::Command::new(env!("CARGO_BIN_EXE_ppctl"))
        .args([
            "consume",
            "--queue",
            queue.name(),
            "--queue-type",
            "classic",
            "--metrics-addr",
            &metrics_addr,
        ])
        .env("DATABASE_URL", &db.url)
        .env("AMQP_URL", AMQP_URL)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("log file")))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("start ppctl consume");
    let name = format!("ppctl-consume {}", queue.name());
    eventually("the consumer connected", WAIT, || async {
        (connections_named(&name).await == 1).then_some(())
    })
    .await;
    let row = queue_row(queue.name()).await;
    assert_eq!(
        row.as_ref().ok().and_then(|f| f.get(1)).map(String::as_str),
        Some("classic"),
        "{row:?}"
    );
    // Every store now hangs on the lock, as it would on a stalled database.
    let mut locker = db.client().await;
    let lock = locker.transaction().await.expect("transaction");
    lock.batch_execute("LOCK TABLE works IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    for round in 0..RECONNECTS {
        let body = br#"{"add_up_to": 3}"#;
        queue
            .publish_raw(&channel, body, Some(&format!("leak-{round}")))
            .await;
        // This round's store is in flight once the consumer holds the delivery (the
        // broker's unacked count) and a store runs: the gauge alone could be satisfied
        // by an earlier round's leaked store.
        let in_flight = tokio::time::timeout(2 * WAIT, async {
            loop {
                let held = queue_row(queue.name())
                    .await
                    .is_ok_and(|f| f.get(3).is_some_and(|n| n == "1"));
                if held && store_tasks(&metrics_addr).await.is_some_and(|n| n >= 1) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        if in_flight.is_err() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let broker = queue_row(queue.name()).await;
            panic!(
                "round {round}: no batch store in flight after {:?}; the broker (name, type, ready, unacked, consumers): {broker:?}; consumer log:\n{log}",
                2 * WAIT
            );
        }
        // Deleting the queue cancels the consumer (a channel failure on a live
        // connection); it reconnects and declares the queue again.
        channel
            .queue_delete(queue.name().into(), Default::default())
            .await
            .expect("delete the queue");
        eventually("the consumer redeclared its queue", WAIT, || async {
            queue.topology.dead_count(&channel).await.ok()?;
            let passive = lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let (_c, probe) = require_rabbitmq().await;
            probe
                .queue_declare(queue.name().into(), passive, Default::default())
                .await
                .ok()
        })
        .await;
    }
    // Give a leaked connection or task every chance to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (connections, tasks) = (
        connections_named(&name).await,
        store_tasks(&metrics_addr).await,
    );
    lock.rollback().await.expect("unlock");
    let _ = std::fs::remove_file(&log_path);
    let _ = consumer.start_kill();
    assert_eq!(
        connections, 1,
        "broker connections after {RECONNECTS} reconnects"
    );
    let tasks = tasks.expect("metrics answered");
    assert!(
        tasks <= 2,
        "{tasks} store tasks after {RECONNECTS} reconnects"
    );
}
