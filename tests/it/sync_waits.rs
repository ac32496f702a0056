//! What waits for a synchronous standby, and what does not. A private server is told to
//! wait for a standby that never comes (`synchronous_standby_names = 'absent'`), so every
//! commit that waits hangs and shows as `SyncRep` in pg_stat_activity. Only what a
//! failover must not lose may wait: a work's completion (and a POST's insert). A sweep's
//! lease and its empty fail/expire passes are not worth a standby's round trip each: on
//! the bench's synchronous pair they made a sweep wait four times. (A NOTIFY writes no
//! WAL, so it never waits.)

use super::helpers::eventually;
use super::private_pg::{server_dir, PrivatePostgres};
use super::sweeps::sweep_opts;
use ppctl::storage::{self, admin, works};
use ppctl::worker::sweep;
use std::time::Duration;

/// From now on, `pg`'s commits wait for a standby that is not there.
async fn lose_the_standby(pg: &PrivatePostgres) {
    standby_names(pg, "'absent'");
    // The reload takes effect a moment later: until a write is seen waiting (on the other
    // database, left waiting for good), the test would prove nothing.
    let probe = admin::connect(&pg.url("127.0.0.1", "postgres", ""))
        .await
        .expect("probe");
    tokio::spawn(async move { probe.batch_execute("CREATE TEMP TABLE probe (x int)").await });
    let waiting = "SELECT count(*) FROM pg_stat_activity \
        WHERE datname = 'postgres' AND wait_event = 'SyncRep'";
    eventually("commits to wait", Duration::from_secs(10), || async {
        (pg.psql("postgres", waiting) == "1").then_some(())
    })
    .await;
}

fn standby_names(pg: &PrivatePostgres, value: &str) {
    pg.psql(
        "postgres",
        &format!("ALTER SYSTEM SET synchronous_standby_names = {value}"),
    );
    pg.psql("postgres", "SELECT pg_reload_conf()");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_waits_for_the_standby_only_to_complete() {
    let hba = "host all all 127.0.0.0/8 scram-sha-256\n";
    let pg = PrivatePostgres::start(server_dir("pgsyncsweep"), "", hba);
    let url = pg.url("127.0.0.1", "app", "connect_timeout=5");
    admin::setup(&url).await.expect("db setup");
    let pool = storage::pool(&url, 2).expect("pool");
    let client = pool.get().await.expect("client");
    let work = works::create_pending(&client, "api-syncwait01", 4, None, None)
        .await
        .expect("create");
    drop(client);
    lose_the_standby(&pg).await;

    let opts = sweep_opts("syncwaiter", Duration::from_secs(60), 3);
    let sweeping = tokio::spawn({
        let pool = pool.clone();
        async move { sweep::sweep_once(&pool, &opts).await }
    });
    let claimed = format!(
        "SELECT status || ' ' || (SELECT count(*) FROM event_log \
           WHERE work_id = {0} AND variable = 'compute/start') FROM works WHERE id = {0}",
        work.id
    );
    // The lease is committed and seen by others, with its event, while nothing answered.
    eventually("the claim to commit", Duration::from_secs(10), || async {
        (pg.psql("app", &claimed) == "running 1").then_some(())
    })
    .await;
    // ... and the completion is what waits.
    let waiting = "SELECT count(*) FROM pg_stat_activity \
        WHERE datname = 'app' AND wait_event = 'SyncRep'";
    eventually(
        "the completion to wait",
        Duration::from_secs(10),
        || async { (pg.psql("postgres", waiting) == "1").then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!sweeping.is_finished(), "the sweep ended with no standby");
    assert_eq!(pg.psql("app", &claimed), "running 1");

    standby_names(&pg, "''");
    let outcome = tokio::time::timeout(Duration::from_secs(10), sweeping)
        .await
        .expect("the sweep to end once the wait is lifted")
        .expect("join")
        .expect("sweep");
    assert_eq!((outcome.claimed, outcome.completed), (1, 1));
    let done = format!(
        "SELECT status || ' ' || result FROM works WHERE id = {}",
        work.id
    );
    assert_eq!(pg.psql("app", &done), "done 10");
}
