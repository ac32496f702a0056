//! The first write after a role change succeeds, and a retried write makes no second
//! work. Private servers: two writable ones behind one `target_session_attrs=read-write`
//! URL, the first then demoted the way a switchover leaves it (`ALTER SYSTEM SET
//! default_transaction_read_only = on` and a reload: its sessions' writes fail with
//! SQLSTATE 25006); one whose commits wait for a standby that is not there (chaos 16);
//! one SIGKILLed under `ppctl serve` (its idle pooled connections break).

use super::helpers::*;
use super::idempotency::create;
use super::private_pg::{server_dir, PrivatePostgres, PASSWORD};
use super::scale::{free_addr, terminate};
use super::traced::{logs_dir, spawn};
use ppctl::storage::actions::{self, Action, Outcome};
use std::time::{Duration, Instant};

/// A private server with a migrated database `app`.
async fn server(kind: &str) -> PrivatePostgres {
    let hba = "host all all 127.0.0.0/8 scram-sha-256\n";
    let pg = PrivatePostgres::start(server_dir(kind), "", hba);
    pg.psql("postgres", "CREATE DATABASE app");
    let url = pg.url("127.0.0.1", "app", "sslmode=disable");
    ppctl::storage::admin::setup(&url).await.expect("setup");
    pg
}

/// Two writable servers and the URL that lists them, the first one first.
async fn two_hosts() -> (PrivatePostgres, PrivatePostgres, String) {
    let (first, second) = (server("sw1").await, server("sw2").await);
    let url = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{},127.0.0.1:{}/app?sslmode=disable&target_session_attrs=read-write",
        first.port, second.port
    );
    (first, second, url)
}

/// Makes every session of `pg` refuse writes, as a demoted primary does.
fn demote(pg: &PrivatePostgres) {
    pg.psql(
        "postgres",
        "ALTER SYSTEM SET default_transaction_read_only = on",
    );
    pg.psql("postgres", "SELECT pg_reload_conf()");
    // The reload reaches each backend through the postmaster: give it a moment.
    std::thread::sleep(Duration::from_millis(300));
}

