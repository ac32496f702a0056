//! The hand-written HTTP/1.1 client: `ppctl raw-http` against the API, and
//! `rawhttp::send` against stub servers that frame their responses in every way the
//! client claims to handle, keeping the connection open so only framing can end a read.

use super::helpers::*;
use ppctl::rawhttp::{self, parse_header, Request};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const CHUNKED: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";

/// What a stub does once it has written its response.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// Keep the connection open until the client leaves: only framing can end its read.
    KeepOpen,
    /// Close the connection.
    Close,
}

/// Reads one request (head, and a body of its Content-Length) off the stream.
async fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                return request;
            }
        }
        let n = stream.read(&mut buf).await.expect("read the request");
        assert!(n > 0, "the client closed before sending a whole request");
        request.extend_from_slice(&buf[..n]);
    }
}

/// A server for one connection: reads the request, writes `parts` with `pause` between
/// them, then ends as told. The task returns the request it received.
async fn stub(parts: Vec<Vec<u8>>, pause: Duration, end: End) -> (String, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let request = read_request(&mut stream).await;
        for (i, part) in parts.iter().enumerate() {
            if i > 0 && !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            stream.write_all(part).await.expect("write");
            stream.flush().await.expect("flush");
        }
        if end == End::KeepOpen {
            // Wait for the client to leave; what it sends after the request is ignored.
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        request
    });
    (addr, task)
}

/// `send` to a stub answering `response` in one write.
async fn fetch(response: &[u8], end: End) -> anyhow::Result<rawhttp::Response> {
    let (addr, _task) = stub(vec![response.to_vec()], Duration::ZERO, end).await;
    rawhttp::send(&addr, &Request::new("GET", "/").expect("request")).await
}

