//! The pipeline as an operator runs it: stopped mid-stream and restarted, a producer
//! that cannot deliver its count, a quorum queue, the metrics exporter.

use super::helpers::*;
use super::pipeline::*;
use super::totals::assert_consistent;
use ppctl::cli::{AmqpOpts, ProduceOpts, QueueType};
use ppctl::shutdown;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_mid_stream_loses_nothing_and_a_restart_finishes_the_rest() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    assert_eq!(produce(&queue, 200).await, 200);
    let slow = worker_opts(Duration::from_millis(20), Duration::from_secs(5));
    let (trigger, task) = start_consumer(&db, &queue, slow.clone());
    eventually("the first works", WAIT, || async {
        (db.count("SELECT count(*) FROM works").await > 0).then_some(())
    })
    .await;
    stop(trigger, task).await;
    let stored = db.count("SELECT count(*) FROM works").await;
    let (_conn, channel) = queue.channel().await;
    // The broker requeues a closed channel's unacked deliveries after its close-ok, not
    // before: read the counts until they are back, or WAIT passes and the check fails.
    let started = std::time::Instant::now();
    let (ready, dead) = loop {
        let counts = queue.counts(&channel).await;
        if stored + i64::from(counts.0) >= 200 || started.elapsed() > WAIT {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(dead, 0);
    assert_eq!(
        stored + i64::from(ready),
        200,
        "stored {stored} + queued {ready} must be every demand"
    );
    assert!(
        ready > 0,
        "the shutdown came after everything was done: the test proves nothing"
    );
    assert_consistent(&db).await;
    let (trigger, task) = start_consumer(
        &db,
        &queue,
        worker_opts(Duration::ZERO, Duration::from_secs(5)),
    );
    wait_for_works(&db, "SELECT count(*) FROM works WHERE status = 'done'", 200).await;
    stop(trigger, task).await;
    assert_eq!(
        db.count("SELECT count(DISTINCT message_id) FROM works")
            .await,
        200
    );
    assert_consistent(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_fails_loudly_when_it_cannot_deliver_the_count() {
    let (trigger, shutdown) = shutdown::channel();
    let amqp = AmqpOpts {
        amqp_url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        queue: "pp_unreachable".into(),
        queue_type: Some(QueueType::Classic),
    };
    let opts = ProduceOpts {
        every: Duration::ZERO,
        count: Some(10),
        burst: 1,
        report_every: Duration::from_secs(30),
        give_up_after: Duration::from_secs(60),
    };
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        trigger.fire();
    });
    let err = ppctl::commands::produce::produce(&amqp, &opts, &shutdown, false)
        .await
        .expect_err("must fail");
    assert!(err.to_string().contains("0 of 10"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_queue_carries_the_same_pipeline() {
    let db = TestDb::new().await;
    let mut queue = TestQueue::new();
    queue.topology = ppctl::amqp::Topology::with_type(queue.name(), QueueType::Quorum);
    assert_eq!(produce(&queue, 100).await, 100);
    let (_conn, channel) = queue.channel().await;
    queue
        .publish_raw(&channel, b"poison", Some("quorum-poison"))
        .await;
    let (trigger, task) = start_consumer(
        &db,
        &queue,
        worker_opts(Duration::ZERO, Duration::from_secs(5)),
    );
    wait_for_works(&db, "SELECT count(*) FROM works WHERE status = 'done'", 100).await;
    eventually("poison dead-lettered", WAIT, || async {
        (queue.counts(&channel).await == (0, 1)).then_some(())
    })
    .await;
    stop(trigger, task).await;
    assert_consistent(&db).await;
    // Redeclaring it explicitly as classic must fail: the type really is quorum.
    let (_c, other) = require_rabbitmq().await;
    let mut args = lapin::types::FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("classic".into()),
    );
    let options = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let redeclared = other
        .queue_declare(queue.name().into(), options, args)
        .await;
    assert!(redeclared.is_err(), "the queue is not a quorum queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_exporter_reports_the_consumers_work() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let (exporter_stop, exporter_shutdown) = shutdown::channel();
    ppctl::http::exporter::spawn(addr, Some(db.pool.clone()), exporter_shutdown).expect("exporter");
    assert_eq!(produce(&queue, 50).await, 50);
    let (_conn, channel) = queue.channel().await;
    queue
        .publish_raw(&channel, b"poison", Some("metrics-poison"))
        .await;
    let (trigger, task) = start_consumer(
        &db,
        &queue,
        worker_opts(Duration::ZERO, Duration::from_secs(5)),
    );
    wait_for_works(&db, "SELECT count(*) FROM works WHERE status = 'done'", 50).await;
    let request = ppctl::rawhttp::Request::new("GET", "/metrics").expect("request");
    let body = eventually("the depth monitor's first sample", WAIT, || async {
        let response = ppctl::rawhttp::send(&addr.to_string(), &request)
            .await
            .ok()?;
        let body = String::from_utf8_lossy(&response.body).into_owned();
        body.contains("ppctl_queue_depth").then_some(body)
    })
    .await;
    stop(trigger, task).await;
    exporter_stop.fire();
    // Other tests in this process add to the same counters: at least ours must be there.
    let value = |name: &str| -> u64 {
        let line = body
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{body}"));
        line.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("a number")
    };
    assert!(value("ppctl_works_stored_total") >= 50, "{body}");
    assert!(value("ppctl_dead_lettered_total") >= 1, "{body}");
    assert!(value("ppctl_confirmed_total") >= 50, "{body}");
    assert!(value("ppctl_batch_size_count") >= 1, "{body}");
    assert!(
        body.contains("ppctl_db_pool_connections{state=\"max\"} 8"),
        "{body}"
    );
}
