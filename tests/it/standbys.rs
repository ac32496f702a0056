//! A standby is a physical standby. `pg_stat_replication` lists logical walsenders too
//! (pg_recvlogical, subscribers, Debezium): they stream the changes but hold no copy of
//! the database, so they must never release `--ack-after standby`'s acknowledgements.
//! Here one reports its flush position every second, and no physical standby exists.

use super::helpers::*;
use super::private_pg::{server_dir, PrivatePostgres, PG_BIN};
use super::scale::terminate;
use super::traced::{logs_dir, spawn};
use std::time::Duration;

const N: i64 = 100;

/// `consume --ack-after standby` on the private server until stopped.
fn consume(env: &[(&str, String)]) -> tokio::process::Child {
    spawn(
        &["consume", "--ack-after", "standby"],
        env,
        &logs_dir().join("consume.log"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logical_decoding_client_releases_no_acknowledgement() {
    let hba = "local replication postgres trust\nhost all all 127.0.0.0/8 scram-sha-256\n";
    let mut pg = PrivatePostgres::start(server_dir("pglogical"), "wal_level = logical", hba);
    pg.psql("postgres", "CREATE DATABASE app");
    pg.psql(
        "app",
        "SELECT pg_create_logical_replication_slot('cdc', 'test_decoding')",
    );
    let (socket, port) = (
        pg.dir.join("sock").display().to_string(),
        pg.port.to_string(),
    );
    let common = ["-h", &socket, "-p", &port, "-U", "postgres"];
    let logical = [
        &common[..],
        &[
            "-d",
            "app",
            "-S",
            "cdc",
            "--start",
            "-f",
            "/dev/null",
            "-s",
            "1",
            "-F",
            "1",
        ],
    ]
    .concat();
    pg.beside("recvlogical", &format!("{PG_BIN}/pg_recvlogical"), &logical);
    let streaming = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'";
    let sync = eventually(
        "pg_recvlogical streaming",
        Duration::from_secs(20),
        || async { (pg.psql("postgres", streaming) == "1").then_some(()) },
    );
    sync.await;
    let queue = TestQueue::new();
    let env = pg.app_env(&queue);
    let status = super::ordinary_role::run(&env, &["db", "setup"]).await;
    assert_eq!(status.0, 0, "{}", status.2);
    let (_, out, _) = super::ordinary_role::run(&env, &["db", "status"]).await;
    assert!(out.contains("replication: no standby"), "{out}");
    let consumer = consume(&env);
    let produced = super::ordinary_role::run(&env, &["produce", "--count", "100", "--every", "0"]);
    assert_eq!(produced.await.0, 0);
    let done = "SELECT count(*) FROM works WHERE status = 'done'";
    // Stored, then held: the batches in flight wait for a standby (the rest wait
    // behind them), so how many are stored depends on how the demands were batched.
    eventually("stored", Duration::from_secs(30), || async {
        (pg.psql("app", done) != "0").then_some(())
    })
    .await;
    // pg_recvlogical reports its flush position every second (-s 1 -F 1).
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Stopped while waiting: nothing was acknowledged, every demand goes back.
    assert!(terminate(consumer).await.success());
    let (_conn, channel) = queue.channel().await;
    assert_eq!(
        queue.counts(&channel).await,
        (N as u32, 0),
        "acknowledged without a standby"
    );
    // A physical standby (pg_receivewal, flushing at once) releases them: the redeliveries
    // are stored (or recognised as stored) and acknowledged once it has flushed.
    let wal = pg.owned_dir("standby-wal").display().to_string();
    let physical = [&common[..], &["-D", &wal, "--synchronous", "-n"]].concat();
    pg.beside("standby", &format!("{PG_BIN}/pg_receivewal"), &physical);
    let consumer = consume(&env);
    eventually(
        "acknowledged after the standby's flush",
        Duration::from_secs(30),
        || async { (queue.counts(&channel).await == (0, 0)).then_some(()) },
    )
    .await;
    assert!(terminate(consumer).await.success());
    assert_eq!(pg.psql("app", done), N.to_string(), "no second work");
}

/// A batch waiting for its standby has made its commit: it must not keep the next batch
/// from being stored. With no standby at all, every delivery the prefetch lets in is
/// stored (and none acknowledged), not only the two batches that once held both stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_waiting_for_a_standby_leave_the_stores_to_the_next() {
    let hba = "local replication postgres trust\nhost all all 127.0.0.0/8 scram-sha-256\n";
    let pg = PrivatePostgres::start(server_dir("pgnostandby"), "", hba);
    pg.psql("postgres", "CREATE DATABASE app");
    let queue = TestQueue::new();
    let env = pg.app_env(&queue);
    let status = super::ordinary_role::run(&env, &["db", "setup"]).await;
    assert_eq!(status.0, 0, "{}", status.2);
    let produced = super::ordinary_role::run(&env, &["produce", "--count", "1200", "--every", "0"]);
    assert_eq!(produced.await.0, 0);
    // --ack-after standby's default prefetch, 1000, in batches of at most 333 (a third
    // of it each): waiting batches hold their deliveries, so the window is larger than
    // --ack-after commit's 300.
    let consumer = consume(&env);
    let done = "SELECT count(*) FROM works WHERE status = 'done'";
    eventually(
        "the whole prefetch window stored",
        Duration::from_secs(30),
        || async { (pg.psql("app", done) == "1000").then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pg.psql("app", done), "1000", "no more than the prefetch");
    assert!(terminate(consumer).await.success());
    let (_conn, channel) = queue.channel().await;
    assert_eq!(
        queue.counts(&channel).await,
        (1200, 0),
        "acknowledged without a standby"
    );
}
