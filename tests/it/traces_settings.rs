//! Tracing off and tracing misconfigured (issue 18): off, ppctl writes no trace headers,
//! ids or series, and its JSON logs keep their shape; bad settings are refused at start
//! with one line and exit 2.

use super::helpers::*;
use super::scale::{free_addr, terminate};
use super::traced::{
    json_log, json_log_line, logs_dir, publish_with_headers, run, spawn, take_and_requeue,
    traced_env, traced_setup,
};
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracing_off_writes_no_trace_headers_ids_or_series() {
    let (db, queue, dir) = (TestDb::new().await, TestQueue::new(), logs_dir());
    let env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("AMQP_URL", AMQP_URL.to_string()),
        ("PP_QUEUE", queue.name().to_string()),
        ("PP_LOG_FORMAT", "json".to_string()),
    ];
    run(
        &["produce", "--count", "3", "--every", "0"],
        &env,
        &dir.join("produce.log"),
    )
    .await;
    let headers = take_and_requeue(&queue).await.headers().clone();
    let headers = headers.unwrap_or_default();
    assert!(!headers.inner().contains_key("traceparent"), "{headers:?}");
    let metrics_addr = free_addr();
    let consume = spawn(
        &["consume", "--metrics-addr", &metrics_addr],
        &env,
        &dir.join("consume.log"),
    );
    eventually("3 works", Duration::from_secs(30), || async {
        (db.count("SELECT count(*) FROM works WHERE status = 'done'")
            .await
            == 3)
            .then_some(())
    })
    .await;
    let metrics = scrape(&metrics_addr).await;
    assert!(terminate(consume).await.success());
    assert!(
        !metrics.contains("ppctl_trace_"),
        "no tracing series when off"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM works WHERE trace_parent IS NOT NULL")
            .await,
        0
    );
    let id = db.count("SELECT max(id) FROM works").await.to_string();
    let work: Value = serde_json::from_str(
        &run(
            &["work", "get", &id, "--json", "--via", "db"],
            &env,
            &dir.join("get.log"),
        )
        .await,
    )
    .expect("JSON");
    assert!(work.get("trace_id").is_none(), "{work}");
    // JSON logs without tracing: the same shape, without ids.
    let log = json_log(&dir.join("consume.log"));
    assert!(log
        .iter()
        .any(|l| l["message"] == "consumer starting" && l["level"] == "INFO"));
    assert!(log
        .iter()
        .all(|l| l.get("trace_id").is_none() && l["target"].is_string()));
}

#[tokio::test]
async fn bad_tracing_settings_are_refused_at_start() {
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
            "OTLP over HTTP only",
        ),
        (
            &[endpoint, ("OTEL_TRACES_SAMPLER", "sometimes")],
            "OTEL_TRACES_SAMPLER",
        ),
        (
            &[
                endpoint,
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "2"),
            ],
            "a ratio from 0 to 1",
        ),
        (
            &[endpoint, ("OTEL_BSP_MAX_QUEUE_SIZE", "0")],
            "OTEL_BSP_MAX_QUEUE_SIZE",
        ),
        (&[("PP_TRACE_URL", "http://jaeger/trace/")], "{trace_id}"),
        (&[("PP_LOG_FORMAT", "xml")], "xml"),
    ];
    for (env, says) in cases {
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let log = logs_dir().join("refused.log");
        let out = spawn(&["completions", "bash"], &env, &log)
            .wait_with_output()
            .await
            .expect("runs");
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(says), "{env:?}: {stderr}");
        assert!(
            stderr.lines().filter(|l| !l.trim().is_empty()).count() <= 3,
            "{env:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_is_decided_at_the_root_and_followed_downstream() {
    let (receiver, db, queue, dir) = traced_setup().await;
    let env = traced_env(receiver.endpoint(), &db, &queue);
    let mut unsampled = env.clone();
    unsampled.push(("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".into()));
    unsampled.push(("OTEL_TRACES_SAMPLER_ARG", "0".into()));
    run(
        &["produce", "--count", "20", "--every", "0"],
        &unsampled,
        &dir.join("p0.log"),
    )
    .await;
    // A poison demand from an unsampled publisher of another system.
    let unsampled_parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    publish_with_headers(
        &queue,
        b"{\"add_up_to\": -1}",
        "poison-unsampled",
        &[("traceparent", unsampled_parent)],
    )
    .await;
    // The consumer samples everything of its own, but follows each demand's parent.
    let consume = spawn(&["consume"], &env, &dir.join("consume.log"));
    eventually("20 works", Duration::from_secs(30), || async {
        (db.count("SELECT count(*) FROM works WHERE status = 'done'")
            .await
            == 20)
            .then_some(())
    })
    .await;
    run(
        &["produce", "--count", "1", "--every", "0"],
        &env,
        &dir.join("p1.log"),
    )
    .await;
    let spans = receiver.wait_for_spans(Duration::from_secs(30), |s| {
        s.iter().any(|s| s["kind"] == "CONSUMER")
    });
    assert!(terminate(consume).await.success());
    let kinds: Vec<&str> = spans.iter().filter_map(|s| s["kind"].as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "PRODUCER").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "CONSUMER").count(),
        1,
        "{kinds:?}"
    );
    // Only the sampled demand's work stores its trace: an unsampled one's id would
    // lead to no stored trace.
    let stored = db
        .count("SELECT count(*) FROM works WHERE trace_parent IS NOT NULL")
        .await;
    let sampled = db
        .count("SELECT count(*) FROM works WHERE trace_parent LIKE '00-%-01'")
        .await;
    assert_eq!((stored, sampled), (1, 1));
    // Not sampled, not built: the poison's dead-lettering is logged in no span (a span
    // built only to be dropped by the sampler would have given the line its ids).
    let line = json_log_line(&dir.join("consume.log"), "dead-lettering");
    assert!(line.get("trace_id").is_none(), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otlp_protocol_is_protobuf_unless_json_is_asked_for() {
    let (receiver, db, queue, dir) = traced_setup().await;
    let mut env = traced_env(receiver.endpoint(), &db, &queue);
    env.push(("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json".into()));
    run(
        &["produce", "--count", "1", "--every", "0"],
        &env,
        &dir.join("produce.log"),
    )
    .await;
    receiver.wait_for_spans(Duration::from_secs(20), |s| !s.is_empty());
    let types: Vec<_> = receiver
        .requests()
        .iter()
        .map(|r| r["content_type"].clone())
        .collect();
    assert!(
        !types.is_empty() && types.iter().all(|t| t == "application/json"),
        "{types:?}"
    );
}
