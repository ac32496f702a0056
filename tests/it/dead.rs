//! Dead letters: the consumer's reasons, `ppctl dead list|replay|purge` (the real
//! binary) and `/dead-letters`, a poison round trip, and unreadable messages.

use super::helpers::*;
use super::pipeline::{start_consumer, stop, wait_for_works, worker_opts, WAIT};
use lapin::Channel;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Runs `ppctl dead ARGS --queue Q`; returns (exit code, stdout, stderr).
pub(super) async fn dead(queue: &TestQueue, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["dead"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--amqp-url", AMQP_URL, "--queue", queue.name()]);
    let output = ppctl(&all).await;
    let (out, err) = outputs(&output);
    (output.status.code().unwrap_or(-1), out, err)
}

/// A request to an app whose token is `t0ken`, with it: (status, JSON body).
async fn with_token(app: &TestApp, method: &str, target: &str, body: Option<&str>) -> (u16, Value) {
    let mut request = ppctl::rawhttp::Request::new(method, target).expect("request");
    let token = ("Authorization".to_string(), "Bearer t0ken".to_string());
    request.headers.push(token);
    request.body = body.map(|b| b.as_bytes().to_vec());
    let response = ppctl::rawhttp::send(&app.addr.to_string(), &request)
        .await
        .expect("send");
    let json = serde_json::from_slice(&response.body).expect("JSON");
    (response.status, json)
}

pub(super) async fn list_json(queue: &TestQueue) -> Value {
    let (code, out, err) = dead(queue, &["list", "--json"]).await;
    assert_eq!(code, 0, "dead list: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("dead list --json: {e}: {out}"))
}

/// The message ids of a listing, in queue order.
pub(super) fn ids(listing: &Value) -> Vec<String> {
    listing["dead_letters"]
        .as_array()
        .expect("dead_letters")
        .iter()
        .map(|d| d["message_id"].as_str().unwrap_or("-").to_string())
        .collect()
}

fn entry<'a>(listing: &'a Value, id: &str) -> &'a Value {
    let all = listing["dead_letters"].as_array().expect("dead_letters");
    all.iter()
        .find(|d| d["message_id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {listing}"))
}

