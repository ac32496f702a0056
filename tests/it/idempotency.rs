//! `Idempotency-Key` on `POST /works` and `POST /work`: a retry with the same key and
//! body gets the work the first request made (with `Idempotent-Replayed: true`), never
//! a second one; the same key with another body is a 422, a malformed key a 400, and
//! requests racing with one key make one work.

use super::helpers::*;
use std::net::SocketAddr;

/// What a create answered.
pub(super) struct Answer {
    pub status: u16,
    pub replayed: bool,
    pub body: serde_json::Value,
}

/// `POST path` with these extra headers and this body.
pub(super) async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let mut request = ppctl::rawhttp::Request::new("POST", path).expect("request");
    request.headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    request.body = body.map(|b| b.as_bytes().to_vec());
    let response = ppctl::rawhttp::send(&addr.to_string(), &request)
        .await
        .expect("response");
    let body = serde_json::from_slice(&response.body).unwrap_or_else(|e| {
        panic!(
            "POST {path}: not JSON ({e}): {}",
            String::from_utf8_lossy(&response.raw)
        )
    });
    Answer {
        status: response.status,
        replayed: response.header("Idempotent-Replayed") == Some("true"),
        body,
    }
}

/// A create with `Idempotency-Key: key`.
pub(super) async fn create(addr: SocketAddr, key: &str, body: Option<&str>) -> Answer {
    post(addr, "/works", &[("Idempotency-Key", key)], body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_and_body_twice_make_one_work() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let key = format!("order-{}", random_suffix());
    let first = create(app.addr, &key, Some(r#"{"add_up_to": 5}"#)).await;
    assert_eq!(
        (first.status, first.replayed),
        (201, false),
        "{}",
        first.body
    );
    // Spelt otherwise, the same request; the key quoted as the draft writes it.
    let quoted = format!("\"{key}\"");
    let again = create(app.addr, &quoted, Some(r#"{ "add_up_to": 5.0 }"#)).await;
    assert_eq!(
        (again.status, again.replayed),
        (201, true),
        "{}",
        again.body
    );
    assert_eq!(again.body["id"], first.body["id"]);
    // The original route creates alike, and answers as it always does: 200.
    let legacy = post(
        app.addr,
        "/work",
        &[("Idempotency-Key", &key)],
        Some(r#"{"add_up_to": 5}"#),
    )
    .await;
    assert_eq!(
        (legacy.status, legacy.replayed),
        (200, true),
        "{}",
        legacy.body
    );
    assert_eq!(legacy.body["id"], first.body["id"]);
    // A random work (empty body) is the same random work on a retry.
    let other = format!("random-{}", random_suffix());
    let a = create(app.addr, &other, None).await;
    let b = create(app.addr, &other, None).await;
    assert_eq!((a.status, b.status, b.replayed), (201, 201, true));
    assert_eq!(
        (&a.body["id"], &a.body["add_up_to"]),
        (&b.body["id"], &b.body["add_up_to"])
    );
    assert_eq!(db.count("SELECT count(*) FROM works").await, 2);
    assert_eq!(db.count("SELECT count(*) FROM idempotency_keys").await, 2);
    // Without a key, every request is a work of its own.
    for _ in 0..2 {
        assert_eq!(app.call("POST", "/works", Some("{}")).await.0, 201);
    }
    assert_eq!(db.count("SELECT count(*) FROM works").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reused_for_another_body_is_a_422_and_a_bad_key_a_400() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let key = format!("k-{}", random_suffix());
    assert_eq!(
        create(app.addr, &key, Some(r#"{"add_up_to": 5}"#))
            .await
            .status,
        201
    );
    for body in [Some(r#"{"add_up_to": 6}"#), None] {
        let reused = create(app.addr, &key, body).await;
        assert_eq!(reused.status, 422, "{}", reused.body);
        let error = reused.body["error"].as_str().unwrap_or_default();
        assert!(error.contains("Idempotency-Key"), "{error}");
    }
    let long = "k".repeat(256);
    for bad in ["", "a b", "caf\u{e9}", long.as_str()] {
        let answer = create(app.addr, bad, Some(r#"{"add_up_to": 5}"#)).await;
        assert_eq!(answer.status, 400, "{bad:?}: {}", answer.body);
        let error = answer.body["error"].as_str().unwrap_or_default();
        assert!(error.contains("visible ASCII"), "{error}");
    }
    let twice = [("Idempotency-Key", "a"), ("Idempotency-Key", "b")];
    let answer = post(app.addr, "/works", &twice, None).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(db.count("SELECT count(*) FROM works").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_with_one_key_make_one_work() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    for round in 0..5 {
        let key = format!("race-{round}-{}", random_suffix());
        let racers = (0..8).map(|_| {
            let key = key.clone();
            let addr = app.addr;
            tokio::spawn(async move { create(addr, &key, Some(r#"{"add_up_to": 9}"#)).await })
        });
        let answers = futures_util::future::join_all(racers).await;
        let answers: Vec<Answer> = answers.into_iter().map(|a| a.expect("task")).collect();
        for a in &answers {
            assert_eq!(a.status, 201, "{}", a.body);
            assert_eq!(a.body["id"], answers[0].body["id"]);
        }
        let made = answers.iter().filter(|a| !a.replayed).count();
        assert_eq!(made, 1, "exactly one answer made the work");
    }
    assert_eq!(db.count("SELECT count(*) FROM works").await, 5);
}

/// A key lives as long as its work: pruned with it (the foreign key's cascade), after
/// which the key is free for a new work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_pruned_with_its_work() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let key = format!("pruned-{}", random_suffix());
    let first = create(app.addr, &key, Some(r#"{"add_up_to": 5}"#)).await;
    let id = first.body["id"].as_i64().expect("id");
    let (status, body) = app.call("POST", &format!("/works/{id}/cancel"), None).await;
    assert_eq!(status, 200, "{body}");
    db.client()
        .await
        .execute(
            "UPDATE works SET updated_on = now() - interval '2 hours'",
            &[],
        )
        .await
        .expect("age the work");
    let pruned = ppctl::storage::prune::prune(&db.pool, std::time::Duration::from_secs(3600))
        .await
        .expect("prune");
    assert_eq!(pruned.works, 1);
    assert_eq!(db.count("SELECT count(*) FROM idempotency_keys").await, 0);
    let again = create(app.addr, &key, Some(r#"{"add_up_to": 5}"#)).await;
    assert_eq!(
        (again.status, again.replayed),
        (201, false),
        "{}",
        again.body
    );
    assert_ne!(again.body["id"], first.body["id"]);
}
