//! Running ppctl processes with tracing on, for the trace tests (traces*.rs): their
//! environment, their JSON logs, and reading spans back from the receiver's lines.

use super::helpers::*;
use super::otlp::Receiver;
use lapin::options::{BasicGetOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// What a traced ppctl process gets: the collector, JSON logs, short export delays.
pub(super) fn traced_env(
    endpoint: String,
    db: &TestDb,
    queue: &TestQueue,
) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ("PP_LOG_FORMAT", "json".into()),
        ("DATABASE_URL", db.url.clone()),
        ("AMQP_URL", AMQP_URL.to_string()),
        ("PP_QUEUE", queue.name().to_string()),
    ]
}

/// Starts `ppctl args` with `env` only (none of the developer's settings), its stderr in
/// `log`.
pub(super) fn spawn(args: &[&str], env: &[(&str, String)], log: &Path) -> Child {
    let stderr = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_ppctl"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("start ppctl")
}

/// Runs `ppctl args` to the end; its stdout.
pub(super) async fn run(args: &[&str], env: &[(&str, String)], log: &Path) -> String {
    let out = spawn(args, env, log).wait_with_output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("ends")
        .expect("output");
    let stderr = std::fs::read_to_string(log).unwrap_or_default();
    assert!(out.status.success(), "ppctl {args:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A process's log lines, each parsed: every line must be one JSON object.
pub(super) fn json_log(log: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(log).expect("log");
    text.lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect()
}

/// The first line of a JSON log whose message contains `text`.
pub(super) fn json_log_line(log: &Path, text: &str) -> Value {
    let lines = json_log(log);
    lines
        .iter()
        .find(|l| l["message"].as_str().is_some_and(|m| m.contains(text)))
        .cloned()
        .unwrap_or_else(|| panic!("no log line with {text:?}: {lines:#?}"))
}

/// What most trace tests start with: a collector, a database, a queue, a logs folder.
pub(super) async fn traced_setup() -> (Receiver, TestDb, TestQueue, PathBuf) {
    (
        Receiver::start("ok"),
        TestDb::new().await,
        TestQueue::new(),
        logs_dir(),
    )
}

pub(super) fn logs_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ppctl-traces-{}", random_suffix()));
    std::fs::create_dir_all(&dir).expect("logs dir");
    dir
}

pub(super) fn attr<'a>(span: &'a Value, name: &str) -> &'a Value {
    &span["attributes"][name]
}

pub(super) fn named<'a>(spans: &'a [Value], service: &str, name: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|s| s["service"] == service && s["name"] == name)
        .collect()
}

/// Publishes a demand (or any body) with these headers, as another publisher would.
pub(super) async fn publish_with_headers(
    queue: &TestQueue,
    body: &[u8],
    id: &str,
    headers: &[(&str, &str)],
) {
    let (_conn, channel) = queue.channel().await;
    let mut table = FieldTable::default();
    for (k, v) in headers {
        table.insert((*k).into(), AMQPValue::LongString((*v).into()));
    }
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(id.into())
        .with_headers(table);
    queue.publish_with(&channel, body, props).await;
}

/// Takes the queue's first message as another consumer would and gives it back: the
/// broker then redelivers it (redelivered set). Its properties.
pub(super) async fn take_and_requeue(queue: &TestQueue) -> BasicProperties {
    let (_conn, channel) = queue.channel().await;
    let taken = channel
        .basic_get(queue.name().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("a message");
    let options = BasicRejectOptions { requeue: true };
    taken.delivery.acker.reject(options).await.expect("requeue");
    taken.delivery.properties.clone()
}
