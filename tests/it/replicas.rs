//! `serve --database-read-url` against a real streaming standby (private servers): a
//! promoted replica serves no read, a replica's clock and refusals stay its own, and a
//! read that carries a write's consistency token sees that write on a lagging replica.

use super::helpers::{eventually, series, TestApp};
use super::private_pg::{server_dir, PrivatePostgres};
use ppctl::http::ServerConfig;
use ppctl::rawhttp::{self, Response};
use ppctl::storage::{self, admin, works};
use serde_json::Value;
use std::time::Duration;

/// A primary with the `app` database migrated, and a streaming standby of it.
pub async fn pair(
    kind: &str,
    standby_conf: &str,
    env: &[(&str, &str)],
) -> (PrivatePostgres, PrivatePostgres) {
    let hba = "local replication postgres trust\nhost all all 127.0.0.0/8 scram-sha-256\n";
    let primary = PrivatePostgres::start(server_dir(kind), "", hba);
    admin::setup(&url(&primary))
        .await
        .expect("db setup on the primary");
    let standby = PrivatePostgres::standby_of(&primary, kind, standby_conf, env);
    (primary, standby)
}

pub fn url(pg: &PrivatePostgres) -> String {
    pg.url("127.0.0.1", "app", "connect_timeout=5")
}

/// The API in this process, reading from `standby` within `max_lag`.
async fn app(primary: &PrivatePostgres, standby: &PrivatePostgres, max_lag: Duration) -> TestApp {
    let replica = storage::replica_pool(&url(standby), 4).expect("replica pool");
    let config = ServerConfig {
        read_replica: Some((replica, max_lag)),
        ..Default::default()
    };
    TestApp::spawn_config(storage::pool(&url(primary), 4).expect("pool"), config).await
}

/// One request with `headers`; the whole response.
pub async fn send(app: &TestApp, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
    let mut request = rawhttp::Request::new(method, target).expect("request");
    for (name, value) in headers {
        request.headers.push((name.to_string(), value.to_string()));
    }
    rawhttp::send(&app.addr.to_string(), &request)
        .await
        .expect("response")
}

pub fn json(response: &Response) -> Value {
    serde_json::from_slice(&response.body).expect("a JSON body")
}

async fn replica_in_use(app: &TestApp, wanted: bool) -> Value {
    eventually(
        "the replica's state in /health",
        Duration::from_secs(30),
        || async {
            let (_, health) = app.call("GET", "/health", None).await;
            (health["replica"]["in_use"] == wanted).then_some(health)
        },
    )
    .await
}

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
    let env = [
        (
            "LD_PRELOAD",
            "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        ),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_with_the_token_sees_its_write_on_a_paused_replica() {
    let (primary, standby) = pair("paused", "", &[]).await;
    let app = app(&primary, &standby, Duration::from_secs(60)).await;
    replica_in_use(&app, true).await;
    let (_, before) = app.call("POST", "/works", None).await;
    let code = before["work_code"].as_str().expect("code").to_string();
    eventually(
        "the standby has the first work",
        Duration::from_secs(20),
        || async {
            let sql = format!("SELECT count(*) FROM works WHERE work_code = '{code}'");
            (standby.psql("app", &sql) == "1").then_some(())
        },
    )
    .await;
    standby.psql("postgres", "SELECT pg_wal_replay_pause()");
    eventually("replay paused", Duration::from_secs(20), || async {
        (standby.psql("postgres", "SELECT pg_get_wal_replay_pause_state()") == "paused")
            .then_some(())
    })
    .await;

    let created = send(&app, "POST", "/works", &[]).await;
    assert_eq!(created.status, 201);
    let token = created
        .header("consistency-token")
        .expect("a Consistency-Token")
        .to_string();
    let behind = format!("SELECT pg_last_wal_replay_lsn() < '{token}'::pg_lsn");
    assert_eq!(
        standby.psql("postgres", &behind),
        "t",
        "the standby must lag the write"
    );
    let code = json(&created)["work_code"]
        .as_str()
        .expect("code")
        .to_string();
    let search = format!("/works?work_code={code}");
    let with = json(&send(&app, "GET", &search, &[("Consistency-Token", &token)]).await);
    assert_eq!(
        with.as_array().map(Vec::len),
        Some(1),
        "with the token: {with}"
    );
    let without = json(&send(&app, "GET", &search, &[]).await);
    assert_eq!(
        without,
        serde_json::json!([]),
        "the paused replica answers without it"
    );

    // A cancel, then a read of the work the replica still has as pending.
    let path = format!("/works/{}", before["id"]);
    let cancelled = send(&app, "POST", &format!("{path}/cancel"), &[]).await;
    assert_eq!(
        cancelled.status,
        200,
        "{}",
        String::from_utf8_lossy(&cancelled.body)
    );
    let token = cancelled
        .header("consistency-token")
        .expect("a token")
        .to_string();
    let read = json(&send(&app, "GET", &path, &[("Consistency-Token", &token)]).await);
    assert_eq!(read["status"], "cancelled", "{read}");
    let stale = json(&send(&app, "GET", &path, &[]).await);
    assert_eq!(
        stale["status"], "pending",
        "the paused replica answers without it: {stale}"
    );

    let bad = send(&app, "GET", &path, &[("Consistency-Token", "yesterday")]).await;
    assert_eq!(bad.status, 400);
    assert!(json(&bad)["error"]
        .as_str()
        .is_some_and(|e| e.contains("Consistency-Token")));
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

/// `ppctl work` prints a write's token and sends it back: a search after a create, on a
/// paused replica, finds the work only with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ppctl_work_carries_the_token() {
    use super::helpers::{outputs, ppctl};
    let (primary, standby) = pair("worktoken", "", &[]).await;
    let app = app(&primary, &standby, Duration::from_secs(60)).await;
    replica_in_use(&app, true).await;
    standby.psql("postgres", "SELECT pg_wal_replay_pause()");
    let api = app.url();
    let created = ppctl(&["work", "create", "--api-url", &api, "--json"]).await;
    let (stdout, stderr) = outputs(&created);
    assert!(created.status.success(), "{stderr}");
    let work: Value = serde_json::from_str(&stdout).expect("the work");
    let token = stderr
        .lines()
        .find_map(|l| l.strip_prefix("consistency token: "))
        .unwrap_or_else(|| panic!("no token on stderr: {stderr}"))
        .to_string();
    let code = work["work_code"].as_str().expect("code");
    let search = [
        "work",
        "search",
        "--work-code",
        code,
        "--api-url",
        &api,
        "--json",
    ];
    let with = ppctl(&[&search[..], &["--consistency-token", &token]].concat()).await;
    let found: Value = serde_json::from_slice(&with.stdout).expect("JSON");
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    let without = ppctl(&search).await;
    let found: Value = serde_json::from_slice(&without.stdout).expect("JSON");
    assert_eq!(found, serde_json::json!([]), "the paused replica answers");
    let bad = ppctl(&[
        "work",
        "get",
        "1",
        "--api-url",
        &api,
        "--consistency-token",
        "0/xyz",
    ])
    .await;
    assert_eq!(bad.status.code(), Some(2), "{:?}", outputs(&bad));
}