fn split_at_every(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        parts.push(bytes[start..cut].to_vec());
        start = cut;
    }
    parts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_is_decoded_and_the_raw_bytes_kept() {
    let (addr, task) = stub(vec![CHUNKED.to_vec()], Duration::ZERO, End::KeepOpen).await;
    let response = rawhttp::send(&addr, &Request::new("GET", "/x?y=1").expect("request"))
        .await
        .expect("a response framed by its last chunk, not by EOF");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"hello world");
    assert_eq!(response.raw, CHUNKED);
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    let request = String::from_utf8(task.await.expect("stub")).expect("UTF-8");
    assert!(request.starts_with("GET /x?y=1 HTTP/1.1\r\n"), "{request}");
    assert!(request.contains(&format!("Host: {addr}\r\n")), "{request}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_split_across_writes_is_reassembled() {
    let response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\nA\r\n0123456789\r\n0\r\n\r\n";
    let head_len = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head")
        + 4;
    // Cuts inside the head, inside size lines, inside CRLFs and inside chunk data.
    let cuts = [
        10,
        head_len - 1,
        head_len + 1,
        head_len + 2,
        head_len + 6,
        head_len + 11,
        head_len + 14,
        head_len + 21,
    ];
    let parts = split_at_every(response, &cuts);
    let (addr, _task) = stub(parts, Duration::from_millis(20), End::KeepOpen).await;
    let got = rawhttp::send(&addr, &Request::new("GET", "/").expect("request"))
        .await
        .expect("response");
    assert_eq!(got.body, b"hello world0123456789");
    assert_eq!(got.raw, response);

    // And one byte per write.
    let parts = response.iter().map(|b| vec![*b]).collect();
    let (addr, _task) = stub(parts, Duration::from_millis(1), End::KeepOpen).await;
    let got = rawhttp::send(&addr, &Request::new("GET", "/").expect("request"))
        .await
        .expect("response");
    assert_eq!(got.body, b"hello world0123456789");
    assert_eq!(got.raw, response);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_chunks_are_read_whole() {
    let data: Vec<u8> = (0..3 * 40_000).map(|i| b'a' + (i % 26) as u8).collect();
    let mut response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for chunk in data.chunks(40_000) {
        response.extend_from_slice(format!("{:X}\r\n", chunk.len()).as_bytes());
        response.extend_from_slice(chunk);
        response.extend_from_slice(b"\r\n");
    }
    response.extend_from_slice(b"0\r\n\r\n");
    let got = fetch(&response, End::KeepOpen).await.expect("response");
    assert_eq!(got.body, data);
    assert_eq!(got.raw, response);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_after_the_last_chunk_are_consumed() {
    let response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n";
    let got = fetch(response, End::KeepOpen).await.expect("response");
    assert_eq!(got.body, b"hello");
    assert_eq!(got.raw, response);

    // The trailers arriving in pieces, after the last chunk's size line.
    let at = response
        .windows(3)
        .position(|w| w == b"0\r\n")
        .expect("last chunk")
        + 3;
    let parts = split_at_every(response, &[at, at + 5, at + 16]);
    let (addr, _task) = stub(parts, Duration::from_millis(20), End::KeepOpen).await;
    let got = rawhttp::send(&addr, &Request::new("GET", "/").expect("request"))
        .await
        .expect("response");
    assert_eq!(got.body, b"hello");
    assert_eq!(got.raw, response);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_ends_the_body_on_an_open_connection() {
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    let got = fetch(response, End::KeepOpen).await.expect("response");
    assert_eq!(got.body, b"hello");
    assert_eq!(got.raw, response);

    // Bytes past the declared length are not part of this response.
    let mut extra = response.to_vec();
    extra.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    let got = fetch(&extra, End::KeepOpen).await.expect("response");
    assert_eq!(got.body, b"hello");
    assert_eq!(got.raw, response);

    let empty = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let got = fetch(empty, End::KeepOpen).await.expect("response");
    assert_eq!((got.body.len(), got.raw.as_slice()), (0, &empty[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_without_a_body_end_at_the_head() {
    let no_content = b"HTTP/1.1 204 No Content\r\n\r\n";
    let got = fetch(no_content, End::KeepOpen).await.expect("response");
    assert_eq!((got.status, got.body.len()), (204, 0));
    assert_eq!(got.raw, no_content);

    // HEAD: Content-Length describes the GET's body, which is not sent.
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    let (addr, _task) = stub(vec![head.to_vec()], Duration::ZERO, End::KeepOpen).await;
    let got = rawhttp::send(&addr, &Request::new("HEAD", "/").expect("request"))
        .await
        .expect("response");
    assert_eq!((got.status, got.body.len()), (200, 0));
    assert_eq!(got.raw, head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_length_or_chunking_the_body_ends_at_close() {
    let response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end";
    let parts = split_at_every(response, &[30, response.len() - 4]);
    let (addr, _task) = stub(parts, Duration::from_millis(20), End::Close).await;
    let got = rawhttp::send(&addr, &Request::new("GET", "/").expect("request"))
        .await
        .expect("response");
    assert_eq!(got.body, b"until the end");
    assert_eq!(got.raw, response);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_early_is_an_error() {
    for truncated in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"",
    ] {
        let result = fetch(truncated, End::Close).await;
        let text = String::from_utf8_lossy(truncated);
        let err = result.expect_err(&format!("accepted a truncated response: {text:?}"));
        assert!(format!("{err:#}").contains("closed"), "{text:?}: {err:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_responses_are_errors() {
    for bad in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"SMTP ready\r\n\r\n",
    ] {
        let text = String::from_utf8_lossy(bad);
        fetch(bad, End::Close)
            .await
            .expect_err(&format!("accepted {text:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_named_as_such() {
    let err = rawhttp::send("127.0.0.1:1", &Request::new("GET", "/").expect("request"))
        .await
        .expect_err("port 1 answers nothing");
    assert!(format!("{err:#}").contains("nothing listens"), "{err:#}");
}

#[test]
fn requests_refuse_what_would_break_the_framing() {
    for method in ["GE T", "", "G\r\nET", "GET\n", "G:T"] {
        assert!(Request::new(method, "/").is_err(), "method {method:?}");
    }
    for target in [
        "works",
        "",
        "/a b",
        "/a\r\nX-Injected: 1",
        "/a\n",
        "/a\0",
        "http://x/",
    ] {
        assert!(Request::new("GET", target).is_err(), "target {target:?}");
    }
    let request = Request::new("get", "/works?since=6h").expect("valid");
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("GET", "/works?since=6h")
    );
}

#[test]
fn headers_refuse_injection() {
    for line in [
        "X: a\r\nb",
        "X: a\nb",
        "X: a\rb",
        "X: a\0",
        "no colon",
        ": v",
        "Bad Name: v",
        "X\r\nY: v",
    ] {
        assert!(parse_header(line).is_err(), "{line:?}");
    }
    assert_eq!(
        parse_header("X-Test: 1").ok(),
        Some(("X-Test".into(), "1".into()))
    );
    assert_eq!(
        parse_header("X-Empty:").ok(),
        Some(("X-Empty".into(), String::new()))
    );
    assert_eq!(
        parse_header("X-Url: http://a:1/b").ok(),
        Some(("X-Url".into(), "http://a:1/b".into()))
    );
}

#[test]
fn requests_go_on_the_wire_as_http_1_1() {
    let mut request = Request::new("POST", "/works").expect("valid");
    request.body = Some(b"{}".to_vec());
    request.headers.push(("X-Test".into(), "1".into()));
    request.headers.push(("host".into(), "example".into()));
    let wire = String::from_utf8(request.to_bytes("127.0.0.1:3000")).expect("UTF-8");
    assert!(wire.starts_with("POST /works HTTP/1.1\r\n"), "{wire}");
    assert!(wire.contains("\r\nContent-Length: 2\r\n"), "{wire}");
    assert!(wire.contains("\r\nX-Test: 1\r\n"), "{wire}");
    assert!(wire.ends_with("\r\n\r\n{}"), "{wire}");
    let hosts = wire
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("host:"))
        .count();
    assert_eq!(hosts, 1, "the caller's Host replaces the default: {wire}");
}

/// Splits what `raw-http` printed into its head and body.
fn head_and_body(stdout: &str) -> (&str, &str) {
    stdout
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header/body separator in {stdout:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_http_prints_the_api_response() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let addr = app.addr.to_string();
    let output = ppctl(&[
        "raw-http",
        "POST",
        "/works",
        "--data",
        r#"{"add_up_to":3}"#,
        "-H",
        "X-Test: 1",
        "--addr",
        &addr,
    ])
    .await;
    let (stdout, stderr) = outputs(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.starts_with("HTTP/1.1 201"), "{stdout}");
    let (head, body) = head_and_body(&stdout);
    let work: Value = serde_json::from_str(body.trim_end()).expect("the work as JSON");
    assert_eq!(work["add_up_to"], 3);
    let id = work["id"].as_i64().expect("id");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("location: /works/{id}")),
        "{head}"
    );

    let output = ppctl(&["raw-http", "GET", &format!("/works/{id}"), "--addr", &addr]).await;
    let (stdout, stderr) = outputs(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.starts_with("HTTP/1.1 200"), "{stdout}");
    let (_, body) = head_and_body(&stdout);
    let fetched: Value = serde_json::from_str(body.trim_end()).expect("JSON");
    assert_eq!(fetched, work);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_http_fail_turns_an_error_status_into_exit_22() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let addr = app.addr.to_string();
    let output = ppctl(&["raw-http", "GET", "/works/999999", "--addr", &addr]).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "without --fail a 404 is still a response"
    );
    assert!(outputs(&output).0.starts_with("HTTP/1.1 404"));
    let output = ppctl(&[
        "raw-http",
        "GET",
        "/works/999999",
        "--fail",
        "--addr",
        &addr,
    ])
    .await;
    assert_eq!(output.status.code(), Some(22));
    assert!(
        outputs(&output).0.starts_with("HTTP/1.1 404"),
        "the response is still printed"
    );
    let output = ppctl(&["raw-http", "GET", "/health", "--fail", "--addr", &addr]).await;
    assert_eq!(output.status.code(), Some(0), "{}", outputs(&output).1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_http_refuses_bad_headers_before_connecting() {
    for header in ["bad header", "X-A: b\r\nX-Injected: 1"] {
        // Nothing listens on port 1: the refusal must come from the header check.
        let output = ppctl(&[
            "raw-http",
            "GET",
            "/",
            "-H",
            header,
            "--addr",
            "127.0.0.1:1",
        ])
        .await;
        let (_, stderr) = outputs(&output);
        assert!(!output.status.success(), "{header:?} accepted");
        assert!(stderr.contains("header"), "{header:?}: {stderr}");
        assert!(!stderr.contains("nothing listens"), "{header:?}: {stderr}");
    }
    let output = ppctl(&["raw-http", "GET", "no-slash", "--addr", "127.0.0.1:1"]).await;
    assert!(!output.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_http_says_when_nothing_listens() {
    let output = ppctl(&["raw-http", "GET", "/health", "--addr", "127.0.0.1:1"]).await;
    let (stdout, stderr) = outputs(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("nothing listens"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_http_prints_a_chunked_response_byte_for_byte() {
    let (addr, task) = stub(vec![CHUNKED.to_vec()], Duration::ZERO, End::KeepOpen).await;
    let output = ppctl(&[
        "raw-http",
        "GET",
        "/stub",
        "-H",
        "X-Test: 1",
        "--addr",
        &addr,
    ])
    .await;
    assert!(output.status.success(), "{}", outputs(&output).1);
    assert_eq!(output.stdout, CHUNKED);
    let request = String::from_utf8(task.await.expect("stub")).expect("UTF-8");
    assert!(request.starts_with("GET /stub HTTP/1.1\r\n"), "{request}");
    assert!(request.contains("\r\nX-Test: 1\r\n"), "{request}");
}
