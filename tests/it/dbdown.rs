//! `ppctl db` against a database it cannot use: a server that accepts TCP and never
//! answers (every wait bounded, `db wait --timeout` honoured), a missing database:
//! exit 4 every time. And the API's side of it: a refused login is a 503.

use super::cli::fails;
use super::helpers::{TestApp, TestDb};
use std::time::{Duration, Instant};

/// A listener that accepts connections and never answers, as a frozen server does.
async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        // Bounded: more than the test's few connections, never a busy loop.
        for _ in 0..100 {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            held.push(socket);
        }
    });
    (format!("postgres://postgres:postgres@{addr}/x"), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_commands_give_up_on_a_server_that_never_answers() {
    let (url, task) = silent_server().await;
    let started = Instant::now();
    fails(
        &["db", "wait", "--timeout", "2s", "--database-url", &url],
        Some(4),
    )
    .await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "db wait --timeout 2s took {waited:?}"
    );
    let commands: [&[&str]; 5] = [
        &["db", "status"],
        &["db", "migrate"],
        &["db", "setup"],
        &["db", "reset", "--yes"],
        &["db", "prune", "--older-than", "30d"],
    ];
    for command in commands {
        let started = Instant::now();
        let args = [command, &["--database-url", &url][..]].concat();
        let stderr = fails(&args, Some(4)).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(15), "{command:?} took {took:?}");
        assert!(stderr.contains("no answer"), "{command:?}: {stderr}");
    }
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_is_exit_4_like_db_wait() {
    let url = "postgres://postgres:postgres@127.0.0.1:5432/ppctl_missing_c4f1";
    for command in [
        &["db", "status"][..],
        &["db", "migrate"],
        &["db", "prune", "--older-than", "30d"],
    ] {
        let args = [command, &["--database-url", url][..]].concat();
        let stderr = fails(&args, Some(4)).await;
        assert!(
            stderr.contains("ppctl_missing_c4f1"),
            "{command:?}: {stderr}"
        );
    }
}

/// A login the database refuses (a wrong password) is unavailability to the API: 503
/// on every route, as `/health` says, never a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_is_a_503_not_a_500() {
    let db = TestDb::new().await;
    let wrong = db.url.replacen("postgres:postgres@", "postgres:wrong@", 1);
    let pool = ppctl::storage::pool(&wrong, 2).expect("pool");
    let app = TestApp::spawn_with(pool, None).await;
    for (method, target) in [
        ("GET", "/works"),
        ("GET", "/works/1"),
        ("POST", "/works"),
        ("GET", "/health"),
    ] {
        let (status, body) = app.call(method, target, None).await;
        assert_eq!(status, 503, "{method} {target}: {body}");
    }
}
