//! Producer -> RabbitMQ -> consumer -> PostgreSQL, and the sweeper for API works.

use super::helpers::*;
use ppctl::cli::{AmqpOpts, DbOpts, ProduceOpts, QueueType, Retain, WorkerOpts};
use ppctl::shutdown::{self, Shutdown, Trigger};
use ppctl::storage::{claims, works};
use ppctl::worker::sweep::{self, SweepOpts};
use std::time::Duration;
use tokio::task::JoinHandle;

pub(super) const WAIT: Duration = Duration::from_secs(30);

/// Works whose stored result is not n(n+1)/2 (computed in numeric: no overflow).
const WRONG_SUMS: &str = "SELECT count(*) FROM works WHERE status = 'done' \
    AND result::numeric <> add_up_to::numeric * (add_up_to + 1) / 2";
/// Done works whose events are not exactly the four steps in order.
const BAD_EVENTS: &str = "SELECT count(*) FROM works w WHERE status = 'done' AND \
    (SELECT string_agg(variable, ',' ORDER BY id) FROM events e WHERE e.work_id = w.id) \
    <> 'work/created,compute/start,compute/stop,compute/result'";
/// Result events whose value disagrees with the work's result.
const BAD_RESULT_EVENTS: &str = "SELECT count(*) FROM events e JOIN works w ON w.id = e.work_id \
    WHERE e.variable = 'compute/result' AND e.value <> w.result::text";

pub(super) fn worker_opts(work_delay: Duration, sweep_every: Duration) -> WorkerOpts {
    WorkerOpts {
        prefetch: 200,
        work_delay,
        sweep_every,
        sweep_window: Duration::from_secs(6 * 3600),
        lease: Duration::from_secs(30),
        max_attempts: 3,
        retain: Retain::Forever,
        ack_after: ppctl::cli::AckAfter::Commit,
    }
}

pub(super) fn amqp_opts(queue: &TestQueue) -> AmqpOpts {
    AmqpOpts {
        amqp_url: AMQP_URL.into(),
        queue: queue.name().into(),
        queue_type: queue.topology.queue_type,
    }
}

/// Starts a consumer in the background; returns how to stop it and its task.
pub(super) fn start_consumer(
    db: &TestDb,
    queue: &TestQueue,
    opts: WorkerOpts,
) -> (Trigger, JoinHandle<anyhow::Result<()>>) {
    let (trigger, shutdown) = shutdown::channel();
    let db_opts = DbOpts {
        database_url: db.url.clone(),
        db_pool_size: 4,
    };
    let (pool, amqp) = (db.pool.clone(), amqp_opts(queue));
    let task = tokio::spawn(async move {
        ppctl::commands::consume::run_with_pool(pool, &db_opts, &amqp, &opts, shutdown).await
    });
    (trigger, task)
}

pub(super) async fn stop(trigger: Trigger, task: JoinHandle<anyhow::Result<()>>) {
    trigger.fire();
    let result = tokio::time::timeout(WAIT, task)
        .await
        .expect("consumer stops in time")
        .expect("no panic");
    result.expect("consumer exits cleanly");
}

pub(super) async fn produce(queue: &TestQueue, count: u64) -> u64 {
    let opts = ProduceOpts {
        every: Duration::ZERO,
        count: Some(count),
        burst: 1,
        report_every: Duration::from_secs(30),
    };
    ppctl::commands::produce::produce(&amqp_opts(queue), &opts, &Shutdown::never(), false)
        .await
        .expect("produce")
}

pub(super) async fn wait_for_works(db: &TestDb, sql: &str, expected: i64) {
    eventually(&format!("{expected} rows from {sql}"), WAIT, || async {
        (db.count(sql).await == expected).then_some(())
    })
    .await;
}

/// Checks the invariants every finished pipeline run must satisfy.
pub(super) async fn assert_consistent(db: &TestDb) {
    assert_eq!(db.count(WRONG_SUMS).await, 0, "wrong sums");
    assert_eq!(
        db.count(BAD_EVENTS).await,
        0,
        "works with missing or extra events"
    );
    assert_eq!(
        db.count(BAD_RESULT_EVENTS).await,
        0,
        "result events disagree with results"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM works WHERE done <> (status = 'done')")
            .await,
        0
    );
    assert_eq!(
        counts(db).await,
        exact_counts(db).await,
        "the running done total"
    );
}

/// `count_by_status` without its zero rows.
pub(super) async fn counts(db: &TestDb) -> Vec<(String, i64)> {
    let counted = works::count_by_status(&db.client().await).await;
    let counted = counted.expect("counts");
    counted.into_iter().filter(|(_, n)| *n > 0).collect()
}

