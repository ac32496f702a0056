//! `serve --database-read-url` against a real streaming standby (private servers): a
//! promoted replica serves no read, a replica's clock and refusals stay its own, and an
//! ordinary role can check it (read_your_writes.rs: the consistency token).

use super::helpers::{eventually, series, TestApp};
use super::private_pg::PrivatePostgres;
pub use super::replica_pair::{app, pair, replica_in_use, url};
use ppctl::http::ServerConfig;
use ppctl::rawhttp;
use ppctl::storage::{self, works};
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_serves_no_read() {
    let (primary, standby) = pair("promoted", "", &[]).await;
    let app = app(&primary, &standby, Duration::from_secs(30)).await;
    replica_in_use(&app, true).await;
    // The primary keeps taking writes while its replica is promoted.
    let writer = {
        let addr = app.addr;
        tokio::spawn(async move {
            let request = rawhttp::Request::new("POST", "/works").expect("request");
            loop {
                let _ = rawhttp::send(&addr.to_string(), &request).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    standby.psql("postgres", "SELECT pg_promote()");
    // A work only the promoted copy has, far beyond the primary's ids.
    let copy = storage::pool(&url(&standby), 1).expect("pool");
    let client = copy.get().await.expect("the promoted copy");
    client
        .batch_execute("SELECT setval(pg_get_serial_sequence('works', 'id'), 900000000)")
        .await
        .expect("setval");
    let only_there = works::create_pending(&client, "api-promotedonly", 7, None, None)
        .await
        .expect("a work on the promoted copy");
    // The next monitor tick (every 0.5 s) sets it aside.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..20 {
        let (status, body) = app
            .call("GET", &format!("/works/{}", only_there.id), None)
            .await;
        assert_eq!(
            status, 404,
            "a work only the promoted copy has was served: {body}"
        );
        let (_, found) = app
            .call("GET", "/works?work_code=api-promotedonly", None)
            .await;
        assert_eq!(
            found,
            serde_json::json!([]),
            "listed from the promoted copy"
        );
        let (status, work) = app.call("POST", "/works", None).await;
        assert_eq!(status, 201, "{work}");
        let code = work["work_code"].as_str().expect("work_code");
        let (status, got) = app
            .call("GET", &format!("/works/{}", work["id"]), None)
            .await;
        assert_eq!(status, 200, "a work created on the primary: {got}");
        let (_, listed) = app
            .call("GET", &format!("/works?work_code={code}"), None)
            .await;
        assert_eq!(
            listed.as_array().map(Vec::len),
            Some(1),
            "{code} not listed: {listed}"
        );
    }
    let (_, health) = app.call("GET", "/health", None).await;
    let reason = health["replica"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        health["replica"]["in_use"] == false && reason.contains("not in recovery"),
        "{health}"
    );

    writer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_clock_is_six_seconds_behind_does_not_fail_writes() {
    const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    assert!(
        std::path::Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: `scripts/services.sh chaos-tools` installs libfaketime (make test runs it)"
    );
    let env = [
        ("LD_PRELOAD", FAKETIME),
        ("FAKETIME", "-6s"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let (primary, standby) = pair("skewed", "", &env).await;
    let skew: f64 = standby
        .psql(
            "postgres",
            &format!(
                "SELECT {} - extract(epoch FROM clock_timestamp())",
                unix_now()
            ),
        )
        .parse()
        .expect("seconds");
    assert!(
        (5.0..7.5).contains(&skew),
        "the standby's clock is {skew:.2}s behind, not 6"
    );
    let app = app(&primary, &standby, Duration::from_secs(30)).await;
    // In use: its pool has connected and measured its own clock.
    replica_in_use(&app, true).await;
    // One at a time, so that the primary's pooled connection is the one reused.
    for _ in 0..20 {
        let (status, body) = app.call("POST", "/works", None).await;
        assert_eq!(status, 201, "{body}");
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// `ppctl serve` on the pair, reading from the standby; killed on drop.
fn serve(
    primary: &PrivatePostgres,
    standby: &PrivatePostgres,
    addr: &str,
) -> tokio::process::Child {
    let log = super::traced::logs_dir().join(format!("serve-{}.log", standby.port));
    let env = [
        ("DATABASE_URL", url(primary)),
        ("PP_DATABASE_READ_URL", url(standby)),
        ("AMQP_URL", super::helpers::AMQP_URL.to_string()),
        (
            "PP_QUEUE",
            format!("replicas-{}", super::helpers::random_suffix()),
        ),
        ("RUST_LOG", "info,lapin=off".to_string()),
    ];
    super::traced::spawn(&["serve", "--addr", addr], &env, &log)
}

/// The pids of ppctl's sessions on the primary, and which of them LISTENs.
fn sessions(primary: &PrivatePostgres) -> String {
    primary.psql(
        "app",
        "SELECT string_agg(pid || ' ' || left(query, 6), ',' ORDER BY pid) FROM pg_stat_activity \
         WHERE application_name = 'ppctl' AND datname = 'app'",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_refusing_connections_leaves_the_primary_alone() {
    let (primary, standby) = pair("nohot", "hot_standby = off", &[]).await;
    let refused = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &standby.port.to_string(),
            "-U",
            "postgres",
            "-Atc",
            "SELECT 1",
        ])
        .env("PGPASSWORD", super::private_pg::PASSWORD)
        .output()
        .expect("psql");
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(
        said.contains("not accepting connections"),
        "the standby must refuse (57P03): {said}"
    );
    let addr = super::scale::free_addr();
    let _serve = serve(&primary, &standby, &addr);
    // A dashboard's event stream: serve LISTENs on the primary while it is open.
    let mut stream = eventually("serve listening", Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(&addr).await.ok()
    })
    .await;
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(b"GET /works/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .expect("open the stream");
    let listening = eventually("the LISTEN session", Duration::from_secs(20), || async {
        let now = sessions(&primary);
        now.contains("LISTEN").then_some(now)
    })
    .await;
    let listen_pid = listening
        .split(',')
        .find(|s| s.contains("LISTEN"))
        .and_then(|s| s.split(' ').next())
        .expect("a pid")
        .to_string();
    // Ten monitor ticks, each refused by the standby; two LISTEN role checks.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let metrics = super::helpers::scrape(&addr).await;
    let health = rawhttp::send(
        &addr,
        &rawhttp::Request::new("GET", "/health").expect("request"),
    )
    .await
    .expect("health");
    let health: Value = serde_json::from_slice(&health.body).expect("json");
    let after = sessions(&primary);
    let context = format!("{health}\nbefore: {listening}\nafter: {after}");
    assert_eq!(
        series(&metrics, "ppctl_db_role_losses_total"),
        Some(0.0),
        "{context}"
    );
    assert!(
        after
            .split(',')
            .any(|s| s.split(' ').next() == Some(listen_pid.as_str())),
        "the LISTEN session was reconnected: {context}"
    );
    let reason = health["replica"]["reason"].as_str().unwrap_or_default();
    assert!(
        health["replica"]["in_use"] == false && reason.contains("not accepting connections"),
        "{context}"
    );
    let (status, _) = (health["status"].as_str(), ());
    assert_eq!(status, Some("healthy"), "{context}");
}

/// The replica check needs no grant: a role that may only log in and read the tables
/// (no superuser, no pg_monitor) sees the standby as a replica of its primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_role_checks_the_replica() {
    let (primary, standby) = pair("ordinary", "", &[]).await;
    primary.psql(
        "app",
        "CREATE ROLE reader LOGIN PASSWORD 'reader-pw'; \
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader",
    );
    let as_reader =
        |pg: &PrivatePostgres| format!("postgres://reader:reader-pw@127.0.0.1:{}/app", pg.port);
    eventually(
        "the role on the standby",
        Duration::from_secs(20),
        || async {
            let sql = "SELECT count(*) FROM pg_roles WHERE rolname = 'reader'";
            (standby.psql("postgres", sql) == "1").then_some(())
        },
    )
    .await;
    let replica = storage::replica_pool(&as_reader(&standby), 2).expect("pool");
    let config = ServerConfig {
        read_replica: Some((replica, Duration::from_secs(30))),
        ..Default::default()
    };
    let pool = storage::pool(&as_reader(&primary), 2).expect("pool");
    let app = TestApp::spawn_config(pool, config).await;
    let health = replica_in_use(&app, true).await;
    assert!(health["replica"]["reason"].is_null(), "{health}");
}
