//! The original project's AMQP contract: its producer publishes demands with no
//! message_id into a queue it declared itself (plain, durable, classic). ppctl stores
//! them as works, marks and counts a redelivered one, dead-letters them only under
//! `--require-message-id`, and uses that queue as it is. Checked against what the broker
//! and the database really hold, with the real binary where the counters matter.

use super::dead::list_json;
use super::faults::{broker_queue, rabbitmqctl};
use super::helpers::*;
use super::pipeline::{start_consumer, stop, wait_for_works, worker_opts, WAIT};
use super::scale::{free_addr, terminate};
use super::traced::{logs_dir, spawn, take_and_requeue};
use serde_json::{json, Value};
use std::time::Duration;

const PRODUCER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/original_producer.py");
const DONE: &str = "SELECT count(*) FROM works WHERE status = 'done'";

/// Runs the original's producer (pika): declares `queue` its way and publishes.
async fn original_producer(queue: &str, demands: &[u64], raw: &[&str]) {
    let job = json!({"url": AMQP_URL, "queue": queue, "demands": demands, "raw": raw});
    let answer = run_python(PRODUCER, &job).await;
    assert_eq!(answer["published"], demands.len() + raw.len(), "{answer}");
}

/// `ppctl consume` with only these settings (no --queue-type), and its metrics address.
fn consume(
    db: &TestDb,
    queue: &TestQueue,
    log: &std::path::Path,
) -> (tokio::process::Child, String) {
    let metrics = free_addr();
    let env = [
        ("DATABASE_URL", db.url.clone()),
        ("AMQP_URL", AMQP_URL.to_string()),
        ("PP_QUEUE", queue.name().to_string()),
    ];
    let child = spawn(&["consume", "--metrics-addr", &metrics], &env, log);
    (child, metrics)
}

/// A counter's value in consume's /metrics.
async fn counter(addr: &str, name: &str) -> f64 {
    let text = scrape(addr).await;
    series(&text, name).unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_producers_demands_are_done_on_its_own_queue() {
    let (db, queue, dir) = (TestDb::new().await, TestQueue::new(), logs_dir());
    original_producer(queue.name(), &[2, 5, 9, 100], &["not json"]).await;
    let log = dir.join("consume.log");
    let (child, metrics) = consume(&db, &queue, &log);
    wait_for_works(&db, DONE, 4).await;
    let sums = "SELECT string_agg(add_up_to || '=' || result, ',' ORDER BY add_up_to) \
                FROM works WHERE message_id LIKE 'ppctl:%' AND status = 'done'";
    let client = db.client().await;
    let row = client.query_one(sums, &[]).await.expect("sums");
    assert_eq!(row.get::<_, String>(0), "2=3,5=15,9=45,100=5050");
    assert_eq!(
        db.count("SELECT count(*) FROM events").await,
        16,
        "4 events each"
    );
    // ppctl's own dead-lettering, with its reason, works on a queue it did not declare.
    let (_conn, channel) = require_rabbitmq().await;
    eventually("the poison dead-lettered", WAIT, || async {
        (queue.topology.dead_count(&channel).await.ok() == Some(1)).then_some(())
    })
    .await;
    assert_eq!(
        counter(&metrics, "ppctl_demands_without_message_id_total").await,
        4.0
    );
    assert!(terminate(child).await.success());
    let listed = list_json(&queue).await;
    let reason = listed["dead_letters"][0]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("bad demand"), "{listed}");
    // The queue is as the original declared it; said once, with the policy to apply.
    let (kind, args) = broker_queue(queue.name()).await;
    assert_eq!((kind.as_str(), args.len()), ("classic", 0), "{args:?}");
    let text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        text.matches("using the existing queue").count(),
        1,
        "{text}"
    );
    assert_eq!(
        text.matches("set message_id when publishing").count(),
        1,
        "{text}"
    );
    assert!(
        !text.contains("--queue-type"),
        "no advice in a circle: {text}"
    );
    apply_the_advised_policy(&text, queue.name()).await;
}

