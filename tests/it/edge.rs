//! The HTTP edge as the OpenAPI document states it, beyond what Schemathesis samples:
//! a 405 with `Allow` for every undocumented method on every path (HEAD included), a
//! 400 for every undocumented query parameter on every route, body errors that name
//! the real fault, and the cap on concurrent event streams.

use super::helpers::*;
use ppctl::http::{ServerConfig, ROUTES};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends a request by hand and returns the response head, lower-cased; the connection is
/// returned too, so a stream can be kept open. Reads only the head: HEAD has no body and
/// an event stream never ends.
async fn head(app: &TestApp, method: &str, path: &str) -> (String, TcpStream) {
    let mut socket = TcpStream::connect(app.addr).await.expect("connect");
    let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n");
    socket.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut buf = [0; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf)).await;
        let n = read.expect("an answer within 10 s").expect("read");
        assert!(n > 0, "{method} {path}: connection closed before the head");
        head.extend_from_slice(&buf[..n]);
    }
    (String::from_utf8_lossy(&head).to_lowercase(), socket)
}

fn status_of(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("")
}

fn allow_of(head: &str) -> Option<&str> {
    head.lines()
        .find_map(|l| l.strip_prefix("allow:"))
        .map(str::trim)
}

/// The methods `ROUTES` lists for `path`, as an `Allow` header would (lower case).
fn documented(path: &str) -> Vec<String> {
    let mut methods: Vec<String> = ROUTES
        .iter()
        .filter(|(_, p)| *p == path)
        .map(|(m, _)| m.to_lowercase())
        .collect();
    methods.sort();
    methods
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_answers_other_methods_with_405_and_allow() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let others = [
        "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "QUERY",
    ];
    for (_, path) in ROUTES {
        let allowed = documented(path);
        let target = path.replace("{id}", "1");
        for method in others
            .iter()
            .filter(|m| !allowed.contains(&m.to_lowercase()))
        {
            let (head, _) = head(&app, method, &target).await;
            assert_eq!(status_of(&head), "405", "{method} {target}: {head}");
            let mut listed: Vec<String> = allow_of(&head)
                .unwrap_or_else(|| panic!("{method} {target}: no Allow header: {head}"))
                .split(',')
                .map(|m| m.trim().to_string())
                .collect();
            listed.sort();
            assert_eq!(listed, allowed, "{method} {target}: Allow");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_unknown_query_parameters() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    for (method, path) in ROUTES {
        let target = format!("{}?bogus=1", path.replace("{id}", "1"));
        let body = (*method == "POST").then_some("{}");
        let (status, error) = app.call(method, &target, body).await;
        assert_eq!(status, 400, "{method} {target}: {error}");
        let message = error["error"].as_str().unwrap_or_default();
        assert!(message.contains("bogus"), "{method} {target}: {message}");
    }
    assert_eq!(db.count("SELECT count(*) FROM works").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_add_up_to_values_are_named_for_what_they_are() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    for (body, message) in [
        (
            r#"{"add_up_to": null}"#,
            "add_up_to must be an integer, got null",
        ),
        (
            r#"{"add_up_to": "x"}"#,
            "add_up_to must be an integer, got a string",
        ),
        (
            r#"{"add_up_to": 2.5}"#,
            "add_up_to must be an integer, got 2.5",
        ),
        (
            r#"{"add_up_to": true}"#,
            "add_up_to must be an integer, got a boolean",
        ),
        (
            r#"{"add_up_to": -1}"#,
            "add_up_to must be between 0 and 4294967295, got -1",
        ),
    ] {
        for route in ["/works", "/work"] {
            let (status, error) = app.call("POST", route, Some(body)).await;
            assert_eq!(status, 400, "{route} {body}: {error}");
            assert_eq!(error["error"], message, "{route} {body}");
        }
    }
    assert_eq!(db.count("SELECT count(*) FROM works").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_cap_get_503_until_one_closes() {
    let db = TestDb::new().await;
    let config = ServerConfig {
        max_streams: 2,
        ..Default::default()
    };
    let app = TestApp::spawn_config(db.pool.clone(), config).await;
    let (first, kept) = head(&app, "GET", "/works/stream").await;
    let (second, _kept_too) = head(&app, "GET", "/works/stream").await;
    for head in [&first, &second] {
        assert_eq!(status_of(head), "200", "{head}");
    }
    let response = app.call("GET", "/works/stream", None).await;
    assert_eq!(response.0, 503, "{}", response.1);
    let message = response.1["error"].as_str().unwrap_or_default();
    assert!(message.contains("too many open event streams"), "{message}");
    let (over, _) = head(&app, "GET", "/works/stream").await;
    assert_eq!(allow_of(&over), None);
    assert!(over.contains("retry-after: 5"), "{over}");

    // A closed stream frees its slot once the server notices the connection is gone: at
    // its next write, the keep-alive comment, within 15 s.
    drop(kept);
    eventually("a freed stream slot", Duration::from_secs(20), || async {
        let (head, socket) = head(&app, "GET", "/works/stream").await;
        (status_of(&head) == "200").then_some(socket)
    })
    .await;
}
