//! `ppctl work create` sends one `Idempotency-Key` for every attempt of a create, and
//! sends it again after a 503 (waiting its `Retry-After`) or a connection that broke
//! off unanswered: the API answers a repeat with the work the first attempt made.

use super::helpers::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WORK: &str = r#"{"id": 7, "work_code": "api-fakefake01", "add_up_to": 3, "done": false, "status": "pending", "result": null, "created_on": 1, "updated_on": 1}"#;

/// Reads one request; its `Idempotency-Key`, if any.
async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&buf).contains("\r\n\r\n") {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the request ended early");
        buf.extend_from_slice(&chunk[..n]);
    }
    // The body is a few bytes; it came with the head or is dropped with the connection.
    let head = String::from_utf8_lossy(&buf).into_owned();
    head.lines()
        .find_map(|l| {
            l.strip_prefix("idempotency-key: ")
                .or(l.strip_prefix("Idempotency-Key: "))
        })
        .map(str::to_string)
}

fn answer(status: &str, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A fake API: a 503 with `Retry-After: 1`, then a connection closed unanswered, then
/// the work. Returns each request's key.
async fn flaky_api(listener: TcpListener) -> Vec<Option<String>> {
    let mut keys = Vec::new();
    for turn in 0..3 {
        let (mut stream, _) = listener.accept().await.expect("accept");
        keys.push(read_request(&mut stream).await);
        let reply = match turn {
            0 => answer(
                "503 Service Unavailable",
                "Retry-After: 1\r\n",
                r#"{"error":"database unavailable, try again later"}"#,
            ),
            1 => continue, // dropped: the client sees the connection close unanswered
            _ => answer("201 Created", "Location: /works/7\r\n", WORK),
        };
        stream.write_all(reply.as_bytes()).await.expect("write");
        let _ = stream.shutdown().await;
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_create_sends_one_key_and_retries_an_outage_with_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let api = tokio::spawn(flaky_api(listener));
    let started = Instant::now();
    let out = ppctl(&[
        "work",
        "create",
        "--api-url",
        &url,
        "--add-up-to",
        "3",
        "--json",
    ])
    .await;
    let took = started.elapsed();
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("\"id\": 7"), "{stdout}");
    let keys = tokio::time::timeout(Duration::from_secs(5), api)
        .await
        .expect("served")
        .expect("task");
    println!("work create: 3 attempts in {took:?}, keys {keys:?}");
    let first = keys[0].clone().expect("a key on the first attempt");
    assert!(first.starts_with("ppctl-") && first.len() > 20, "{first}");
    assert!(
        keys.iter().all(|k| k.as_deref() == Some(first.as_str())),
        "{keys:?}"
    );
    assert!(
        took >= Duration::from_secs(1),
        "Retry-After was waited: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_create_stores_its_key_with_the_work() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let out = ppctl(&[
        "work",
        "create",
        "--api-url",
        &app.url(),
        "--add-up-to",
        "3",
    ])
    .await;
    assert!(out.status.success(), "{:?}", outputs(&out));
    let keyed = "SELECT count(*) FROM idempotency_keys k JOIN works w ON w.id = k.work_id \
                 WHERE k.key LIKE 'ppctl-%' AND w.add_up_to = 3";
    assert_eq!(db.count(keyed).await, 1);
}