/// Counts by status the slow, obviously right way.
pub(super) async fn exact_counts(db: &TestDb) -> Vec<(String, i64)> {
    let sql = "SELECT status, count(*) FROM works GROUP BY status ORDER BY status";
    let rows = db.client().await.query(sql, &[]).await.expect(sql);
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_demands_become_done_works_with_four_events() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    assert_eq!(produce(&queue, 500).await, 500);
    let (trigger, task) = start_consumer(
        &db,
        &queue,
        worker_opts(Duration::ZERO, Duration::from_secs(5)),
    );
    wait_for_works(&db, "SELECT count(*) FROM works WHERE status = 'done'", 500).await;
    stop(trigger, task).await;
    assert_eq!(db.count("SELECT count(*) FROM works").await, 500);
    assert_eq!(
        db.count("SELECT count(*) FROM works WHERE work_code !~ '^consumer-[A-Za-z0-9]{10}$'")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM works WHERE message_id IS NULL")
            .await,
        0
    );
    assert_eq!(db.count("SELECT count(*) FROM events").await, 2000);
    assert_consistent(&db).await;
    let (_conn, channel) = queue.channel().await;
    assert_eq!(
        queue.counts(&channel).await,
        (0, 0),
        "everything acknowledged, nothing dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_values_and_duplicates_are_handled() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let (_conn, channel) = queue.channel().await;
    queue
        .publish_raw(&channel, br#"{"add_up_to": 0}"#, Some("edge-zero"))
        .await;
    queue
        .publish_raw(
            &channel,
            br#"{"add_up_to": 4294967295, "done": false}"#,
            Some("edge-max"),
        )
        .await;
    // The same message id again: a redelivery or a producer retry. One work only.
    queue
        .publish_raw(&channel, br#"{"add_up_to": 4294967295}"#, Some("edge-max"))
        .await;
    let (trigger, task) = start_consumer(
        &db,
        &queue,
        worker_opts(Duration::ZERO, Duration::from_secs(5)),
    );
    wait_for_works(&db, "SELECT count(*) FROM works WHERE status = 'done'", 2).await;
    eventually("queue drained", WAIT, || async {
        (queue.counts(&channel).await.0 == 0).then_some(())
    })
    .await;
    stop(trigger, task).await;
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT result FROM works WHERE message_id = 'edge-zero'",
            &[],
        )
        .await
        .expect("zero");
    assert_eq!(row.get::<_, i64>(0), 0);
    let rows = client
        .query(
            "SELECT result FROM works WHERE message_id = 'edge-max'",
            &[],
        )
        .await
        .expect("max");
    assert_eq!(rows.len(), 1, "a duplicate message id made a second work");
    assert_eq!(rows[0].get::<_, i64>(0), 9_223_372_034_707_292_160);
    assert_consistent(&db).await;
    assert_eq!(queue.counts(&channel).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_while_good_ones_flow() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let (_conn, channel) = queue.channel().await;
    let huge = format!(
        "{{\"add_up_to\": 1, \"pad\": \"{}\"}}",
        "x".repeat(1024 * 1024)
    );
    let poison: Vec<(Vec<u8>, Option<&str>)> = vec![
        (b"not json".to_vec(), Some("p1")),
        (br#"{"add_up_to": "12"}"#.to_vec(), Some("p2")),
        (br#"{"add_up_to": -3}"#.to_vec(), Some("p3")),
        (br#"{"add_up_to": 4294967296}"#.to_vec(), Some("p4")),
        (br#"{"add_up_to": 1.5}"#.to_vec(), Some("p5")),
        (br#"{"nothing": 1}"#.to_vec(), Some("p6")),
        (br#"{"add_up_to": 5}"#.to_vec(), None), // no idempotency key
        (
            huge.replace("\"add_up_to\": 1", "\"add_up_to\": -1")
                .into_bytes(),
            Some("p8"),
        ),
    ];
    for (i, (body, id)) in poison.iter().enumerate() {
        queue.publish_raw(&channel, body, *id).await;
        queue
            .publish_raw(
                &channel,
                format!("{{\"add_up_to\": {i}}}").as_bytes(),
                Some(&format!("good-{i}")),
            )
            .await;
    }
    let (trigger, task) = start_consumer(
        &db,
        &queue,
        worker_opts(Duration::ZERO, Duration::from_secs(5)),
    );
    wait_for_works(
        &db,
        "SELECT count(*) FROM works WHERE status = 'done'",
        poison.len() as i64,
    )
    .await;
    eventually("poison dead-lettered", WAIT, || async {
        (queue.counts(&channel).await == (0, poison.len() as u32)).then_some(())
    })
    .await;
    stop(trigger, task).await;
    assert_eq!(
        db.count("SELECT count(*) FROM works WHERE message_id LIKE 'good-%'")
            .await,
        poison.len() as i64
    );
    assert_eq!(
        db.count("SELECT count(*) FROM works").await,
        poison.len() as i64
    );
    assert_consistent(&db).await;
}

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
    let work = works::create_pending(&client, "api-leasetest01", 3, None)
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
    let work = works::create_pending(&client, "api-dyingwork01", 3, None)
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sweepers_never_do_a_work_twice() {
    let db = TestDb::new().await;
    {
        let client = db.client().await;
        for i in 0..400 {
            works::create_pending(&client, &format!("api-conc{i:06}"), i, None)
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
        queue_type: QueueType::Classic,
    };
    let opts = ProduceOpts {
        every: Duration::ZERO,
        count: Some(10),
        burst: 1,
        report_every: Duration::from_secs(30),
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
