//! Following the primary and reading from replicas, on the shared server: a pooled
//! connection is made to look like one on a demoted primary with a session-level
//! `default_transaction_read_only` (its writes then fail with SQLSTATE 25006, exactly
//! as on a primary demoted with `ALTER SYSTEM`); a replica is a private streaming
//! standby (replicas.rs).
//! The real thing (a primary killed or switched over, a standby promoted, a replica
//! killed) is `make chaos`, scenarios 12 to 15.

use super::helpers::*;
use super::pipeline::{produce, start_consumer, stop, wait_for_works, worker_opts};
use ppctl::cli::AckAfter;
use ppctl::http::ServerConfig;
use ppctl::storage;
use std::collections::HashSet;
use std::time::Duration;

/// Checks out `n` connections at once, makes each read-only for its session, returns
/// them to the pool and gives their backend pids.
async fn demote_pooled_connections(pool: &storage::PgPool, n: usize) -> HashSet<i32> {
    let mut held = Vec::new();
    let mut pids = HashSet::new();
    for _ in 0..n {
        let client = pool.get().await.expect("connection");
        client
            .batch_execute("SET default_transaction_read_only = on")
            .await
            .expect("SET");
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("pid")
            .get(0);
        pids.insert(pid);
        held.push(client);
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_leave_a_read_only_server_and_every_older_connection_behind() {
    let db = TestDb::new().await;
    let pool = storage::pool(&db.url, 4).expect("pool");
    let demoted = demote_pooled_connections(&pool, 4).await;
    let app = TestApp::spawn_with(pool.clone(), None).await;

    // The first write meets the read-only server: an outage (503), never a 500.
    let (status, body) = app
        .call("POST", "/works", Some(r#"{"add_up_to": 3}"#))
        .await;
    assert!(
        status == 503 || status == 201,
        "a write on a read-only server is a 503: {status} {body}"
    );
    // Every later one goes to a new connection: the other three demoted ones are gone.
    for _ in 0..4 {
        let (status, body) = app
            .call("POST", "/works", Some(r#"{"add_up_to": 3}"#))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let mut fresh = Vec::new();
    for _ in 0..4 {
        fresh.push(pool.get().await.expect("connection"));
    }
    for client in &fresh {
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("pid")
            .get(0);
        assert!(
            !demoted.contains(&pid),
            "pooled connection {pid} outlived its server's role"
        );
    }
    drop(fresh);
    let (status, health) = app.call("GET", "/health", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["writable"], true);
    assert_eq!(health["host"], "127.0.0.1:5432");
}

/// Serve gives each HTTP worker a pool of its own (`PgPool::sibling`): a role loss
/// charged to one of them alone still sends every sibling's older connections away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_loss_met_by_one_worker_pool_sends_its_siblings_connections_away() {
    let db = TestDb::new().await;
    let pool = storage::pool(&db.url, 2).expect("pool");
    let sibling = pool.sibling(2).expect("sibling pool");
    let pid = |client: storage::Client| async move {
        let row = client.query_one("SELECT pg_backend_pid()", &[]).await;
        row.expect("pid").get::<_, i32>(0)
    };
    let before = pid(sibling.get().await.expect("connection")).await;
    demote_pooled_connections(&pool, 1).await;
    let write = pool.scoped(async {
        let client = pool.get().await?;
        storage::pipeline::set(&client, false).await
    });
    assert!(
        matches!(write.await, Err(storage::DbError::Unavailable(_))),
        "a write on the read-only connection is an outage"
    );
    let after = pid(sibling.get().await.expect("connection")).await;
    assert_ne!(
        before, after,
        "the sibling's connection outlived the role loss"
    );
}

/// An idle connection opened before a role loss is closed even when nothing checks it
/// out again: an HTTP worker that gets no more requests kept two on the demoted primary
/// through a switchover (chaos scenario 13).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_before_a_role_loss_close_without_a_checkout() {
    let db = TestDb::new().await;
    let pool = storage::pool(&db.url, 2).expect("pool");
    let demoted = demote_pooled_connections(&pool, 2).await;
    let pids: Vec<String> = demoted.iter().map(i32::to_string).collect();
    let alive = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE pid IN ({})",
        pids.join(",")
    );
    assert_eq!(db.count(&alive).await, 2, "both demoted sessions are open");
    pool.role().lost("test: the server was demoted");
    eventually(
        "the idle sessions closed",
        Duration::from_secs(5),
        || async { (db.count(&alive).await == 0).then_some(()) },
    )
    .await;
    assert_eq!(pool.status().size, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_read_only_and_then_finds_a_writable_connection() {
    let db = TestDb::new().await;
    let pool = storage::pool(&db.url, 1).expect("pool");
    demote_pooled_connections(&pool, 1).await;
    let app = TestApp::spawn_with(pool, None).await;
    let (status, health) = app.call("GET", "/health", None).await;
    // Another test may have discarded the pool's connections meanwhile: then healthy.
    if status == 503 {
        assert_eq!(health["status"], "unhealthy", "{health}");
        assert_eq!(health["database"], "read-only", "{health}");
        assert_eq!(health["writable"], false, "{health}");
        assert_eq!(health["host"], "127.0.0.1:5432", "{health}");
    }
    let (status, health) = app.call("GET", "/health", None).await;
    assert_eq!(
        status, 200,
        "the pool reconnects after a read-only check: {health}"
    );
    assert_eq!(health["database"], "connected");
}

/// A real standby whose replay is paused: it lacks a work created since, and reads
/// that reach it are seen to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_use_the_replica_and_a_work_it_lacks_is_read_from_the_primary() {
    let (primary, standby) = super::replicas::pair("lacks", "", &[]).await;
    let replica = storage::replica_pool(&super::replicas::url(&standby), 2).expect("pool");
    let config = ServerConfig {
        read_replica: Some((replica, Duration::from_secs(60))),
        ..Default::default()
    };
    let pool = storage::pool(&super::replicas::url(&primary), 2).expect("pool");
    let app = TestApp::spawn_config(pool, config).await;
    eventually("the replica in use", Duration::from_secs(10), || async {
        let (_, health) = app.call("GET", "/health", None).await;
        (health["replica"]["in_use"] == true).then_some(())
    })
    .await;
    standby.psql("postgres", "SELECT pg_wal_replay_pause()");
    let (status, work) = app
        .call("POST", "/works", Some(r#"{"add_up_to": 4}"#))
        .await;
    assert_eq!(status, 201, "{work}");
    let id = work["id"].as_i64().expect("id");
    let (status, got) = app.call("GET", &format!("/works/{id}"), None).await;
    assert_eq!(
        status, 200,
        "a client reads back the id it was given: {got}"
    );
    let (status, events) = app.call("GET", &format!("/works/{id}/events"), None).await;
    assert_eq!(status, 200, "{events}");
    // The search was answered by the replica, which has not replayed the work.
    let (status, found) = app.call("GET", "/works", None).await;
    assert_eq!((status, found), (200, serde_json::json!([])));
}

/// A read URL naming another database of the primary's own server is no replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_database_of_the_primary_is_not_a_replica() {
    let (db, other) = (TestDb::new().await, TestDb::new().await);
    let config = ServerConfig {
        read_replica: Some((other.pool.clone(), Duration::from_secs(5))),
        ..Default::default()
    };
    let app = TestApp::spawn_config(db.pool.clone(), config).await;
    let health = eventually("the replica checked", Duration::from_secs(10), || async {
        let (_, health) = app.call("GET", "/health", None).await;
        health["replica"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("own server"))
            .then_some(health)
    })
    .await;
    assert_eq!(health["replica"]["in_use"], false, "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fall_back_to_the_primary_when_the_replica_is_unreachable() {
    let db = TestDb::new().await;
    // Nothing listens on port 1: every connect is refused at once.
    let unreachable = storage::pool("postgres://postgres@127.0.0.1:1/none", 2).expect("pool");
    let config = ServerConfig {
        read_replica: Some((unreachable, Duration::from_secs(5))),
        ..Default::default()
    };
    let app = TestApp::spawn_config(db.pool.clone(), config).await;
    let (status, work) = app
        .call("POST", "/works", Some(r#"{"add_up_to": 4}"#))
        .await;
    assert_eq!(status, 201, "{work}");
    tokio::time::sleep(Duration::from_millis(1200)).await; // a few monitor checks
    let id = work["id"].as_i64().expect("id");
    for target in [format!("/works/{id}"), "/works".into(), "/stats".into()] {
        let (status, body) = app.call("GET", &target, None).await;
        assert_eq!(status, 200, "{target}: {body}");
    }
    let (status, health) = app.call("GET", "/health", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["replica"]["in_use"], false, "{health}");
    assert!(health["replica"]["lag_seconds"].is_null(), "{health}");
}

/// With no standby at all (the shared server has none), `--ack-after standby` stores
/// the works and holds their acks: the broker still has every demand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_after_standby_holds_the_acks_until_a_standby_has_the_commit() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let (_conn, channel) = queue.channel().await;
    assert_eq!(produce(&queue, 20).await, 20);
    let mut opts = worker_opts(Duration::ZERO, Duration::from_secs(5));
    opts.ack_after = AckAfter::Standby;
    let (trigger, task) = start_consumer(&db, &queue, opts);
    wait_for_works(&db, "SELECT count(*) FROM works", 20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(trigger, task).await;
    // Unacked, so requeued when the consumer's channel closed (after the close-ok).
    eventually("the demands requeued", Duration::from_secs(30), || async {
        (queue.counts(&channel).await.0 == 20).then_some(())
    })
    .await;
}
