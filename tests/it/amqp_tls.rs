//! `amqps://` against a private RabbitMQ whose only listener is TLS: the trust the
//! URL's RabbitMQ URI parameters ask for, failures that say why (and in bounded time
//! for `produce --count`), the consumer's reconnect loop over TLS, and no password in
//! any line. The real binary wherever the process's behaviour is what is tested.

use super::helpers::*;
use super::tls_broker::TlsBroker;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use std::process::Output;
use std::time::{Duration, Instant};

/// How long a `produce --count` that never connects tries in these tests (the hidden
/// `--give-up-after`; 60 s by default).
const GIVE_UP: &str = "4s";

fn queue_name() -> String {
    format!("tls_{}", random_suffix())
}

/// `ppctl produce --count N` to `queue` through `url`; its output and how long it took.
async fn produce(url: &str, queue: &str, count: &str) -> (Output, Duration) {
    let start = Instant::now();
    let args = [
        "produce",
        "--every",
        "0",
        "--count",
        count,
        "--queue",
        queue,
        "--amqp-url",
        url,
        "--give-up-after",
        GIVE_UP,
    ];
    let output = ppctl(&args).await;
    (output, start.elapsed())
}

/// Runs a producer that must fail: exit 4 (unreachable) within the bound plus one
/// connection attempt; returns its stderr.
async fn produce_fails(url: &str) -> String {
    let (output, took) = produce(url, &queue_name(), "1").await;
    let (_, stderr) = outputs(&output);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        took < Duration::from_secs(4 + 5 + 3),
        "took {took:?}: {stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: no connection to RabbitMQ in"),
        "{stderr}"
    );
    stderr
}