/// Runs the `rabbitmqctl set_policy …` the log advises, and checks the broker applies it.
async fn apply_the_advised_policy(log: &str, queue: &str) {
    let start = log
        .find("rabbitmqctl set_policy")
        .expect("the policy is advised");
    let end = start + log[start..].find(" --apply-to queues").expect("its end");
    let command = format!("{} --apply-to queues", &log[start..end]);
    let status = tokio::process::Command::new("sh")
        .args(["-c", &command])
        .status()
        .await
        .expect("sh");
    assert!(status.success(), "{command}");
    let policy = format!("ppctl-{queue}");
    // The broker applies a policy in the background.
    let applied = tokio::time::timeout(WAIT, async {
        loop {
            let queues = rabbitmqctl(&["list_queues", "name", "policy"]).await;
            let found = queues
                .as_array()
                .into_iter()
                .flatten()
                .any(|q: &Value| q["name"] == queue && q["policy"] == policy.as_str());
            if found {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    let _ = std::process::Command::new("rabbitmqctl")
        .args(["clear_policy", &policy])
        .status();
    assert!(applied.is_ok(), "{command} is not applied to {queue}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_demand_without_message_id_is_marked_and_counted() {
    let (db, queue, dir) = (TestDb::new().await, TestQueue::new(), logs_dir());
    let (_conn, channel) = queue.channel().await;
    queue
        .publish_raw(&channel, br#"{"add_up_to": 7}"#, None)
        .await;
    let props = take_and_requeue(&queue).await;
    assert!(props.message_id().is_none());
    queue
        .publish_raw(&channel, br#"{"add_up_to": 8}"#, None)
        .await;
    let (child, metrics) = consume(&db, &queue, &dir.join("consume.log"));
    wait_for_works(&db, DONE, 2).await;
    let marked = "SELECT string_agg(w.add_up_to::text, ',') FROM events e \
                  JOIN works w ON w.id = e.work_id WHERE e.variable = 'demand/possible-repeat'";
    let client = db.client().await;
    let row = client.query_one(marked, &[]).await.expect("marked");
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("7"));
    let without = "ppctl_demands_without_message_id_total";
    assert_eq!(counter(&metrics, without).await, 2.0);
    assert_eq!(
        counter(&metrics, "ppctl_demands_possibly_repeated_total").await,
        1.0
    );
    assert!(terminate(child).await.success());
    // The mark is one more event after the work's four, in order.
    let events = "SELECT string_agg(e.variable, ',' ORDER BY e.id) FROM events e \
                  JOIN works w ON w.id = e.work_id WHERE w.add_up_to = 7";
    let row = client.query_one(events, &[]).await.expect("events");
    let expected = "work/created,compute/start,compute/stop,compute/result,demand/possible-repeat";
    assert_eq!(row.get::<_, String>(0), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_message_id_dead_letters_a_demand_without_one_with_the_reason() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let (_conn, channel) = queue.channel().await;
    queue
        .publish_raw(&channel, br#"{"add_up_to": 3}"#, None)
        .await;
    queue
        .publish_raw(&channel, br#"{"add_up_to": 4}"#, Some("has-an-id"))
        .await;
    let mut opts = worker_opts(Duration::ZERO, Duration::from_secs(5));
    opts.require_message_id = true;
    let (trigger, task) = start_consumer(&db, &queue, opts);
    wait_for_works(&db, DONE, 1).await;
    eventually("the id-less demand dead-lettered", WAIT, || async {
        (queue.counts(&channel).await == (0, 1)).then_some(())
    })
    .await;
    stop(trigger, task).await;
    assert_eq!(db.count("SELECT count(*) FROM works").await, 1);
    let listed = list_json(&queue).await;
    let reason = listed["dead_letters"][0]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("missing message_id") && reason.contains("--require-message-id"),
        "{listed}"
    );
}
