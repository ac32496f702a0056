//! What must never stop the pipeline: deliveries the database refuses, a queue of the
//! other type, an unroutable publish, stale API works, and reconnects that leak. Each
//! test checks what the broker or the database really holds.

use super::helpers::*;
use super::pipeline::{start_consumer, stop, wait_for_works, worker_opts, WAIT};
use super::sweeps::sweep_opts;
use super::totals::{assert_consistent, counts, exact_counts};
use ppctl::amqp::publish::{Outgoing, Publisher};
use ppctl::amqp::{Nodes, Topology};
use ppctl::cli::QueueType;
use ppctl::storage::works;
use ppctl::worker::sweep;
use serde_json::Value;
use std::collections::VecDeque;
use std::time::Duration;

const DONE: &str = "SELECT count(*) FROM works WHERE status = 'done'";

/// rabbitmqctl's answer, as JSON (the broker's own view, not what the code meant).
pub(super) async fn rabbitmqctl(args: &[&str]) -> Value {
    let output = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .args(["-q", "--formatter", "json"])
        .output()
        .await
        .expect("run rabbitmqctl (installed with rabbitmq-server by scripts/services.sh)");
    assert!(output.status.success(), "rabbitmqctl {args:?} failed");
    serde_json::from_slice(&output.stdout).expect("rabbitmqctl JSON")
}

