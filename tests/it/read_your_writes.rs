//! Read your writes: a write's `Consistency-Token`, sent back with a read, keeps a
//! paused replica (`pg_wal_replay_pause()` on a private standby) from answering it.

use super::helpers::{eventually, TestApp};
use super::replicas::{app, pair, replica_in_use};
use ppctl::rawhttp::{self, Response};
use serde_json::Value;
use std::time::Duration;

/// One request with `headers`; the whole response.
pub async fn send(app: &TestApp, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
    let mut request = rawhttp::Request::new(method, target).expect("request");
    for (name, value) in headers {
        request.headers.push((name.to_string(), value.to_string()));
    }
    rawhttp::send(&app.addr.to_string(), &request)
        .await
        .expect("response")
}

pub fn json(response: &Response) -> Value {
    serde_json::from_slice(&response.body).expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_with_the_token_sees_its_write_on_a_paused_replica() {
    let (primary, standby) = pair("paused", "", &[]).await;
    let app = app(&primary, &standby, Duration::from_secs(60)).await;
    replica_in_use(&app, true).await;
    let (_, before) = app.call("POST", "/works", None).await;
    let code = before["work_code"].as_str().expect("code").to_string();
    eventually(
        "the standby has the first work",
        Duration::from_secs(20),
        || async {
            let sql = format!("SELECT count(*) FROM works WHERE work_code = '{code}'");
            (standby.psql("app", &sql) == "1").then_some(())
        },
    )
    .await;
    standby.psql("postgres", "SELECT pg_wal_replay_pause()");
    eventually("replay paused", Duration::from_secs(20), || async {
        (standby.psql("postgres", "SELECT pg_get_wal_replay_pause_state()") == "paused")
            .then_some(())
    })
    .await;

    let created = send(&app, "POST", "/works", &[]).await;
    assert_eq!(created.status, 201);
    let token = created
        .header("consistency-token")
        .expect("a Consistency-Token")
        .to_string();
    let behind = format!("SELECT pg_last_wal_replay_lsn() < '{token}'::pg_lsn");
    assert_eq!(
        standby.psql("postgres", &behind),
        "t",
        "the standby must lag the write"
    );
    let code = json(&created)["work_code"]
        .as_str()
        .expect("code")
        .to_string();
    let search = format!("/works?work_code={code}");
    let with = json(&send(&app, "GET", &search, &[("Consistency-Token", &token)]).await);
    assert_eq!(
        with.as_array().map(Vec::len),
        Some(1),
        "with the token: {with}"
    );
    let without = json(&send(&app, "GET", &search, &[]).await);
    assert_eq!(
        without,
        serde_json::json!([]),
        "the paused replica answers without it"
    );

    // A cancel, then a read of the work the replica still has as pending.
    let path = format!("/works/{}", before["id"]);
    let cancelled = send(&app, "POST", &format!("{path}/cancel"), &[]).await;
    assert_eq!(
        cancelled.status,
        200,
        "{}",
        String::from_utf8_lossy(&cancelled.body)
    );
    let token = cancelled
        .header("consistency-token")
        .expect("a token")
        .to_string();
    let read = json(&send(&app, "GET", &path, &[("Consistency-Token", &token)]).await);
    assert_eq!(read["status"], "cancelled", "{read}");
    let stale = json(&send(&app, "GET", &path, &[]).await);
    assert_eq!(
        stale["status"], "pending",
        "the paused replica answers without it: {stale}"
    );

    let bad = send(&app, "GET", &path, &[("Consistency-Token", "yesterday")]).await;
    assert_eq!(bad.status, 400);
    assert!(json(&bad)["error"]
        .as_str()
        .is_some_and(|e| e.contains("Consistency-Token")));
}

/// `ppctl work` prints a write's token and sends it back: a search after a create, on a
/// paused replica, finds the work only with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ppctl_work_carries_the_token() {
    use super::helpers::{outputs, ppctl};
    let (primary, standby) = pair("worktoken", "", &[]).await;
    let app = app(&primary, &standby, Duration::from_secs(60)).await;
    replica_in_use(&app, true).await;
    standby.psql("postgres", "SELECT pg_wal_replay_pause()");
    let api = app.url();
    let created = ppctl(&["work", "create", "--api-url", &api, "--json"]).await;
    let (stdout, stderr) = outputs(&created);
    assert!(created.status.success(), "{stderr}");
    let work: Value = serde_json::from_str(&stdout).expect("the work");
    let token = stderr
        .lines()
        .find_map(|l| l.strip_prefix("consistency token: "))
        .unwrap_or_else(|| panic!("no token on stderr: {stderr}"))
        .to_string();
    let code = work["work_code"].as_str().expect("code");
    let search = [
        "work",
        "search",
        "--work-code",
        code,
        "--api-url",
        &api,
        "--json",
    ];
    let with = ppctl(&[&search[..], &["--consistency-token", &token]].concat()).await;
    let found: Value = serde_json::from_slice(&with.stdout).expect("JSON");
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    let without = ppctl(&search).await;
    let found: Value = serde_json::from_slice(&without.stdout).expect("JSON");
    assert_eq!(found, serde_json::json!([]), "the paused replica answers");
    let bad = ppctl(&[
        "work",
        "get",
        "1",
        "--api-url",
        &api,
        "--consistency-token",
        "0/xyz",
    ])
    .await;
    assert_eq!(bad.status.code(), Some(2), "{:?}", outputs(&bad));
}

/// The dashboard re-reads on a change event: the event carries the primary's position
/// past the change, and a re-read with it finds the change on a paused replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_event_carries_a_token_past_the_change() {
    use tokio::io::AsyncWriteExt;
    let (primary, standby) = pair("events", "", &[]).await;
    let app = app(&primary, &standby, Duration::from_secs(60)).await;
    replica_in_use(&app, true).await;
    standby.psql("postgres", "SELECT pg_wal_replay_pause()");
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let request = "GET /works/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
    stream
        .write_all(request.as_bytes())
        .await
        .expect("open the stream");
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, ": connected").await;
    // The stream's LISTEN starts with its first subscriber: let it subscribe.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let created = json(&send(&app, "POST", "/works", &[]).await);
    read_until(&mut stream, &mut seen, "event: work").await;
    read_until(&mut stream, &mut seen, "}\n").await;
    let data = seen
        .lines()
        .skip_while(|l| *l != "event: work")
        .find_map(|l| l.strip_prefix("data: "))
        .expect("the work event's data");
    let event: Value = serde_json::from_str(data).expect("JSON data");
    let token = event["consistency_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in the change event: {data}"));
    let code = created["work_code"].as_str().expect("code");
    let search = format!("/works?work_code={code}");
    let found = json(&send(&app, "GET", &search, &[("Consistency-Token", token)]).await);
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
}

/// Reads the stream into `seen` until it holds `needle` (20 s at most).
async fn read_until(stream: &mut tokio::net::TcpStream, seen: &mut String, needle: &str) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let within = tokio::time::timeout(Duration::from_secs(20), async {
        while !seen.contains(needle) {
            let n = stream.read(&mut buf).await.expect("read the stream");
            assert!(n > 0, "the stream ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    if within.await.is_err() {
        panic!("no {needle:?} in: {seen}");
    }
}
