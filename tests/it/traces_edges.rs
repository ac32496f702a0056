//! Traces at the edges (issue 18): a redelivered or replayed demand starts a trace of
//! its own linked to the first one; a collector that is down, refuses or is slow costs
//! spans (counted) and never work; one that starts late gets what was sent before.

use super::helpers::*;
use super::otlp::{print_tree, Receiver};
use super::scale::{free_addr, terminate};
use super::traced::{
    attr, logs_dir, publish_with_headers, run, spawn, take_and_requeue, traced_env, traced_setup,
};
use serde_json::Value;
use std::time::Duration;

/// The resource of the consumer's spans.
fn again_resource(spans: &[Value]) -> &Value {
    let span = spans.iter().find(|s| s["service"] == "ppctl-consume");
    &span.expect("a consumer span")["resource"]
}

fn links_to<'a>(span: &'a Value, trace: &str, span_id: &str) -> Option<&'a Value> {
    span["links"]
        .as_array()?
        .iter()
        .find(|l| l["trace_id"] == trace && l["span_id"] == span_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_or_replayed_demand_links_to_its_first_trace() {
    let (receiver, db, queue, dir) = traced_setup().await;
    let env = traced_env(receiver.endpoint(), &db, &queue);
    let first = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let demand_parent = format!("00-{}-{}-01", first.0, first.1);
    publish_with_headers(
        &queue,
        b"{\"add_up_to\": 3}",
        "again-1",
        &[("traceparent", &demand_parent)],
    )
    .await;
    // Another consumer took it and gave it back: the broker redelivers it.
    take_and_requeue(&queue).await;
    let poison = ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174");
    let poison_parent = format!("00-{}-{}-01", poison.0, poison.1);
    publish_with_headers(
        &queue,
        b"{\"add_up_to\": \"x\"}",
        "replayed-1",
        &[("traceparent", &poison_parent)],
    )
    .await;

    // The standard variables: resource attributes and the exporter's headers.
    let mut consume_env = env.clone();
    consume_env.push((
        "OTEL_RESOURCE_ATTRIBUTES",
        "deployment.environment.name=ci".into(),
    ));
    consume_env.push(("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=ppctl-tests".into()));
    let consume = spawn(&["consume"], &consume_env, &dir.join("consume.log"));
    let processed = |s: &[Value], id: &str| {
        s.iter()
            .filter(|s| s["kind"] == "CONSUMER" && attr(s, "messaging.message.id") == id)
            .count()
    };
    receiver.wait_for_spans(Duration::from_secs(30), |s| {
        processed(s, "again-1") == 1 && processed(s, "replayed-1") == 1
    });
    run(&["dead", "replay", "--all"], &env, &dir.join("replay.log")).await;
    let spans =
        receiver.wait_for_spans(Duration::from_secs(30), |s| processed(s, "replayed-1") == 2);
    assert!(terminate(consume).await.success());
    assert_eq!(again_resource(&spans)["deployment.environment.name"], "ci");
    assert!(receiver
        .requests()
        .iter()
        .any(|r| r["headers"]["x-tenant"] == "ppctl-tests"));

    // The redelivery: a trace of its own, linked to the publisher's span.
    let again = spans
        .iter()
        .find(|s| attr(s, "messaging.message.id") == "again-1" && s["kind"] == "CONSUMER")
        .expect("span");
    assert_eq!(attr(again, "ppctl.redelivered"), true);
    assert_ne!(
        again["trace_id"], first.0,
        "a redelivery must not stretch the first trace"
    );
    assert_eq!(again["parent_span_id"], "");
    let link = links_to(again, first.0, first.1).expect("a link to the first delivery's trace");
    assert_eq!(link["attributes"]["ppctl.link"], "follows");
    println!(
        "a redelivered demand:\n{}",
        print_tree(&spans, again["trace_id"].as_str().expect("id"))
    );

    // The replay: its publish is a new operation linked to the demand's trace, and the
    // replayed demand's processing is its child, also linked to the demand it was.
    let replay = spans
        .iter()
        .find(|s| s["service"] == "ppctl-dead")
        .expect("the replay's publish span");
    assert_eq!(replay["kind"], "PRODUCER");
    assert_ne!(replay["trace_id"], poison.0);
    assert!(links_to(replay, poison.0, poison.1).is_some(), "{replay:#}");
    let reprocessed = spans
        .iter()
        .find(|s| s["kind"] == "CONSUMER" && s["parent_span_id"] == replay["span_id"])
        .expect("the replayed demand's processing, under the replay");
    assert_eq!(attr(reprocessed, "messaging.message.id"), "replayed-1");
    let link = links_to(reprocessed, poison.0, poison.1).expect("a link to the demand it was");
    assert_eq!(link["attributes"]["ppctl.link"], "replay-of");
    println!(
        "a replayed dead letter:\n{}",
        print_tree(&spans, replay["trace_id"].as_str().expect("id"))
    );
}

/// Runs produce → consume with tracing pointed at `endpoint` and extra settings; every
/// demand must be stored; returns consume's metrics.
async fn pipeline_with_collector(endpoint: String, extra: &[(&'static str, &str)]) -> String {
    let (db, queue, dir) = (TestDb::new().await, TestQueue::new(), logs_dir());
    let mut env = traced_env(endpoint, &db, &queue);
    env.push(("OTEL_EXPORTER_OTLP_TIMEOUT", "1000".into()));
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let metrics_addr = free_addr();
    let consume = spawn(
        &["consume", "--metrics-addr", &metrics_addr],
        &env,
        &dir.join("consume.log"),
    );
    run(
        &["produce", "--count", "400", "--every", "0"],
        &env,
        &dir.join("produce.log"),
    )
    .await;
    eventually("every demand stored", Duration::from_secs(60), || async {
        (db.count("SELECT count(*) FROM works WHERE status = 'done'")
            .await
            == 400)
            .then_some(())
    })
    .await;
    // The last spans end after their batch's ack; give the queue a moment to export.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let metrics = scrape(&metrics_addr).await;
    assert!(terminate(consume).await.success());
    metrics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_down_refusing_or_slow_costs_spans_never_work() {
    let refusing = Receiver::start("refuse");
    let slow = Receiver::start_with(
        &super::otlp::python(),
        &["--mode", "slow", "--slow-seconds", "3"],
    );
    let cases = [
        (
            "down",
            "http://127.0.0.1:9".to_string(),
            vec![],
            "export_failed",
        ),
        ("refusing", refusing.endpoint(), vec![], "export_failed"),
        (
            "slow",
            slow.endpoint(),
            vec![
                ("OTEL_BSP_MAX_QUEUE_SIZE", "16"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "8"),
            ],
            "queue_full",
        ),
    ];
    for (what, endpoint, extra, reason) in cases {
        let metrics = pipeline_with_collector(endpoint, &extra).await;
        let dropped = series(
            &metrics,
            &format!("ppctl_trace_spans_dropped_total{{reason=\"{reason}\"}}"),
        );
        assert!(
            dropped.is_some_and(|n| n > 0.0),
            "{what}: no {reason} drops counted:\n{metrics}"
        );
        assert_eq!(
            series(&metrics, "ppctl_works_stored_total"),
            Some(400.0),
            "{what}"
        );
    }
    assert!(
        !refusing.requests().is_empty(),
        "the refusing collector was asked"
    );
}

/// The services of a Compose stack start together: a collector that listens a couple of
/// seconds after ppctl's first export still gets that batch (asked again within
/// `OTEL_EXPORTER_OTLP_TIMEOUT`). Not retried, the only batch was dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_starts_late_still_gets_the_first_spans() {
    let (db, queue, dir) = (TestDb::new().await, TestQueue::new(), logs_dir());
    let addr = free_addr();
    let port = addr.rsplit(':').next().expect("a port").to_string();
    let env = traced_env(format!("http://{addr}"), &db, &queue);
    let consume = spawn(&["consume"], &env, &dir.join("consume.log"));
    run(
        &["produce", "--count", "3", "--every", "0"],
        &env,
        &dir.join("produce.log"),
    )
    .await;
    eventually("the 3 demands stored", Duration::from_secs(30), || async {
        (db.count("SELECT count(*) FROM works").await == 3).then_some(())
    })
    .await;
    // Consume's spans went to the empty port 100 ms after their batch ended.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let late = Receiver::start_with(&super::otlp::python(), &["--port", &port]);
    late.wait_for_spans(Duration::from_secs(20), |spans| {
        spans.iter().any(|s| s["service"] == "ppctl-consume")
    });
    assert!(terminate(consume).await.success());
}
