//! `amqps://` in the long-running loops: the consumer's reconnect loop connects with
//! the URL's TLS, and it and serve's queue-depth watcher say why when TLS fails; no
//! password in any line, while the TLS file paths may show; bad TLS settings stop a
//! command at start.

use super::cli::fails;
use super::helpers::*;
use super::pipeline::{start_consumer_with, stop, wait_for_works, worker_opts};
use super::tls_broker::TlsBroker;
use ppctl::cli::{AmqpOpts, QueueType};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_over_amqps_turns_demands_into_done_works() {
    let (broker, db) = (TlsBroker::shared(false).await, TestDb::new().await);
    let queue = format!("tls_{}", random_suffix());
    let ca = broker.certs.ca.display().to_string();
    let url = broker.url("localhost", &format!("cacertfile={ca}"));
    let amqp = AmqpOpts {
        amqp_url: url.clone(),
        queue: queue.clone(),
        queue_type: Some(QueueType::Quorum),
    };
    let opts = worker_opts(Duration::ZERO, Duration::from_secs(5));
    let (trigger, task) = start_consumer_with(&db, amqp, opts);
    let args = [
        "produce",
        "--every",
        "0",
        "--count",
        "3",
        "--queue",
        &queue,
        "--amqp-url",
        &url,
    ];
    let output = ppctl(&args).await;
    assert!(output.status.success(), "{}", outputs(&output).1);
    wait_for_works(&db, "SELECT count(*) FROM works WHERE status = 'done'", 3).await;
    stop(trigger, task).await;
}

/// Starts `ppctl ARGS` and waits for a stderr line containing every one of `wanted`;
/// returns it. The process must still be running then (it retries, never exits).
async fn logged_line(args: &[&str], wanted: &[&str]) -> String {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ppctl"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start ppctl");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if wanted.iter().all(|w| line.contains(w)) {
                return Some(line);
            }
        }
        None
    })
    .await;
    let still_running = child.try_wait().expect("status").is_none();
    let _ = child.kill().await;
    let line = found.ok().flatten();
    let line = line.unwrap_or_else(|| panic!("ppctl {args:?} never logged {wanted:?}"));
    assert!(still_running, "ppctl {args:?} exited: {line}");
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_and_serve_say_why_tls_fails_and_keep_trying() {
    let (broker, db) = (TlsBroker::shared(false).await, TestDb::new().await);
    let foreign = broker.certs.foreign_ca.display().to_string();
    let url = broker.url("127.0.0.1", &format!("cacertfile={foreign}"));
    let consume = ["consume", "--database-url", &db.url, "--amqp-url", &url];
    let line = logged_line(&consume, &["AMQP consumer lost", "TLS certificate"]).await;
    assert!(line.contains("UnknownIssuer"), "{line}");
    let serve = [
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--database-url",
        &db.url,
        "--amqp-url",
        &url,
    ];
    let line = logged_line(&serve, &["queue depths", "TLS certificate"]).await;
    assert!(line.contains("UnknownIssuer"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqps_password_never_shows_but_the_key_path_may() {
    let broker = TlsBroker::shared(false).await;
    let c = &broker.certs;
    let key = c.client_key.display().to_string();
    let files = |ca: &std::path::Path| {
        let cert = c.client_cert.display();
        format!("cacertfile={}&certfile={cert}&keyfile={key}", ca.display())
    };
    let port = broker.port;
    // TLS fails (a foreign CA); TLS works but the password is wrong.
    for ca in [&c.foreign_ca, &c.ca] {
        let url = format!("amqps://guest:hunter2@127.0.0.1:{port}/%2f?{}", files(ca));
        let args = [
            "produce",
            "--count",
            "1",
            "--queue",
            "tls_secret",
            "--amqp-url",
            &url,
        ];
        let stderr = fails(&[&args[..], &["--give-up-after", "3s"]].concat(), Some(4)).await;
        assert!(
            !stderr.contains("hunter2") && !stderr.contains("ter2"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&key) && stderr.contains("guest:***@"),
            "{stderr}"
        );
    }
    // A key file that is not there: one line at start, exit 2, the path named.
    let missing = format!("{key}.missing");
    let url = format!(
        "amqps://guest:hunter2@127.0.0.1:{port}/%2f?certfile={}&keyfile={missing}",
        c.client_cert.display()
    );
    for command in [&["produce", "--count", "1"][..], &["dead", "list"]] {
        let stderr = fails(&[command, &["--amqp-url", &url]].concat(), Some(2)).await;
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("cannot read keyfile={missing}")),
            "{stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}