pub(super) async fn wait_counts(queue: &TestQueue, channel: &Channel, expected: (u32, u32)) {
    eventually(&format!("queue counts {expected:?}"), WAIT, || async {
        (queue.counts(channel).await == expected).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_listed_with_its_reason_then_replayed_after_the_fix() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let (_conn, channel) = queue.channel().await;
    // The "bug": the database refuses sevens, so that demand is dead-lettered with the
    // database's reason until the constraint is dropped (the fix).
    let client = db.client().await;
    let refuse = "ALTER TABLE works ADD CONSTRAINT no_sevens CHECK (add_up_to <> 7)";
    client.batch_execute(refuse).await.expect(refuse);
    queue
        .publish_raw(&channel, br#"{"add_up_to": 3}"#, Some("good-3"))
        .await;
    queue
        .publish_raw(&channel, br#"{"add_up_to": 7}"#, Some("seven"))
        .await;
    queue.publish_raw(&channel, b"not json", Some("junk")).await;
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let (trigger, task) = start_consumer(&db, &queue, worker_opts(Duration::ZERO, WAIT));
    wait_for_works(&db, "SELECT count(*) FROM works WHERE status = 'done'", 1).await;
    wait_counts(&queue, &channel, (0, 2)).await;

    // Listed with reason, time, size and preview; listing twice changes nothing.
    let listing = list_json(&queue).await;
    assert_eq!(listing["count"], 2, "{listing}");
    let seven = entry(&listing, "seven");
    assert!(
        seven["reason"]
            .as_str()
            .expect("reason")
            .contains("no_sevens"),
        "{seven}"
    );
    assert_eq!(seven["size"], 16);
    assert_eq!(seven["preview"], r#"{"add_up_to": 7}"#);
    let junk = entry(&listing, "junk");
    assert!(
        junk["reason"].as_str().expect("reason").contains("JSON"),
        "{junk}"
    );
    let at = junk["dead_at"].as_i64().expect("dead_at");
    assert!(
        (before..=before + 60).contains(&at),
        "dead_at {at}, test began {before}"
    );
    assert_eq!(
        ids(&list_json(&queue).await),
        ids(&listing),
        "a listing reordered"
    );
    wait_counts(&queue, &channel, (0, 2)).await;

    // The same over HTTP; listing and replay need the token.
    let app = TestApp::spawn_with_queue(&db, queue.name(), Some("t0ken".into())).await;
    let (status, body) = app.call("GET", "/dead-letters?limit=10", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = with_token(&app, "GET", "/dead-letters?limit=10", None).await;
    assert_eq!((status, ids(&body)), (200, ids(&listing)), "{body}");
    assert_eq!(app.call("GET", "/dead-letters?limt=1", None).await.0, 400);
    let replay = r#"{"ids": ["junk"]}"#;
    assert_eq!(
        app.call("POST", "/dead-letters/replay", Some(replay))
            .await
            .0,
        401
    );

    // The fix, then a replay by id: the demand becomes a done work.
    client
        .batch_execute("ALTER TABLE works DROP CONSTRAINT no_sevens")
        .await
        .expect("fix");
    let (code, out, err) = dead(&queue, &["replay", "--id", "seven"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("replayed 1 dead letter"), "{out}");
    let done = "SELECT count(*) FROM works WHERE message_id = 'seven' AND result = 28";
    wait_for_works(&db, done, 1).await;
    wait_counts(&queue, &channel, (0, 1)).await;
    assert_eq!(ids(&list_json(&queue).await), ["junk"]);

    // Junk replayed over HTTP comes back dead, once, with its reason.
    let (status, body) = with_token(&app, "POST", "/dead-letters/replay", Some(replay)).await;
    assert_eq!(
        (status, &body["replayed"]),
        (200, &json!(["junk"])),
        "{body}"
    );
    eventually("junk dead again", WAIT, || async {
        let listing = list_json(&queue).await;
        (ids(&listing) == ["junk"]
            && listing["dead_letters"][0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("JSON")))
        .then_some(())
    })
    .await;
    // Replaying all while the consumer sends the junk straight back ends, having sent
    // only what was there when it began (enough of it that the first comes back before
    // the last is sent).
    for i in 0..40 {
        queue
            .publish_raw(&channel, b"junk", Some(&format!("junk-{i}")))
            .await;
    }
    wait_counts(&queue, &channel, (0, 41)).await;
    let (code, out, err) = dead(&queue, &["replay", "--all", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let body: Value = serde_json::from_str(&out).expect("replay --json");
    assert_eq!(
        body["replayed"].as_array().map(Vec::len),
        Some(41),
        "{body}"
    );
    wait_counts(&queue, &channel, (0, 41)).await;
    stop(trigger, task).await;

    // Unknown ids exit 3; purge needs --yes (exit 2), then empties the queue.
    assert_eq!(dead(&queue, &["replay", "--id", "nope"]).await.0, 3);
    let (code, _, err) = dead(&queue, &["purge"]).await;
    assert_eq!((code, err.lines().count()), (2, 1), "{err}");
    wait_counts(&queue, &channel, (0, 41)).await;
    let (code, out, _) = dead(&queue, &["purge", "--yes"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("purged 41"), "{out}");
    wait_counts(&queue, &channel, (0, 0)).await;
    assert_eq!(db.count("SELECT count(*) FROM works").await, 2);
}

const HOSTILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/chaos/hostile.py");

/// Publishes straight into the dead-letter queue with pika (lapin cannot send a
/// non-UTF-8 message_id): `(message_id bytes, body)` each, confirmed.
pub(super) async fn publish_with_pika(queue: &str, messages: &[(&[u8], &[u8])]) {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let messages: Vec<Value> = messages
        .iter()
        .map(|(id, body)| json!({"id": hex(id), "body": hex(body)}))
        .collect();
    let job = json!({"mode": "publish", "url": AMQP_URL, "queue": queue, "messages": messages});
    let answer = run_python(HOSTILE, &job).await;
    assert_eq!(answer["confirmed"], messages.len(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_dead_letters_are_reported_skipped_and_purged() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let (_conn, channel) = queue.channel().await;
    let dead_queue = queue.topology.dead_queue.clone();
    publish_with_pika(
        &dead_queue,
        &[
            (b"readable-1", br#"{"add_up_to": 1}"#),
            (b"bad\xff\xfe", br#"{"add_up_to": 2}"#),
            (b"readable-2", br#"{"add_up_to": 3}"#),
        ],
    )
    .await;
    wait_counts(&queue, &channel, (0, 3)).await;

    // Listed up to the unreadable one, which is counted with its place; nothing moves.
    for _ in 0..2 {
        let listing = list_json(&queue).await;
        assert_eq!(ids(&listing), ["readable-1"], "{listing}");
        assert_eq!(listing["unreadable"], json!([{"position": 1}]), "{listing}");
        assert_eq!(
            (&listing["count"], &listing["behind_unreadable"]),
            (&json!(3), &json!(1))
        );
        wait_counts(&queue, &channel, (0, 3)).await;
    }
    let (_, text, _) = dead(&queue, &["list"]).await;
    assert!(
        text.contains("(unreadable)") && text.contains("position 1"),
        "{text}"
    );
    let app = TestApp::spawn_with_queue(&db, queue.name(), None).await;
    let (status, body) = app.call("GET", "/dead-letters", None).await;
    assert_eq!(
        (status, &body["unreadable"]),
        (200, &json!([{"position": 1}])),
        "{body}"
    );

    // Replay sends what it can read and skips the unreadable one, saying so.
    let (code, out, err) = dead(&queue, &["replay", "--all"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("replayed 1") && out.contains("unreadable"),
        "{out}"
    );
    wait_counts(&queue, &channel, (1, 2)).await;
    let (status, body) = app
        .call("POST", "/dead-letters/replay", Some(r#"{"all": true}"#))
        .await;
    assert_eq!((status, &body["replayed"]), (200, &json!([])), "{body}");
    assert_eq!(body["unreadable"], json!([{"position": 0}]), "{body}");

    // Only the unreadable ones removed: what was behind them is readable again, in order.
    publish_with_pika(
        &dead_queue,
        &[
            (b"readable-3", b"{}"),
            (b"bad\xff\x01", b"{}"),
            (b"readable-4", b"{}"),
            (b"bad\xff\x02", b"{}"),
            (b"readable-5", b"{}"),
        ],
    )
    .await;
    wait_counts(&queue, &channel, (1, 7)).await;
    let (code, out, err) = dead(&queue, &["purge", "--unreadable", "--yes"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("removed 3 unreadable"), "{out}");
    let listing = list_json(&queue).await;
    let expected = ["readable-2", "readable-3", "readable-4", "readable-5"];
    assert_eq!(ids(&listing), expected, "{listing}");
    assert_eq!(
        (&listing["unreadable"], &listing["count"]),
        (&json!([]), &json!(4))
    );

    // Purge removes it all, unreadable ones included.
    publish_with_pika(&dead_queue, &[(b"bad\xff\x03", b"{}")]).await;
    let (code, out, _) = dead(&queue, &["purge", "--yes"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("purged 5"), "{out}");
    wait_counts(&queue, &channel, (1, 0)).await;
}
