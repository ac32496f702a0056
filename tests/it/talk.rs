//! What the long-running processes say (issue 17 item 23): `produce` without `--count`
//! logs its rate and totals periodically, `serve --access-log` logs each request, and a
//! message lapin cannot parse gets one clear line instead of a warning per crash.

use super::dead::{publish_with_pika, wait_counts};
use super::helpers::*;
use super::scale::{free_addr, terminate};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

/// Starts `ppctl args` with `env`, its stderr piped for the test to read, and the log
/// filter an operator gets by default (RUST_LOG unset: lapin's own lines are off).
fn start(args: &[&str], env: &[(&str, String)]) -> (Child, Lines<BufReader<ChildStderr>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ppctl"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start ppctl");
    let stderr = child.stderr.take().expect("stderr");
    (child, BufReader::new(stderr).lines())
}

/// Reads lines into `seen` until `done(seen)`; panics after `timeout` with what was seen.
async fn read_until(
    lines: &mut Lines<BufReader<ChildStderr>>,
    seen: &mut Vec<String>,
    timeout: Duration,
    done: impl Fn(&[String]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(seen) {
        match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) => seen.push(line),
            other => panic!(
                "{other:?} before the expected lines; seen:\n{}",
                seen.join("\n")
            ),
        }
    }
}

fn amqp_env(queue: &TestQueue) -> Vec<(&'static str, String)> {
    vec![
        ("AMQP_URL", AMQP_URL.to_string()),
        ("PP_QUEUE", queue.name().to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_without_count_logs_its_rate_and_totals() {
    let queue = TestQueue::new();
    let mut env = amqp_env(&queue);
    env.push(("PP_REPORT_EVERY", "1s".into()));
    let (child, mut lines) = start(&["produce", "--every", "50ms"], &env);
    let mut seen = Vec::new();
    let reports = |seen: &[String]| seen.iter().filter(|l| l.contains(" producing ")).count();
    read_until(&mut lines, &mut seen, Duration::from_secs(30), |s| {
        reports(s) >= 2
    })
    .await;
    assert!(terminate(child).await.success());
    let last = seen
        .iter()
        .rfind(|l| l.contains(" producing "))
        .expect("a report");
    let confirmed: u64 = field(last, "confirmed").parse().expect("a count");
    assert!(confirmed > 0, "{last}");
    assert!(field(last, "per_second").parse::<f64>().is_ok(), "{last}");
}

/// The value of `name=VALUE` in a log line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let start = line
        .find(&format!(" {name}="))
        .map_or(line.len(), |i| i + name.len() + 2);
    line[start..].split(' ').next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_access_log_logs_each_request() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let addr = free_addr();
    let mut env = amqp_env(&queue);
    env.extend([
        ("DATABASE_URL", db.url.clone()),
        ("PP_HTTP_ADDR", addr.clone()),
        ("PP_ACCESS_LOG", "1".into()),
    ]);
    let (child, mut lines) = start(&["serve"], &env);
    let request = ppctl::rawhttp::Request::new("GET", "/nowhere?x=1").expect("request");
    let status = eventually("serve answers", Duration::from_secs(20), || async {
        ppctl::rawhttp::send(&addr, &request)
            .await
            .ok()
            .map(|r| r.status)
    })
    .await;
    assert_eq!(status, 404);
    let mut seen = Vec::new();
    read_until(&mut lines, &mut seen, Duration::from_secs(10), |s| {
        s.iter().any(|l| l.contains("/nowhere?x=1"))
    })
    .await;
    assert!(terminate(child).await.success());
    let line = seen.iter().find(|l| l.contains("/nowhere")).expect("seen");
    assert!(line.contains("ppctl::access"), "{line}");
    assert_eq!(
        (field(line, "method"), field(line, "status")),
        ("GET", "404"),
        "{line}"
    );
    assert!(field(line, "peer").starts_with("127.0.0.1:"), "{line}");
}

/// One warning says what happens to the message, the crashes until the delivery limit
/// are not each a warning, and leaving safe mode says it is out of the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_message_gets_one_clear_line() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let (_conn, channel) = queue.channel().await;
    publish_with_pika(queue.name(), &[(b"bad\xff\xfe", br#"{"add_up_to": 2}"#)]).await;
    // Safe mode lasts one prefetch window of settled deliveries: these end it.
    for i in 0..5 {
        let id = format!("good-{i}");
        queue
            .publish_raw(&channel, br#"{"add_up_to": 3}"#, Some(&id))
            .await;
    }
    let mut env = amqp_env(&queue);
    env.push(("DATABASE_URL", db.url.clone()));
    let (child, mut lines) = start(&["consume", "--prefetch", "5"], &env);
    let mut seen = Vec::new();
    read_until(&mut lines, &mut seen, Duration::from_secs(90), |s| {
        s.iter().any(|l| l.contains("safe mode over"))
    })
    .await;
    assert!(terminate(child).await.success());
    wait_counts(&queue, &channel, (0, 1)).await;
    assert_eq!(db.count("SELECT count(*) FROM works").await, 5);
    let warnings: Vec<&String> = seen.iter().filter(|l| l.contains(" WARN ")).collect();
    assert_eq!(warnings.len(), 1, "one warning:\n{}", seen.join("\n"));
    let warning = warnings[0];
    for words in [
        "unreadable message",
        "delivery limit (20)",
        ".dead",
        "dead purge --unreadable",
    ] {
        assert!(warning.contains(words), "{words:?} in {warning}");
    }
    assert!(
        !seen.iter().any(|l| l.contains("Parsing")),
        "{}",
        seen.join("\n")
    );
}
