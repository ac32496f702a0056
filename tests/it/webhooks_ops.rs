//! Webhooks as an operator meets them: a consumer killed (SIGKILL) mid-delivery, failed
//! deliveries listed and redelivered (API and CLI) with their webhook-id, and bad
//! settings refused at start without echoing a password or the secret.

use super::helpers::*;
use super::pipeline::{produce, WAIT};
use super::webhook_receiver::Receiver;
use super::webhooks::{assert_all_delivered, new_secret, wait_for_every_delivery};
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

/// `ppctl consume` as a process (so it can be killed), delivering to `url`.
pub(super) fn consume_process(
    database_url: &str,
    queue: &TestQueue,
    url: &str,
    secret: &str,
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ppctl"))
        .args(["consume", "--queue", queue.name(), "--sweep-every", "200ms"])
        .env("DATABASE_URL", database_url)
        .env("AMQP_URL", AMQP_URL)
        .env("PP_WEBHOOK_URL", url)
        .env("PP_WEBHOOK_SECRET", secret)
        .env("PP_WEBHOOK_BACKOFF_MAX", "500ms")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start ppctl consume")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_killed_mid_delivery_loses_none_and_repeats_with_the_same_id() {
    let db = TestDb::new().await;
    let queue = TestQueue::new();
    let receiver = Receiver::start().await;
    receiver.delay(Duration::from_secs(5)); // every POST is in flight for a while
    let secret = new_secret();
    let mut first = consume_process(&db.url, &queue, &receiver.url(), &secret);
    assert_eq!(produce(&queue, 30).await, 30);
    eventually("deliveries in flight", WAIT, || async {
        (receiver.received().len() >= 10).then_some(())
    })
    .await;
    first.start_kill().expect("SIGKILL");
    let _ = first.wait().await;
    let in_flight = receiver.received();
    receiver.delay(Duration::ZERO);
    let mut second = consume_process(&db.url, &queue, &receiver.url(), &secret);
    // The killed batch is walked again at once (its transaction never committed).
    wait_for_every_delivery(&db, &receiver, Duration::from_secs(90)).await;
    let received = receiver.received();
    assert_all_delivered(&db, &received, &secret).await;
    assert_eq!(
        db.count("SELECT count(*) FROM works WHERE status = 'done'")
            .await,
        30
    );
    let mut times: HashMap<&str, usize> = HashMap::new();
    for r in &received {
        *times.entry(r.id.as_str()).or_default() += 1;
    }
    // What was in flight when the consumer died came again, under the same id.
    for r in &in_flight {
        assert!(
            times[r.id.as_str()] >= 2,
            "{} was cut off and not sent again",
            r.id
        );
    }
    second.start_kill().expect("stop");
    let _ = second.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_deliveries_are_listed_and_redelivered_with_their_id() {
    let db = TestDb::new().await;
    let queue = TestQueue::new();
    let app = TestApp::spawn_with_queue(&db, queue.name(), None).await;
    let receiver = Receiver::start().await;
    receiver.fail_next(usize::MAX);
    let secret = new_secret();
    let mut consumer = tokio::process::Command::new(env!("CARGO_BIN_EXE_ppctl"))
        .args([
            "consume",
            "--queue",
            queue.name(),
            "--webhook-retry-for",
            "1s",
        ])
        .env("DATABASE_URL", &db.url)
        .env("AMQP_URL", AMQP_URL)
        .env("PP_WEBHOOK_URL", receiver.url())
        .env("PP_WEBHOOK_SECRET", &secret)
        .env("PP_WEBHOOK_BACKOFF_MAX", "200ms")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start ppctl consume");
    assert_eq!(produce(&queue, 3).await, 3);
    let failed = eventually("three failed deliveries", WAIT, || async {
        let (status, body) = app
            .call("GET", "/webhooks/deliveries?status=failed", None)
            .await;
        assert_eq!(status, 200, "{body}");
        let list = body.as_array().cloned().unwrap_or_default();
        (list.len() == 3).then_some(list)
    })
    .await;
    assert!(failed
        .iter()
        .all(|d| d["last_status"] == 500 && d["attempts"].as_i64() > Some(1)));
    let cli = ppctl(&[
        "webhook",
        "list",
        "--status",
        "failed",
        "--database-url",
        &db.url,
    ])
    .await;
    let (out, err) = outputs(&cli);
    assert!(
        cli.status.success() && out.lines().count() == 4,
        "{out}{err}"
    );
    receiver.fail_next(0);
    let one = failed[0]["id"].as_i64().expect("id");
    let (status, again) = app
        .call(
            "POST",
            &format!("/webhooks/deliveries/{one}/redeliver"),
            None,
        )
        .await;
    assert_eq!(
        (status, again["state"].as_str()),
        (200, Some("pending")),
        "{again}"
    );
    let cli = ppctl(&[
        "webhook",
        "redeliver",
        "--all-failed",
        "--database-url",
        &db.url,
    ])
    .await;
    assert!(cli.status.success(), "{:?}", outputs(&cli));
    assert!(
        outputs(&cli).0.starts_with("2 failed deliveries"),
        "{:?}",
        outputs(&cli)
    );
    eventually("redelivered", WAIT, || async {
        let done = db
            .count("SELECT count(*) FROM webhook_delivery_states WHERE state = 'delivered'")
            .await;
        (done == 3).then_some(())
    })
    .await;
    // The redeliveries carried the ids the failed attempts had.
    let ids: Vec<&str> = failed
        .iter()
        .filter_map(|d| d["webhook_id"].as_str())
        .collect();
    let received = receiver.received();
    for id in ids {
        assert!(
            received.iter().any(|r| r.id == id && r.answered == 204),
            "{id}"
        );
    }
    let (status, _) = app
        .call("POST", "/webhooks/deliveries/999999/redeliver", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .call("GET", "/webhooks/deliveries?status=lost", None)
        .await;
    assert_eq!(status, 400);
    consumer.start_kill().expect("stop");
    let _ = consumer.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_webhook_settings_exit_2_without_echoing_secrets() {
    let good = new_secret();
    for (url, secret) in [
        ("ftp://user:hunter2@hooks.example/in", good.as_str()),
        ("http://user:hunter2@", good.as_str()),
        ("https://user:hunter2@hooks.example/in", ""),
        (
            "https://user:hunter2@hooks.example/in",
            "whsec_c2VjcmV0c2VjcmV0",
        ),
        (
            "https://user:hunter2@hooks.example/in",
            "s3cr3t-not-whsec-hunter2",
        ),
    ] {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ppctl"));
        command
            .args(["consume", "--webhook-url", url])
            .env("DATABASE_URL", "postgres://u:p@127.0.0.1:1/none")
            .env("PP_WEBHOOK_SECRET", secret)
            .stdin(Stdio::null());
        let output = tokio::time::timeout(WAIT, command.output())
            .await
            .expect("exits at once")
            .expect("runs");
        let (out, err) = outputs(&output);
        assert_eq!(output.status.code(), Some(2), "{url}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            !err.contains("hunter2") && !err.contains("c2VjcmV0"),
            "{err}"
        );
        assert!(out.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_records_from_its_first_batch() {
    // The queue is full before the first consumer with a URL starts (a fresh process,
    // a fresh pool): recording must be on before it stores anything, or its first
    // batches finish works unannounced.
    let db = TestDb::new().await;
    let queue = TestQueue::new();
    assert_eq!(produce(&queue, 1000).await, 1000);
    let receiver = Receiver::start().await;
    let secret = new_secret();
    let mut consumer = consume_process(&db.url, &queue, &receiver.url(), &secret);
    eventually("1000 works done", WAIT, || async {
        let done = db
            .count("SELECT count(*) FROM works WHERE status = 'done'")
            .await;
        (done == 1000).then_some(())
    })
    .await;
    wait_for_every_delivery(&db, &receiver, WAIT).await;
    assert_all_delivered(&db, &receiver.received(), &secret).await;
    consumer.start_kill().expect("stop");
    let _ = consumer.wait().await;
}
