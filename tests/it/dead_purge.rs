//! `dead purge --unreadable` never drops a readable message (issue 17 item 7): when the
//! queue changes between finding the unreadable one and taking it, and the readable
//! message taken instead is answered late, it is put back; when it cannot be put back,
//! it is saved to a file.

use super::dead::{dead, ids, list_json, publish_with_pika, wait_counts};
use super::helpers::*;
use super::lateget::LateGet;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const READABLE: &[u8] = br#"{"add_up_to": 5}"#;

/// The unreadable dead letter, then a readable one behind it.
async fn two_dead_letters() -> (TestQueue, lapin::Connection, lapin::Channel) {
    let queue = TestQueue::new();
    let (connection, channel) = queue.channel().await;
    let unreadable: (&[u8], &[u8]) = (b"bad\xff\xfe", b"{}");
    let dead = queue.topology.dead_queue.clone();
    publish_with_pika(&dead, &[unreadable, (b"readable-late", READABLE)]).await;
    wait_counts(&queue, &channel, (0, 2)).await;
    (queue, connection, channel)
}

/// Another reader (pika: lapin cannot read it) holds the head of `queue` unacked until
/// the returned process is dropped.
async fn hold_the_head(queue: &str) -> Child {
    let script = "import sys, pika\n\
        c = pika.BlockingConnection(pika.URLParameters(sys.argv[1])).channel()\n\
        c.basic_get(sys.argv[2], auto_ack=False)\n\
        print('held', flush=True)\n\
        sys.stdin.read()\n";
    let mut child = Command::new(PYTHON)
        .args(["-c", script, AMQP_URL, queue])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with pika (scripts/services.sh chaos-tools)");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::time::timeout(WAIT_LINE, BufReader::new(stdout).lines().next_line()).await;
    assert!(
        matches!(line, Ok(Ok(Some(ref l))) if l == "held"),
        "{line:?}"
    );
    child
}

const WAIT_LINE: Duration = Duration::from_secs(20);

/// Starts `dead purge --unreadable --yes` through `proxy`, in `dir`; when its removing
/// get is held, another reader takes the unreadable head, then `meanwhile` runs while
/// the answer (the readable message, removed by the broker) is late. Returns stderr.
async fn purge_while_the_queue_changes(
    queue: &TestQueue,
    dir: &std::path::Path,
    meanwhile: impl std::future::Future<Output = ()>,
) -> String {
    let mut proxy = LateGet::start(Duration::from_secs(7)).await;
    let url = format!("amqp://guest:guest@{}/%2f?heartbeat=30", proxy.addr);
    let purge = Command::new(env!("CARGO_BIN_EXE_ppctl"))
        .args(["dead", "purge", "--unreadable", "--yes", "--amqp-url", &url])
        .args(["--queue", queue.name()])
        .current_dir(dir)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ppctl");
    let mut purge = purge;
    tokio::select! {
        seen = &mut proxy.seen => seen.expect("the proxy is running"),
        ended = purge.wait() => panic!("purge ended before its removing get: {ended:?}"),
        _ = tokio::time::sleep(Duration::from_secs(30)) => panic!("the removing get never came"),
    }
    let holder = hold_the_head(&queue.topology.dead_queue).await;
    let _ = proxy.go.send(());
    meanwhile.await;
    let output = tokio::time::timeout(Duration::from_secs(60), purge.wait_with_output()).await;
    let output = output.expect("purge ends").expect("purge runs");
    drop(holder);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{stderr}");
    stderr
}

/// A directory of the test's own for `ppctl`'s rescue files, removed however it ends.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("ppctl-test-{}", random_suffix()));
        std::fs::create_dir(&dir).expect("scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readable_message_taken_late_is_put_back() {
    let (queue, _connection, channel) = two_dead_letters().await;
    let scratch = Scratch::new();
    let dir = &scratch.0;
    let stderr = purge_while_the_queue_changes(&queue, dir, async {}).await;
    // The holder gone, both are there again (the readable one was not lost)...
    wait_counts(&queue, &channel, (0, 2)).await;
    assert!(stderr.contains("put back at the tail"), "{stderr}");
    // ...and a purge without interference removes the unreadable one and leaves the
    // readable one, id and all.
    let (code, _, err) = dead(&queue, &["purge", "--unreadable", "--yes"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(ids(&list_json(&queue).await), ["readable-late"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readable_message_that_cannot_be_put_back_is_saved_to_a_file() {
    let (queue, _connection, channel) = two_dead_letters().await;
    let scratch = Scratch::new();
    let dir = &scratch.0;
    // While the answer is late, the dead-letter queue goes: the put-back has nowhere to go.
    let dead_queue = queue.topology.dead_queue.clone();
    let delete = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let options = lapin::options::QueueDeleteOptions::default();
        channel
            .queue_delete(dead_queue.as_str().into(), options)
            .await
            .expect("delete the dead-letter queue");
    };
    let stderr = purge_while_the_queue_changes(&queue, dir, delete).await;
    assert!(
        stderr.contains("it is saved, body and properties, in"),
        "{stderr}"
    );
    let saved: Vec<_> = std::fs::read_dir(dir).expect("dir").flatten().collect();
    assert_eq!(saved.len(), 1, "{stderr}");
    let text = std::fs::read_to_string(saved[0].path()).expect("read");
    let record: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(record["message_id"], "readable-late", "{text}");
    assert_eq!(record["body"].as_str().map(str::as_bytes), Some(READABLE));
}
