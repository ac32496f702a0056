//! Producer -> RabbitMQ -> consumer -> PostgreSQL, and the helpers the pipeline tests
//! share (the sweeper's are in `sweeps`, the operator's runs in `pipeline_ops`).

use super::helpers::*;
use super::totals::assert_consistent;
use ppctl::cli::{AmqpOpts, ProduceOpts, Retain, WorkerOpts};
use ppctl::shutdown::{self, Shutdown, Trigger};
use std::time::Duration;
use tokio::task::JoinHandle;

pub(super) const WAIT: Duration = Duration::from_secs(30);

pub(super) fn worker_opts(work_delay: Duration, sweep_every: Duration) -> WorkerOpts {
    WorkerOpts {
        prefetch: Some(200),
        work_delay,
        sweep_every,
        sweep_window: Duration::from_secs(6 * 3600),
        lease: Duration::from_secs(30),
        max_attempts: 3,
        retain: Retain::Forever,
        ack_after: ppctl::cli::AckAfter::Commit,
        require_message_id: false,
        webhook: Default::default(),
    }
}

pub(super) fn amqp_opts(queue: &TestQueue) -> AmqpOpts {
    AmqpOpts {
        amqp_url: AMQP_URL.into(),
        queue: queue.name().into(),
        queue_type: Some(queue.topology.queue_type),
    }
}

/// Starts a consumer in the background; returns how to stop it and its task.
pub(super) fn start_consumer(
    db: &TestDb,
    queue: &TestQueue,
    opts: WorkerOpts,
) -> (Trigger, JoinHandle<anyhow::Result<()>>) {
    start_consumer_with(db, amqp_opts(queue), opts)
}

/// Starts a consumer with these AMQP settings (another URL, another queue).
pub(super) fn start_consumer_with(
    db: &TestDb,
    amqp: AmqpOpts,
    opts: WorkerOpts,
) -> (Trigger, JoinHandle<anyhow::Result<()>>) {
    let (trigger, shutdown) = shutdown::channel();
    let pool = db.pool.clone();
    let task = tokio::spawn(async move {
        ppctl::commands::consume::run_with_pool(pool, &amqp, &opts, shutdown).await
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
        give_up_after: Duration::from_secs(60),
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
