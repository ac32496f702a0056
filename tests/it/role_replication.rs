//! What an ordinary role is told about replication it cannot see. A private primary has
//! a synchronous standby (`pg_receivewal --synchronous`, a physical replication client
//! that flushes at once) and `synchronous_standby_names = '*'`. Without pg_monitor the
//! role sees the walsender row with NULL state and sync state: that is "unknown", never
//! "no standby" (a 503 would take every API instance out of a load balancer).

use super::ordinary_role::{run, OrdinaryRole};
use super::private_pg::{server_dir, PrivatePostgres, PASSWORD, PG_BIN};
use super::scale::{free_addr, terminate};
use super::traced::{logs_dir, spawn};
use std::time::Duration;

/// A primary whose commits wait for a synchronous standby that is streaming.
fn primary_with_a_sync_standby() -> PrivatePostgres {
    let hba = "local replication postgres trust\nhost all all 127.0.0.0/8 scram-sha-256\n";
    let mut pg = PrivatePostgres::start(server_dir("pgsync"), "wal_level = replica", hba);
    let wal = pg.owned_dir("standby-wal");
    let socket = pg.dir.join("sock").display().to_string();
    let port = pg.port.to_string();
    let wal = wal.display().to_string();
    let args = [
        "-h",
        &socket,
        "-p",
        &port,
        "-U",
        "postgres",
        "-D",
        &wal,
        "--synchronous",
        "-n",
    ];
    pg.beside("standby", &format!("{PG_BIN}/pg_receivewal"), &args);
    pg.psql(
        "postgres",
        "ALTER SYSTEM SET synchronous_standby_names = '*'",
    );
    pg.psql("postgres", "SELECT pg_reload_conf()");
    let sync = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = 'sync'";
    let start = std::time::Instant::now();
    while pg.psql("postgres", sync) != "1" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no sync standby: {}",
            pg.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    pg
}

/// `GET /health` of a `ppctl serve` started with `env`: (status, body).
async fn health(env: &[(&str, String)]) -> (u16, serde_json::Value) {
    let addr = free_addr();
    let serve = spawn(
        &["serve", "--addr", &addr],
        env,
        &logs_dir().join("serve.log"),
    );
    let url = format!("http://{addr}/health");
    let answer = super::helpers::eventually("serve answers", Duration::from_secs(30), || async {
        reqwest::get(&url).await.ok()
    })
    .await;
    let status = answer.status().as_u16();
    let body = answer.json().await.expect("JSON");
    assert!(terminate(serve).await.success());
    (status, body)
}

/// Starts `consume` with `args`, waits for its replication line at start; that line.
async fn startup_line(env: &[(&str, String)], args: &[&str]) -> String {
    let log = logs_dir().join("consume.log");
    let consume = spawn(args, env, &log);
    let line =
        super::helpers::eventually("the replication line", Duration::from_secs(30), || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.lines()
                .find(|l| l.contains("database replication"))
                .map(str::to_string)
        })
        .await;
    assert!(terminate(consume).await.success());
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pg_monitor_a_sync_standby_is_unknown_not_missing() {
    let pg = primary_with_a_sync_standby();
    let server = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}", pg.port);
    let role = OrdinaryRole::on(&server, &format!("127.0.0.1:{}", pg.port)).await;
    let queue = super::helpers::TestQueue::new();
    let env = role.env(&queue);
    let (code, _, err) = run(&env, &["db", "setup"]).await;
    assert_eq!(code, 0, "db setup: {err}");
    // Healthy, and honest about what it cannot see.
    let (status, body) = health(&env).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replication"], "unknown (needs pg_monitor)", "{body}");
    let (code, out, err) = run(&env, &["db", "status"]).await;
    assert_eq!(code, 0, "{err}");
    println!("under a role without pg_monitor, /health: {status} {body}\ndb status:\n{out}");
    assert!(
        out.contains("replication: unknown (needs pg_monitor)"),
        "{out}"
    );
    assert!(!out.contains("every commit waits"), "{out}");
    let line = startup_line(&env, &["consume"]).await;
    assert!(
        line.contains("WARN") && line.contains("unknown (needs pg_monitor)"),
        "{line}"
    );
    // With the grant, the same checks see the standby: synchronous, and no field.
    role.admin(&format!("GRANT pg_monitor TO {}", role.name))
        .await;
    let (status, body) = health(&env).await;
    assert_eq!((status, body.get("replication")), (200, None), "{body}");
    let (_, out, _) = run(&env, &["db", "status"]).await;
    assert!(out.contains("replication: synchronous"), "{out}");
    let line = startup_line(&env, &["consume", "--ack-after", "standby"]).await;
    assert!(line.contains("INFO"), "nothing will stall: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_will_stall_is_one_warning_at_start() {
    // The shared server has no standby: acknowledgements after a standby would stall.
    let db = super::helpers::TestDb::new().await;
    let queue = super::helpers::TestQueue::new();
    let env = [
        ("DATABASE_URL", db.url.clone()),
        ("AMQP_URL", super::helpers::AMQP_URL.to_string()),
        ("PP_QUEUE", queue.name().to_string()),
    ];
    let line = startup_line(&env, &["consume", "--ack-after", "standby"]).await;
    assert!(
        line.contains("WARN") && line.contains("acknowledgements will stall"),
        "{line}"
    );
    let plain = startup_line(&env, &["consume"]).await;
    assert!(
        plain.contains("INFO") && plain.contains("no standby"),
        "{plain}"
    );
}

/// No host of the URL takes writes (a switchover's window): `/health` says `read-only`,
/// with the reason, not `unreachable`. The driver's words for it sit deep in the error
/// chain ("…does not allow writes").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_read_only_when_no_host_takes_writes() {
    let hba = "host all all 127.0.0.0/8 scram-sha-256\n";
    let pg = PrivatePostgres::start(server_dir("pgro"), "", hba);
    pg.psql("postgres", "CREATE DATABASE app");
    let url = pg.url(
        "127.0.0.1",
        "app",
        "sslmode=disable&target_session_attrs=read-write",
    );
    ppctl::storage::admin::setup(&url).await.expect("setup");
    pg.psql(
        "postgres",
        "ALTER SYSTEM SET default_transaction_read_only = on",
    );
    pg.psql("postgres", "SELECT pg_reload_conf()");
    let pool = ppctl::storage::pool(&url, 2).expect("pool");
    let app = super::helpers::TestApp::spawn_with(pool, None).await;
    let (status, body) = app.call("GET", "/health", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"], "read-only", "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("does not allow writes"), "{body}");
    assert_eq!(body["host"], format!("127.0.0.1:{}", pg.port), "{body}");
}
