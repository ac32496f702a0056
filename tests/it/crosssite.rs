//! Writes from other web pages are refused whatever the token: `Sec-Fetch-Site` or
//! `Origin` naming another site is a 403, a body that is not `application/json` a 415;
//! the dashboard's own requests, clients that are not browsers and an empty create body
//! still work.

use super::helpers::*;
use ppctl::rawhttp::{self, Request};
use serde_json::Value;

/// POSTs with these headers; returns (status, JSON body).
async fn post(app: &TestApp, target: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut request = Request::new("POST", target).expect("request");
    for (name, value) in headers {
        request.headers.push((name.to_string(), value.to_string()));
    }
    request.body = (!body.is_empty()).then(|| body.as_bytes().to_vec());
    let response = rawhttp::send(&app.addr.to_string(), &request)
        .await
        .expect("response");
    let json = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_writes_are_refused_and_same_site_ones_are_not() {
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(db.pool.clone(), Some("s3cret".into())).await;
    let own_origin = format!("http://{}", app.addr);
    let token = ("Authorization", "Bearer s3cret");
    let json = r#"{"add_up_to": 4}"#;
    let refused = [
        (vec![token, ("Sec-Fetch-Site", "cross-site")], json, 403),
        (vec![token, ("Sec-Fetch-Site", "same-site")], json, 403),
        (vec![token, ("Origin", "http://evil.example")], json, 403),
        (vec![token, ("Origin", "null")], json, 403),
        (vec![token, ("Content-Type", "text/plain")], json, 415),
        (
            vec![token, ("Content-Type", "application/x-www-form-urlencoded")],
            json,
            415,
        ),
    ];
    for (headers, body, status) in &refused {
        for target in ["/works", "/work", "/works/1/cancel", "/dead-letters/replay"] {
            let answer = post(&app, target, headers, body).await;
            assert_eq!(answer.0, *status, "{target} {headers:?}: {}", answer.1);
            assert!(answer.1["error"].is_string(), "{target}: {}", answer.1);
        }
    }
    assert_eq!(db.count("SELECT count(*) FROM works").await, 0);

    let allowed = [
        vec![token],
        vec![token, ("Sec-Fetch-Site", "same-origin")],
        vec![token, ("Sec-Fetch-Site", "none")],
        vec![token, ("Origin", own_origin.as_str())],
        vec![token, ("Content-Type", "application/json; charset=utf-8")],
    ];
    for headers in &allowed {
        let answer = post(&app, "/works", headers, json).await;
        assert_eq!(answer.0, 201, "{headers:?}: {}", answer.1);
    }
    // An empty body still asks for a random work, with or without a type.
    let (status, work) = post(&app, "/works", &[token], "").await;
    assert_eq!(status, 201, "{work}");
    assert!((1..=100).contains(&work["add_up_to"].as_i64().unwrap_or(0)));
    let plain = [token, ("Content-Type", "text/plain")];
    assert_eq!(post(&app, "/works", &plain, "").await.0, 201);
    // Reads are not writes.
    let (status, _) = app.call("GET", "/works?limit=1", None).await;
    assert_eq!(status, 200);
}