fn count(pg: &PrivatePostgres, sql: &str) -> i64 {
    pg.psql("app", sql).parse().expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_write_after_a_switchover_is_created() {
    let (old, new, url) = two_hosts().await;
    let pool = ppctl::storage::pool(&url, 4).expect("pool");
    let app = TestApp::spawn_with(pool, None).await;
    for _ in 0..3 {
        let (status, body) = app.call("POST", "/works", Some("{}")).await;
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(count(&old, "SELECT count(*) FROM works"), 3);
    demote(&old);
    // The pooled connections are all on the demoted server: the write meets 25006 and
    // is tried again on a new connection, which target_session_attrs takes to `new`.
    let started = Instant::now();
    let (status, body) = app
        .call("POST", "/works", Some(r#"{"add_up_to": 4}"#))
        .await;
    println!(
        "first POST after the switchover: {status} in {:?}",
        started.elapsed()
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        count(&new, "SELECT count(*) FROM works WHERE add_up_to = 4"),
        1
    );
    assert_eq!(count(&old, "SELECT count(*) FROM works"), 3);
    let (status, body) = app.call("POST", "/works", Some("{}")).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_cancel_after_a_switchover_is_applied() {
    let (old, new, url) = two_hosts().await;
    // The same work on both, as replication would have it.
    let insert = "INSERT INTO works (work_code, add_up_to, first_event_id) \
                  VALUES ('api-switchcncl', 3, nextval('event_log_id_seq')) RETURNING id";
    assert_eq!(
        (old.psql("app", insert), new.psql("app", insert)),
        ("1".into(), "1".into())
    );
    let pool = ppctl::storage::pool(&url, 4).expect("pool");
    let app = TestApp::spawn_with(pool, None).await;
    assert_eq!(app.call("POST", "/works", Some("{}")).await.0, 201);
    demote(&old);
    let (status, body) = app.call("POST", "/works/1/cancel", None).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &"cancelled".into()),
        "{body}"
    );
    assert_eq!(
        new.psql("app", "SELECT status FROM works WHERE id = 1"),
        "cancelled"
    );
}

/// A second attempt that finds its action done (the first may have committed before
/// its connection broke) answers it done; a first attempt says why it cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_action_finds_itself_applied() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let work = ppctl::storage::works::create_pending(&client, "api-actagain01", 3, None, None)
        .await
        .expect("work");
    let cancel = |again| actions::attempt(&client, work.id, Action::Cancel, None, again);
    assert!(matches!(cancel(false).await, Ok(Outcome::Changed(_))));
    assert!(matches!(cancel(false).await, Ok(Outcome::Refused(_))));
    match cancel(true).await {
        Ok(Outcome::Changed(w)) => assert_eq!(w.status.to_string(), "cancelled"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        db.count("SELECT count(*) FROM events WHERE variable = 'work/cancelled'")
            .await,
        1
    );
}

/// Chaos 16's case: a POST answered 503 while its commit waited for a synchronous
/// standby, and committed anyway (its wait was cancelled with the request). The
/// client's retry with the same key gets that work, not a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_503_whose_commit_went_through_gets_that_work() {
    let pg = server("pgwait").await;
    let url = pg.url("127.0.0.1", "app", "sslmode=disable");
    let app = TestApp::spawn_with(ppctl::storage::pool(&url, 4).expect("pool"), None).await;
    assert_eq!(app.call("POST", "/works", Some("{}")).await.0, 201);
    pg.psql(
        "postgres",
        "ALTER SYSTEM SET synchronous_standby_names = 'nobody'",
    );
    pg.psql("postgres", "SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(300));
    let body = Some(r#"{"add_up_to": 7}"#);
    // On a loaded machine the insert itself may run past its deadline: nothing is
    // created, and that 503 is not the case under test, so the request is made again.
    let mut key = String::new();
    for _ in 0..3 {
        key = format!("wait-{}", random_suffix());
        let first = create(app.addr, &key, body).await;
        assert_eq!(first.status, 503, "{}", first.body);
        if !first.body.to_string().contains("after its deadline") {
            break;
        }
    }
    let stored = "SELECT count(*) FROM works WHERE add_up_to = 7";
    eventually(
        "the answered-503 work committed",
        Duration::from_secs(10),
        || async { (count(&pg, stored) == 1).then_some(()) },
    )
    .await;
    pg.psql("postgres", "ALTER SYSTEM RESET synchronous_standby_names");
    pg.psql("postgres", "SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(300));
    let retry = create(app.addr, &key, body).await;
    assert_eq!(
        (retry.status, retry.replayed),
        (201, true),
        "{}",
        retry.body
    );
    let id = pg.psql("app", "SELECT id FROM works WHERE add_up_to = 7");
    assert_eq!(retry.body["id"].to_string(), id);
    assert_eq!(count(&pg, stored), 1);
}

/// A SIGKILLed primary: serve's idle pooled connections break with no statement on
/// them. The next checkout finds them closed, and `ppctl_db_role_losses_total` counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_counts_as_a_role_loss() {
    let mut pg = server("pgkill").await;
    let queue = TestQueue::new();
    let env = pg.app_env(&queue);
    let addr = free_addr();
    let serve = spawn(
        &["serve", "--addr", &addr],
        &env,
        &logs_dir().join("serve.log"),
    );
    let post = || async {
        let mut request = ppctl::rawhttp::Request::new("POST", "/works").expect("request");
        request.body = Some(b"{}".to_vec());
        ppctl::rawhttp::send(&addr, &request)
            .await
            .ok()
            .map(|r| r.status)
    };
    let status = eventually("serve answers", Duration::from_secs(30), post).await;
    assert_eq!(status, 201);
    let losses = || async { series(&scrape(&addr).await, "ppctl_db_role_losses_total") };
    assert_eq!(losses().await, Some(0.0));
    pg.kill();
    let gone = format!("127.0.0.1:{}", pg.port);
    eventually("the server gone", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(&gone)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(post().await, Some(503));
    let counted = losses().await.unwrap_or_default();
    println!("ppctl_db_role_losses_total after the kill: {counted}");
    assert!(counted >= 1.0, "{counted}");
    assert!(terminate(serve).await.success());
}
