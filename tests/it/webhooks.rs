//! Webhooks (issue 24, point 6): every work that reaches done, failed, expired or
//! cancelled, by whichever path, is POSTed to a real receiver at least once, signed
//! per Standard Webhooks (checked by the receiver's own HMAC), through 500s, an outage
//! and a consumer killed mid-delivery; duplicates carry the same webhook-id.

use super::helpers::*;
use super::pipeline::{produce, start_consumer, stop, worker_opts, WAIT};
use super::webhook_receiver::{verify, Received, Receiver};
use base64::Engine;
use ppctl::cli::{WebhookOpts, WorkerOpts};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const TERMINAL: &str = "status IN ('done', 'failed', 'expired', 'cancelled')";

pub(super) fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

pub(super) fn webhook_opts(url: &str, secret: &str) -> WorkerOpts {
    WorkerOpts {
        webhook: WebhookOpts {
            webhook_url: Some(url.into()),
            webhook_secret: Some(secret.into()),
            webhook_retry_for: Duration::from_secs(86_400),
            webhook_backoff_max: Duration::from_millis(500),
        },
        ..worker_opts(Duration::ZERO, Duration::from_millis(200))
    }
}

/// A work the sweeper will fail (running, lease gone, out of attempts), one it will
/// expire (pending, out of the window), and one it never claims (out of attempts) for
/// an operator to cancel. Inserted straight, as their states' paths would leave them.
async fn works_for_every_ending(db: &TestDb) -> i64 {
    let client = db.client().await;
    let insert = "INSERT INTO works (work_code, add_up_to, status, attempts, locked_until, updated_on) \
                  VALUES ($1, 1, $2, 3, now() - interval '1 minute', now() - $3::text::interval) RETURNING id";
    for (code, status, age) in [
        ("api-webhookfail", "running", "1 minute"),
        ("api-webhookexpi", "pending", "7 hours"),
    ] {
        client
            .query_one(insert, &[&code, &status, &age])
            .await
            .expect(code);
    }
    let row = client
        .query_one(insert, &[&"api-webhookcanc", &"pending", &"1 minute"])
        .await
        .expect("to cancel");
    row.get(0)
}

/// Every terminal work of the database arrived at least once, each webhook-id always
/// for the same work, and every request is signed.
pub(super) async fn assert_all_delivered(db: &TestDb, received: &[Received], secret: &str) {
    let finished: HashSet<i64> = db
        .client()
        .await
        .query(&format!("SELECT id FROM works WHERE {TERMINAL}"), &[])
        .await
        .expect("finished works")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut work_of_id: HashMap<&str, i64> = HashMap::new();
    let mut arrived = HashSet::new();
    for r in received {
        assert!(
            verify(secret, r),
            "bad signature on {} ({})",
            r.id,
            r.signature
        );
        let (work, _) = r.work();
        let first = *work_of_id.entry(r.id.as_str()).or_insert(work);
        assert_eq!(first, work, "webhook-id {} carried two works", r.id);
        if r.answered == 204 {
            arrived.insert(work);
        }
    }
    let missed: Vec<&i64> = finished.difference(&arrived).collect();
    assert!(
        missed.is_empty(),
        "finished works never delivered: {missed:?}"
    );
}

pub(super) async fn wait_for_every_delivery(db: &TestDb, receiver: &Receiver, within: Duration) {
    eventually("every finished work's webhook", within, || async {
        let finished = db
            .count(&format!("SELECT count(*) FROM works WHERE {TERMINAL}"))
            .await;
        let received = receiver.received();
        let ok = received.iter().filter(|r| r.answered == 204);
        let arrived: HashSet<i64> = ok.map(|r| r.work().0).collect();
        (arrived.len() as i64 == finished).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_ending_is_delivered_signed_through_500s_and_an_outage() {
    let db = TestDb::new().await;
    let queue = TestQueue::new();
    let app = TestApp::spawn_with_queue(&db, queue.name(), None).await;
    let mut receiver = Receiver::start().await;
    receiver.fail_next(5);
    let secret = new_secret();
    let (trigger, task) = start_consumer(&db, &queue, webhook_opts(&receiver.url(), &secret));
    // The consumer turns recording on for every process (serve's cancel included).
    eventually("recording on", WAIT, || async {
        (db.count("SELECT count(*) FROM webhook_settings WHERE enabled")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let to_cancel = works_for_every_ending(&db).await;
    let (status, _) = app
        .call("POST", &format!("/works/{to_cancel}/cancel"), None)
        .await;
    assert_eq!(status, 200);
    for _ in 0..5 {
        assert_eq!(app.call("POST", "/works", Some("{}")).await.0, 201);
    }
    assert_eq!(produce(&queue, 40).await, 40);
    // The receiver goes away for a while, then comes back on the same port.
    eventually("first requests", WAIT, || async {
        (receiver.received().len() >= 8).then_some(())
    })
    .await;
    receiver.stop();
    // Works finished during the outage meet it: their attempts reach no one.
    assert_eq!(produce(&queue, 10).await, 10);
    eventually("an attempt during the outage", WAIT, || async {
        let unanswered = "SELECT count(*) FROM webhook_deliveries WHERE last_status IS NULL \
                          AND last_error IS NOT NULL";
        (db.count(unanswered).await > 0).then_some(())
    })
    .await;
    receiver.restart().await;
    wait_for_every_delivery(&db, &receiver, WAIT).await;
    let endings: HashSet<String> = receiver.received().iter().map(|r| r.work().1).collect();
    for status in ["done", "failed", "expired", "cancelled"] {
        assert!(
            endings.contains(status),
            "no {status} work delivered: {endings:?}"
        );
    }
    let received = receiver.received();
    assert_all_delivered(&db, &received, &secret).await;
    // The verifier is real: another secret matches none of them.
    assert!(received.iter().all(|r| !verify(&new_secret(), r)));
    // Every delivery answered 500 came again, and got through.
    let refused: Vec<&Received> = received.iter().filter(|r| r.answered == 500).collect();
    assert_eq!(refused.len(), 5);
    for r in refused {
        let through = received
            .iter()
            .any(|again| again.id == r.id && again.answered == 204);
        assert!(through, "{} was refused and never sent again", r.id);
    }
    // Those that met the outage or a 500 were retried through.
    eventually("all recorded delivered", WAIT, || async {
        let left = db
            .count("SELECT count(*) FROM webhook_delivery_states WHERE state <> 'delivered'")
            .await;
        (left == 0).then_some(())
    })
    .await;
    stop(trigger, task).await;
}