/// Messages ready in `queue` on the private node, through a client that trusts it.
async fn ready_in(broker: &TlsBroker, queue: &str) -> u32 {
    let url = broker.url("localhost", &broker.certs.client_query());
    let (conn, channel) = ppctl::amqp::connect(&url, "ppctl-tests count")
        .await
        .expect("connect to the private node");
    let passive = QueueDeclareOptions {
        passive: true,
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let q = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .expect("the producer declared the queue");
    let _ = conn.close(200, "counted".into()).await;
    q.message_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_with_the_ca_file_publishes_over_tls() {
    let broker = TlsBroker::shared(false).await;
    let (queue, ca) = (queue_name(), broker.certs.ca.display().to_string());
    let url = broker.url("127.0.0.1", &format!("cacertfile={ca}"));
    let (output, _) = produce(&url, &queue, "5").await;
    assert!(output.status.success(), "{}", outputs(&output).1);
    assert_eq!(ready_in(&broker, &queue).await, 5);
    // While a producer is connected, the broker lists its connection as TLS.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ppctl"))
        .args([
            "produce",
            "--every",
            "1s",
            "--queue",
            &queue,
            "--amqp-url",
            &url,
        ])
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start ppctl produce");
    let name = format!("ppctl-produce {queue}");
    let connection = eventually("the producer's connection", WAIT_LONG, || async {
        let listed = broker.ctl(&[
            "list_connections",
            "client_properties",
            "ssl",
            "ssl_protocol",
            "--formatter",
            "json",
            "-q",
        ]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&listed).ok()?;
        rows.into_iter().find(|row| row.to_string().contains(&name))
    })
    .await;
    let _ = child.kill().await;
    assert_eq!(connection["ssl"], true, "{connection}");
    assert!(connection["ssl_protocol"]
        .as_str()
        .unwrap_or("")
        .starts_with("tlsv1."));
}

const WAIT_LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_ca_is_refused_with_the_reason_in_bounded_time() {
    let broker = TlsBroker::shared(false).await;
    let foreign = broker.certs.foreign_ca.display().to_string();
    let stderr = produce_fails(&broker.url("127.0.0.1", &format!("cacertfile={foreign}"))).await;
    assert!(
        stderr.contains("TLS certificate") && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
    // The first attempt already says why: a warning before the final error.
    let warned = stderr
        .lines()
        .find(|l| l.contains("cannot reach RabbitMQ; retrying"));
    assert!(
        warned.is_some_and(|l| l.contains("TLS certificate")),
        "{stderr}"
    );
    // Without cacertfile, the system trust store does not know the test CA either.
    let stderr = produce_fails(&broker.url("127.0.0.1", "")).await;
    assert!(stderr.contains("TLS certificate"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_none_accepts_a_server_no_trusted_ca_signed() {
    let broker = TlsBroker::shared(false).await;
    let foreign = broker.certs.foreign_ca.display().to_string();
    let queue = queue_name();
    let url = broker.url(
        "127.0.0.1",
        &format!("cacertfile={foreign}&verify=verify_none"),
    );
    let (output, _) = produce(&url, &queue, "2").await;
    assert!(output.status.success(), "{}", outputs(&output).1);
    assert_eq!(ready_in(&broker, &queue).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_name_indication_is_the_name_verified() {
    let broker = TlsBroker::shared(false).await;
    let ca = broker.certs.ca.display().to_string();
    let wrong = broker.url(
        "127.0.0.1",
        &format!("cacertfile={ca}&server_name_indication=mq.example"),
    );
    let stderr = produce_fails(&wrong).await;
    assert!(
        stderr.contains("TLS host name") && stderr.contains("mq.example"),
        "{stderr}"
    );
    // The certificate is for localhost: right, even though the URL says 127.0.0.1.
    let queue = queue_name();
    let right = broker.url(
        "127.0.0.1",
        &format!("cacertfile={ca}&server_name_indication=localhost"),
    );
    let (output, _) = produce(&right, &queue, "1").await;
    assert!(output.status.success(), "{}", outputs(&output).1);
    assert_eq!(ready_in(&broker, &queue).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_requires_a_client_certificate_gets_one() {
    let broker = TlsBroker::shared(true).await;
    let queue = queue_name();
    let url = broker.url("localhost", &broker.certs.client_query());
    let (output, _) = produce(&url, &queue, "3").await;
    assert!(output.status.success(), "{}", outputs(&output).1);
    assert_eq!(ready_in(&broker, &queue).await, 3);
    let ca = broker.certs.ca.display().to_string();
    let stderr = produce_fails(&broker.url("localhost", &format!("cacertfile={ca}"))).await;
    assert!(stderr.contains("TLS refused by the server"), "{stderr}");
    assert!(stderr.contains("CertificateRequired"), "{stderr}");
}

/// `ppctl produce --count 1` with `SSL_CERT_FILE` (the system trust store's standard
/// override, honoured by rustls-native-certs) and no `cacertfile=`.
async fn produce_with_system_store(url: &str, queue: &str, cert_file: &str) -> Output {
    let args = [
        "produce",
        "--every",
        "0",
        "--count",
        "1",
        "--queue",
        queue,
        "--amqp-url",
        url,
    ];
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_ppctl"))
        .args(args)
        .args(["--give-up-after", GIVE_UP])
        .env_remove("AMQP_URL")
        .env("SSL_CERT_FILE", cert_file)
        .env("SSL_CERT_DIR", "/nonexistent")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("finishes")
        .expect("run ppctl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cacertfile_the_system_trust_store_is_used() {
    let broker = TlsBroker::shared(false).await;
    let (queue, url) = (queue_name(), broker.url("localhost", ""));
    let ca = broker.certs.ca.display().to_string();
    let output = produce_with_system_store(&url, &queue, &ca).await;
    assert!(output.status.success(), "{}", outputs(&output).1);
    assert_eq!(ready_in(&broker, &queue).await, 1);
    // No system store at all: Mozilla's roots, which do not know the test CA either.
    let output = produce_with_system_store(&url, &queue, "/nonexistent").await;
    let (_, stderr) = outputs(&output);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
}
