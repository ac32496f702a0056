//! `serve` and `consume` over TLS to PostgreSQL, as processes: `/health` on a good and a
//! refused certificate, and the whole pipeline over `verify-full`.

use crate::helpers::{eventually, outputs, ppctl, TestQueue, AMQP_URL};
use crate::scale::free_addr;
use crate::tls_server::{TlsPostgres, PASSWORD};
use ppctl::storage::{self, admin};
use std::time::{Duration, Instant};

/// `ppctl serve` or `consume` on `database_url`, its stderr captured; killed on drop.
fn spawn_ppctl(args: &[&str], database_url: &str, queue: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ppctl"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("AMQP_URL", AMQP_URL)
        .env("PP_QUEUE", queue)
        .env("RUST_LOG", "info,lapin=off")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start ppctl")
}

async fn get(addr: &str, method: &str, target: &str) -> Option<(u16, serde_json::Value)> {
    let request = ppctl::rawhttp::Request::new(method, target).expect("request");
    let response = ppctl::rawhttp::send(addr, &request).await.ok()?;
    Some((
        response.status,
        serde_json::from_slice(&response.body).ok()?,
    ))
}

async fn stderr_of(mut child: tokio::process::Child) -> String {
    let _ = child.start_kill();
    let out = child.wait_with_output().await.expect("ppctl output");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_tls_and_answers_503_on_a_bad_certificate() {
    let pg = TlsPostgres::start();
    let full = format!("sslmode=verify-full&sslrootcert={}", pg.certs.ca.display());
    let good = pg.url("localhost", "healthdb", &full);
    admin::setup(&good).await.expect("setup over TLS");
    let queue = TestQueue::new();

    let addr = free_addr();
    let bad_url = pg.url("127.0.0.2", "healthdb", &full);
    let serve = spawn_ppctl(&["serve", "--addr", &addr], &bad_url, queue.name());
    let start = Instant::now();
    let (status, body) = eventually("serve answers /health", Duration::from_secs(20), || {
        get(&addr, "GET", "/health")
    })
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(start.elapsed() < Duration::from_secs(20));
    let stderr = stderr_of(serve).await;
    let logged = stderr
        .lines()
        .any(|l| l.contains("certificate of 127.0.0.2") && l.contains("health check"));
    assert!(logged && !stderr.contains(PASSWORD), "{stderr}");

    let app =
        crate::helpers::TestApp::spawn_with(storage::pool(&good, 2).expect("pool"), None).await;
    let (status, body) = app.call("GET", "/health", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["tls"].as_bool(), body["tls_version"].as_str()),
        (Some(true), Some("TLSv1.3")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_over_verify_full() {
    let pg = TlsPostgres::start();
    let full = format!("sslmode=verify-full&sslrootcert={}", pg.certs.ca.display());
    let url = pg.url("localhost", "pipedb", &full);
    let setup = ppctl(&["db", "setup", "--database-url", &url]).await;
    assert!(setup.status.success(), "{:?}", outputs(&setup));
    let queue = TestQueue::new();
    let addr = free_addr();
    let serve = spawn_ppctl(&["serve", "--addr", &addr], &url, queue.name());
    let consume = spawn_ppctl(&["consume", "--sweep-every", "1s"], &url, queue.name());
    // The LISTEN sessions (new works, the pause switch) show their statement until
    // their first role check, 2 s on: both there, both encrypted.
    let listen = "SELECT count(*) FILTER (WHERE s.ssl) || ' ' || count(*) FILTER (WHERE NOT s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'ppctl' AND a.query LIKE 'LISTEN%'";
    eventually(
        "consume's LISTEN sessions, encrypted",
        Duration::from_secs(20),
        || async { (pg.psql("pipedb", listen) == "2 0").then_some(()) },
    )
    .await;
    let (status, work) = eventually("POST /works", Duration::from_secs(20), || {
        get(&addr, "POST", "/works")
    })
    .await;
    assert_eq!(status, 201, "{work}");
    let path = format!("/works/{}", work["id"]);
    eventually(
        "the work done by consume",
        Duration::from_secs(20),
        || async {
            let (_, work) = get(&addr, "GET", &path).await?;
            (work["status"] == "done").then_some(())
        },
    )
    .await;
    // Every session ppctl holds on the database: pools, LISTEN and NOTIFY.
    let sessions = pg.psql("pipedb", "SELECT string_agg(s.ssl || ' ' || left(a.query, 30), E'\\n') FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'ppctl' AND a.datname = 'pipedb'");
    let (serve_err, consume_err) = (stderr_of(serve).await, stderr_of(consume).await);
    let context = format!("{sessions}\nserve: {serve_err}\nconsume: {consume_err}");
    assert!(sessions.lines().count() >= 4, "{context}");
    assert!(
        sessions.lines().all(|l| l.starts_with("true ")),
        "{context}"
    );
    assert!(
        sessions.lines().any(|l| l.contains("pg_notify")),
        "{context}"
    );
    // One line at start says which link is encrypted.
    let line = "links database=encrypted (TLSv1.3) to 127.0.0.1:";
    assert!(
        consume_err.contains(line) && serve_err.contains(line),
        "{context}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_url_takes_the_same_parameters() {
    let queue = TestQueue::new();
    let read_url = "postgres://reader:secret@127.0.0.1:1/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem";
    let out = ppctl(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--queue",
        queue.name(),
        "--database-read-url",
        read_url,
    ])
    .await;
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("sslrootcert /nonexistent/ca.pem") && !stderr.contains("secret"),
        "{stderr}"
    );
}
