//! Traces across processes (issue 18): a queued demand is one trace from its publish to
//! its store, an API work one trace from the client's request to the sweeper's compute,
//! and the JSON log lines written inside those spans carry their ids. Real processes
//! (tracing is process-wide), a real OTLP receiver (tests/otlp), the rows checked.

use super::helpers::*;
use super::otlp::print_tree;
use super::scale::{free_addr, terminate};
use super::traced::{
    attr, json_log, json_log_line, named, publish_with_headers, run, spawn, traced_env,
    traced_setup,
};
use lapin::types::AMQPValue;
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_demand_is_one_trace_from_its_publish_to_its_store() {
    let (receiver, db, queue, dir) = traced_setup().await;
    let env = traced_env(receiver.endpoint(), &db, &queue);
    let consume = spawn(&["consume"], &env, &dir.join("consume.log"));
    // A poison demand from another traced publisher: its dead-lettering is logged inside
    // its processing span, a child of that publisher's span.
    let (theirs, their_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let parent = format!("00-{theirs}-{their_span}-01");
    publish_with_headers(
        &queue,
        b"{\"add_up_to\": -1}",
        "poison-1",
        &[("traceparent", &parent)],
    )
    .await;
    run(
        &["produce", "--count", "5", "--every", "0"],
        &env,
        &dir.join("produce.log"),
    )
    .await;
    let spans = receiver.wait_for_spans(Duration::from_secs(30), |s| {
        named(s, "ppctl-consume", &format!("process {}", queue.name())).len() >= 6
            && !named(s, "ppctl-consume", "INSERT works").is_empty()
    });
    assert!(terminate(consume).await.success());
    // No protocol set: OTLP's default, protobuf.
    let types: Vec<_> = receiver
        .requests()
        .iter()
        .map(|r| r["content_type"].clone())
        .collect();
    assert!(
        types.iter().all(|t| t == "application/x-protobuf"),
        "{types:?}"
    );

    let publishes = named(
        &spans,
        "ppctl-produce",
        &format!("publish {}", queue.name()),
    );
    assert_eq!(publishes.len(), 5, "one publish span per demand");
    let stores = named(&spans, "ppctl-consume", "INSERT works");
    let client = db.client().await;
    for publish in &publishes {
        assert_eq!(publish["kind"], "PRODUCER");
        assert_eq!(attr(publish, "messaging.system"), "rabbitmq");
        assert_eq!(attr(publish, "messaging.operation.type"), "publish");
        assert_eq!(attr(publish, "messaging.destination.name"), queue.name());
        let id = attr(publish, "messaging.message.id")
            .as_str()
            .expect("message id");
        // Its processing: same trace, child of the publish, same message.
        let process = spans
            .iter()
            .find(|s| s["kind"] == "CONSUMER" && s["parent_span_id"] == publish["span_id"])
            .unwrap_or_else(|| panic!("no process span under the publish of {id}:\n{spans:#?}"));
        assert_eq!(process["trace_id"], publish["trace_id"]);
        assert_eq!(attr(process, "messaging.message.id"), id);
        assert_eq!(attr(process, "messaging.operation.type"), "process");
        // Its store: one batch span linking to the processing span.
        let store = stores
            .iter()
            .find(|s| {
                s["links"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|l| l["span_id"] == process["span_id"]))
            })
            .unwrap_or_else(|| panic!("no store span links to the processing of {id}"));
        assert_eq!(store["kind"], "CLIENT");
        assert_eq!(attr(store, "db.system.name"), "postgresql");
        assert_eq!(attr(store, "db.collection.name"), "works");
        // The stored work carries the trace.
        let row = client
            .query_one(
                "SELECT trace_parent FROM works WHERE message_id = $1",
                &[&id],
            )
            .await
            .expect("work");
        let stored: &str = row.get(0);
        assert!(
            stored.contains(publish["trace_id"].as_str().expect("id")),
            "{stored}"
        );
    }
    let first = publishes[0]["trace_id"].as_str().expect("trace id");
    println!("one queued demand's trace:\n{}", print_tree(&spans, first));
    if let Some(store) = stores.first() {
        let store_trace = store["trace_id"].as_str().expect("trace id");
        println!(
            "a batch store (its own trace, linked):\n{}",
            print_tree(&spans, store_trace)
        );
    }

    // The poison: processed in the other publisher's trace, failed, and its log line
    // carries that trace and the processing span's id.
    let poison = spans
        .iter()
        .find(|s| s["trace_id"] == theirs && s["kind"] == "CONSUMER")
        .expect("the poison's processing span, in its publisher's trace");
    assert_eq!(poison["parent_span_id"], their_span);
    assert_eq!(poison["status"]["code"], "ERROR");
    let line = json_log_line(&dir.join("consume.log"), "dead-lettering");
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["trace_id"], theirs, "{line}");
    assert_eq!(line["span_id"], poison["span_id"], "{line}");
    assert!(line["fields"]["reason"].is_string(), "{line}");
    // The dead letter keeps the context of the demand it came from.
    let (_conn, channel) = queue.channel().await;
    let dead = channel
        .basic_get(
            queue.topology.dead_queue.as_str().into(),
            Default::default(),
        )
        .await
        .expect("get")
        .expect("the dead letter");
    let headers = dead.delivery.properties.headers().clone().expect("headers");
    assert_eq!(
        headers.inner().get("traceparent"),
        Some(&AMQPValue::LongString(parent.as_str().into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_work_is_one_trace_from_the_request_to_the_sweep() {
    let (receiver, db, queue, dir) = traced_setup().await;
    let mut env = traced_env(receiver.endpoint(), &db, &queue);
    env.push(("PP_TRACE_URL", "http://jaeger.test/trace/{trace_id}".into()));
    let addr = free_addr();
    let serve = spawn(
        &["serve", "--addr", &addr, "--access-log"],
        &env,
        &dir.join("serve.log"),
    );
    // Sweeping often: every sweep that finds nothing must export nothing.
    let consume = spawn(
        &["consume", "--sweep-every", "200ms"],
        &env,
        &dir.join("consume.log"),
    );
    let api = format!("http://{addr}");
    eventually("the API", Duration::from_secs(20), || async {
        reqwest::get(format!("{api}/health")).await.ok().map(|_| ())
    })
    .await;
    let created: Value = serde_json::from_str(
        &run(
            &["work", "create", "--json", "--api-url", &api],
            &env,
            &dir.join("work.log"),
        )
        .await,
    )
    .expect("work JSON");
    let trace_id = created["trace_id"]
        .as_str()
        .expect("the work shows its trace id")
        .to_string();
    assert_eq!(
        created["trace_url"],
        format!("http://jaeger.test/trace/{trace_id}")
    );
    let spans = receiver.wait_for_spans(Duration::from_secs(30), |s| {
        s.iter()
            .any(|s| s["name"] == "compute work" && s["trace_id"] == trace_id.as_str())
    });
    println!("one API work's trace:\n{}", print_tree(&spans, &trace_id));
    let in_trace: Vec<&Value> = spans
        .iter()
        .filter(|s| s["trace_id"] == trace_id.as_str())
        .collect();
    let client = in_trace
        .iter()
        .find(|s| s["service"] == "ppctl-work")
        .expect("the CLI's span");
    assert_eq!(client["kind"], "CLIENT");
    assert_eq!(client["parent_span_id"], "");
    let server = in_trace
        .iter()
        .find(|s| s["service"] == "ppctl-serve" && s["kind"] == "SERVER")
        .expect("the API's span");
    let insert = in_trace
        .iter()
        .find(|s| s["parent_span_id"] == server["span_id"] && s["service"] == "ppctl-serve")
        .expect("the API's insert, in the request (the sweep's compute is the other child)");
    assert_eq!(insert["name"], "INSERT works");
    assert_eq!(attr(insert, "db.system.name"), "postgresql");
    assert_eq!(server["name"], "POST /works");
    assert_eq!(server["kind"], "SERVER");
    assert_eq!(
        server["parent_span_id"], client["span_id"],
        "serve continues the CLI's trace"
    );
    assert_eq!(attr(server, "http.route"), "/works");
    assert_eq!(attr(server, "http.response.status_code"), 201);
    let compute = in_trace
        .iter()
        .find(|s| s["name"] == "compute work")
        .expect("compute");
    assert_eq!(compute["service"], "ppctl-consume");
    assert_eq!(
        compute["parent_span_id"], server["span_id"],
        "the sweep joins the request's trace"
    );
    assert_eq!(attr(compute, "ppctl.work.id"), &created["id"]);
    // The sweeper's batch update is linked to the compute.
    let spans = receiver.wait_for_spans(Duration::from_secs(30), |s| {
        s.iter().any(|s| s["name"] == "UPDATE works")
    });
    assert!(spans.iter().any(|s| s["name"] == "UPDATE works"
        && s["links"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l["span_id"] == compute["span_id"]))));
    let idle: Vec<_> = spans
        .iter()
        .filter(|s| s["name"] == "UPDATE works" && attr(s, "db.operation.batch.size") == 0)
        .collect();
    assert!(idle.is_empty(), "idle sweeps exported spans: {idle:#?}");
    // The access log line was written in the request's span.
    let log = json_log(&dir.join("serve.log"));
    let access = log
        .iter()
        .find(|l| l["target"] == "ppctl::access" && l["trace_id"] == trace_id.as_str());
    let access = access.unwrap_or_else(|| panic!("no access line with the trace: {log:#?}"));
    assert_eq!(access["span_id"], server["span_id"]);
    // Fetched again, by the API and from the database, the work still shows it.
    let id = created["id"].to_string();
    for via in [vec!["--api-url", api.as_str()], vec!["--via", "db"]] {
        let got: Value = serde_json::from_str(
            &run(
                &[&["work", "get", &id, "--json"][..], &via].concat(),
                &env,
                &dir.join("get.log"),
            )
            .await,
        )
        .expect("JSON");
        assert_eq!(got["trace_id"], trace_id.as_str(), "{via:?}");
    }
    assert!(terminate(serve).await.success());
    assert!(terminate(consume).await.success());
}