/// The queue's type and its arguments as name -> value, from the broker.
pub(super) async fn broker_queue(name: &str) -> (String, serde_json::Map<String, Value>) {
    let queues = rabbitmqctl(&["list_queues", "name", "type", "arguments"]).await;
    let queue = queues
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["name"] == name))
        .unwrap_or_else(|| panic!("the broker has no queue {name}"))
        .clone();
    // Arguments come as [name, type, value] triples.
    let args = queue["arguments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| Some((a[0].as_str()?.to_string(), a[2].clone())))
        .collect();
    (queue["type"].as_str().unwrap_or_default().to_string(), args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_holds_a_quorum_queue_with_a_delivery_limit_by_default() {
    let queue = TestQueue::new();
    let _channel = queue.channel().await;
    let (kind, args) = broker_queue(queue.name()).await;
    assert_eq!(kind, "quorum", "{args:?}");
    assert_eq!(args.get("x-delivery-limit"), Some(&Value::from(20)));
    assert_eq!(
        args.get("x-dead-letter-strategy"),
        Some(&Value::from("at-least-once"))
    );
    assert_eq!(args.get("x-overflow"), Some(&Value::from("reject-publish")));
    let dlx = format!("{}.dlx", queue.name());
    assert_eq!(args.get("x-dead-letter-exchange"), Some(&Value::from(dlx)));

    let mut classic = TestQueue::new();
    classic.topology = Topology::with_type(classic.name(), QueueType::Classic);
    let _channel = classic.channel().await;
    let (kind, args) = broker_queue(classic.name()).await;
    assert_eq!(kind, "classic", "{args:?}");
    assert!(!args.contains_key("x-delivery-limit"), "{args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_of_the_other_type_stops_a_consumer_that_asked_for_its_type_in_one_line() {
    let db = TestDb::new().await;
    let mut classic = TestQueue::new();
    classic.topology = Topology::with_type(classic.name(), QueueType::Classic);
    let _channel = classic.channel().await;
    let mut quorum = TestQueue::new();
    quorum.topology = Topology::with_type(classic.name(), QueueType::Quorum);
    let (_trigger, task) = start_consumer(&db, &quorum, worker_opts(Duration::ZERO, WAIT));
    let result = tokio::time::timeout(WAIT, task)
        .await
        .expect("the consumer gives up instead of reconnecting forever")
        .expect("no panic");
    let message = format!("{:#}", result.expect_err("a type mismatch is an error"));
    // The way out is never the other --queue-type (whose declaration the queue would
    // refuse too): it is to use the queue as it is, or to migrate.
    assert!(
        message.contains("leave --queue-type unset") && message.contains("delete_queue"),
        "{message}"
    );
    assert!(!message.contains("--queue-type classic"), "{message}");
    // The producer CLI says the same in one line and exits non-zero.
    let output = ppctl(&[
        "produce",
        "--count",
        "1",
        "--queue",
        classic.name(),
        "--queue-type",
        "quorum",
        "--amqp-url",
        AMQP_URL,
    ])
    .await;
    let (_, stderr) = outputs(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("leave --queue-type unset"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    // The queue the user has is left as it was.
    assert_eq!(broker_queue(classic.name()).await.0, "classic");
    std::mem::forget(quorum); // same queue name as `classic`, which cleans it up
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_publish_is_not_counted_as_confirmed() {
    let queue = TestQueue::new();
    let nodes = Nodes::parse(AMQP_URL).expect("nodes");
    let publisher = Publisher::connect(&nodes, &queue.topology, false)
        .await
        .expect("publisher");
    let (_conn, channel) = require_rabbitmq().await;
    channel
        .queue_delete(queue.name().into(), Default::default())
        .await
        .expect("delete the queue under the publisher");
    let mut outbox = VecDeque::from([Outgoing::demand(3)]);
    let mut confirmed = 0;
    let error = publisher
        .publish_confirmed(&mut outbox, &mut confirmed)
        .await
        .expect_err("an unroutable message is an error");
    assert!(format!("{error:#}").contains("unroutable"), "{error:#}");
    assert_eq!((confirmed, outbox.len()), (0, 1), "kept for the next try");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_a_message_id_is_dead_lettered_alone() {
    let db = TestDb::new().await;
    let queue = TestQueue::new();
    let (_conn, channel) = queue.channel().await;
    for i in 0..41 {
        let id = if i == 20 {
            "bad\0nul".to_string()
        } else {
            format!("nul-test-{i}")
        };
        queue
            .publish_raw(
                &channel,
                format!(r#"{{"add_up_to": {i}}}"#).as_bytes(),
                Some(&id),
            )
            .await;
    }
    let (trigger, task) = start_consumer(&db, &queue, worker_opts(Duration::ZERO, WAIT));
    wait_for_works(&db, DONE, 40).await;
    eventually("the NUL id dead-lettered", WAIT, || async {
        (queue.counts(&channel).await == (0, 1)).then_some(())
    })
    .await;
    stop(trigger, task).await;
    assert_consistent(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demand_the_database_refuses_is_dead_lettered_and_the_rest_stored() {
    let db = TestDb::new().await;
    // A rule the consumer does not know about: only the database refuses 13.
    db.client()
        .await
        .batch_execute("ALTER TABLE works ADD CONSTRAINT no_13 CHECK (add_up_to <> 13)")
        .await
        .expect("add the constraint");
    let queue = TestQueue::new();
    let (_conn, channel) = queue.channel().await;
    for i in 0..30 {
        let body = format!(r#"{{"add_up_to": {i}}}"#);
        queue
            .publish_raw(&channel, body.as_bytes(), Some(&format!("refused-{i}")))
            .await;
    }
    let (trigger, task) = start_consumer(&db, &queue, worker_opts(Duration::ZERO, WAIT));
    wait_for_works(&db, DONE, 29).await;
    eventually("13 dead-lettered", WAIT, || async {
        (queue.counts(&channel).await == (0, 1)).then_some(())
    })
    .await;
    // Not wedged: later demands still flow (fixed values: a random one could be 13).
    for i in 30..40 {
        let body = format!(r#"{{"add_up_to": {i}}}"#);
        queue
            .publish_raw(&channel, body.as_bytes(), Some(&format!("refused-{i}")))
            .await;
    }
    wait_for_works(&db, DONE, 39).await;
    stop(trigger, task).await;
    assert_eq!(
        db.count("SELECT count(*) FROM works WHERE add_up_to = 13")
            .await,
        0
    );
    assert_consistent(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_works_older_than_the_sweep_window_expire_with_an_event() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let old = works::create_pending(&client, "api-expiretest1", 5, None, None)
        .await
        .expect("work");
    let fresh = works::create_pending(&client, "api-expiretest2", 6, None, None)
        .await
        .expect("work");
    client
        .execute(
            "UPDATE works SET created_on = now() - interval '2 hours', \
             updated_on = now() - interval '2 hours' WHERE id = $1",
            &[&old.id],
        )
        .await
        .expect("age the work");
    let opts = sweep_opts("expirer", Duration::from_secs(30), 3); // window: 1 h
    let outcome = sweep::sweep_once(&db.pool, &opts).await.expect("sweep");
    assert_eq!((outcome.expired, outcome.completed), (1, 1), "{outcome:?}");
    let status = |id: i64| {
        let client = &client;
        async move {
            let work = works::get(client, id).await.expect("get").expect("exists");
            work.status.as_str().to_string()
        }
    };
    assert_eq!(status(old.id).await, "expired");
    assert_eq!(status(fresh.id).await, "done");
    let events = works::events(&client, old.id)
        .await
        .expect("events")
        .expect("work");
    let last = events.last().expect("an event");
    assert_eq!(last.variable, "work/expired");
    assert!(
        last.value.as_deref().unwrap_or("").contains("1h"),
        "{last:?}"
    );
    // Terminal: a second sweep leaves it alone.
    let again = sweep::sweep_once(&db.pool, &opts).await.expect("sweep");
    assert_eq!(again.expired, 0);
    assert_eq!(counts(&db).await, exact_counts(&db).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_do_not_wait_for_a_busy_pool() {
    use ppctl::storage::{listen, notify::Notifier};
    use std::sync::Arc;
    let db = TestDb::new().await;
    let pool = ppctl::storage::pool(&db.url, 1).expect("pool");
    let _busy = pool.get().await.expect("the pool's only connection, held");
    let (trigger, shutdown) = ppctl::shutdown::channel();
    let notifier = Notifier::spawn(pool.clone(), shutdown.clone());
    let wake = Arc::new(tokio::sync::Notify::new());
    listen::spawn(&pool, listen::PENDING_CHANNEL, wake.clone(), shutdown);
    tokio::time::timeout(WAIT, wake.notified())
        .await
        .expect("the listener connected (its first wake-up)");
    notifier.work_created();
    let woken = tokio::time::timeout(Duration::from_secs(2), wake.notified()).await;
    trigger.fire();
    assert!(woken.is_ok(), "the NOTIFY waited for the busy pool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_run_after_its_deadline_creates_nothing() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let past = std::time::SystemTime::now() - Duration::from_secs(1);
    let late = works::create_pending(&client, "api-toolate0001", 3, Some(past), None).await;
    assert!(
        matches!(&late, Err(e) if e.is_unavailable()),
        "a late insert is a 503, not a work: {late:?}"
    );
    assert_eq!(db.count("SELECT count(*) FROM works").await, 0);
    let soon = std::time::SystemTime::now() + Duration::from_secs(5);
    let work = works::create_pending(&client, "api-intime00001", 3, Some(soon), None).await;
    assert!(work.is_ok(), "{work:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_shorter_than_its_length_is_a_408_not_a_503() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mut socket = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let head = "POST /works HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\n\r\n{\"add_up_to\"";
    socket.write_all(head.as_bytes()).await.expect("send");
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, socket.read(&mut answer))
        .await
        .expect("an answer")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive"), "{answer}");
}
