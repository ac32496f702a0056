//! Scaling out: three `serve` and three `consume` processes against one database and
//! one queue, as behind a load balancer; the totals must come out exact.

use super::helpers::*;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

fn spawn(args: &[&str], env: &[(&str, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ppctl"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start ppctl")
}

/// SIGTERM, then the exit status (each must stop gracefully, with 0).
pub(super) async fn terminate(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().expect("running").to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops in time")
        .expect("status")
}

pub(super) fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    format!("127.0.0.1:{port}")
}

async fn post(addr: &str) -> u16 {
    let mut request = ppctl::rawhttp::Request::new("POST", "/works").expect("request");
    request.body = Some(br#"{"add_up_to": 7}"#.to_vec());
    ppctl::rawhttp::send(addr, &request)
        .await
        .map_or(0, |r| r.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_and_three_consumers_share_one_database_and_queue() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let (_conn, channel) = queue.channel().await;
    let env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("AMQP_URL", AMQP_URL.to_string()),
        ("PP_QUEUE", queue.name().to_string()),
        ("PP_DB_POOL_SIZE", "4".to_string()),
    ];
    let addrs: Vec<String> = (0..3).map(|_| free_addr()).collect();
    let servers: Vec<Child> = addrs
        .iter()
        .map(|a| spawn(&["serve", "--addr", a, "--http-workers", "1"], &env))
        .collect();
    let consumers: Vec<Child> = (0..3)
        .map(|_| spawn(&["consume", "--sweep-every", "1s"], &env))
        .collect();
    for addr in &addrs {
        eventually("servers healthy", Duration::from_secs(30), || async {
            let request = ppctl::rawhttp::Request::new("GET", "/health").ok()?;
            let ok = ppctl::rawhttp::send(addr, &request).await.ok()?.status == 200;
            ok.then_some(())
        })
        .await;
    }
    let producer = spawn(&["produce", "--every", "0", "--count", "900"], &env);
    // API works round-robin over the three servers while the queue drains.
    for i in 0..90 {
        assert_eq!(post(&addrs[i % 3]).await, 201);
    }
    assert!(
        wait_for_exit(producer).await.success(),
        "the producer did not deliver its count"
    );
    let done = "SELECT count(*) FROM works WHERE status = 'done'";
    eventually("990 works done", Duration::from_secs(60), || async {
        (db.count(done).await == 990).then_some(())
    })
    .await;
    for child in servers.into_iter().chain(consumers) {
        assert!(
            terminate(child).await.success(),
            "a process did not stop gracefully"
        );
    }
    assert_eq!(db.count("SELECT count(*) FROM works").await, 990);
    assert_eq!(
        db.count("SELECT count(DISTINCT message_id) FROM works WHERE work_code LIKE 'consumer-%'")
            .await,
        900
    );
    assert_eq!(
        db.count("SELECT count(*) FROM works WHERE work_code LIKE 'api-%'")
            .await,
        90
    );
    let results =
        "SELECT count(*) FROM (SELECT work_id FROM events WHERE variable = 'compute/result' \
                   GROUP BY work_id HAVING count(*) = 1) once";
    assert_eq!(
        db.count(results).await,
        990,
        "a work was completed twice or not at all"
    );
    let wrong = "SELECT count(*) FROM works WHERE result::numeric <> add_up_to::numeric * (add_up_to + 1) / 2";
    assert_eq!(db.count(wrong).await, 0);
    assert_eq!(
        queue.counts(&channel).await,
        (0, 0),
        "every demand acknowledged"
    );
}

/// The producer exits by itself once its count is confirmed.
async fn wait_for_exit(mut child: Child) -> std::process::ExitStatus {
    tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("producer finishes")
        .expect("status")
}
