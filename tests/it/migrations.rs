//! Migrations: idempotent, concurrent-safe, and a changed migration is refused.

use super::helpers::*;
use ppctl::storage::migrate::{self, Migration, MIGRATIONS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_concurrent_safe() {
    let db = TestDb::new().await; // already migrated once
    let runs = (0..4).map(|_| {
        let url = db.url.clone();
        tokio::spawn(async move {
            let mut client = ppctl::storage::admin::connect(&url).await.expect("connect");
            migrate::run(&mut client, MIGRATIONS)
                .await
                .expect("migrate")
        })
    });
    for run in runs.collect::<Vec<_>>() {
        assert_eq!(
            run.await.expect("join"),
            0,
            "an applied migration ran again"
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM schema_migrations").await,
        MIGRATIONS.len() as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_applied_migration_is_an_error() {
    let db = TestDb::new().await;
    let mut client = ppctl::storage::admin::connect(&db.url)
        .await
        .expect("connect");
    let edited = [Migration {
        sql: "SELECT 1; -- edited",
        ..MIGRATIONS[0]
    }];
    let err = migrate::run(&mut client, &edited)
        .await
        .expect_err("must refuse");
    assert!(
        err.to_string().contains("was changed after it was applied"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_migrations_apply_in_order_and_unknown_ones_are_reported() {
    let db = TestDb::new().await;
    let mut client = ppctl::storage::admin::connect(&db.url)
        .await
        .expect("connect");
    let mut extended = MIGRATIONS.to_vec();
    extended.push(Migration {
        version: MIGRATIONS.len() as i32 + 1,
        name: "test_extra",
        sql: "CREATE TABLE extra (x int)",
    });
    assert_eq!(
        migrate::run(&mut client, &extended).await.expect("apply"),
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM extra").await, 0);
    // The older binary (without the extra migration) must refuse the newer schema.
    let err = migrate::run(&mut client, MIGRATIONS)
        .await
        .expect_err("must refuse");
    assert!(err.to_string().contains("does not know"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_enforces_the_data_model() {
    let db = TestDb::new().await;
    let client = db.client().await;
    for bad in [
        "INSERT INTO works (work_code, add_up_to) VALUES ('api-x', -1)",
        "INSERT INTO works (work_code, add_up_to) VALUES ('api-y', 4294967296)",
        "INSERT INTO works (work_code, add_up_to, status) VALUES ('api-z', 1, 'weird')",
        "INSERT INTO works (work_code, add_up_to, status) VALUES ('api-w', 1, 'done')",
    ] {
        assert!(client.batch_execute(bad).await.is_err(), "accepted: {bad}");
    }
    client
        .batch_execute("INSERT INTO works (work_code, add_up_to) VALUES ('api-ok', 1)")
        .await
        .expect("valid");
    let dup = client
        .batch_execute("INSERT INTO works (work_code, add_up_to) VALUES ('api-ok', 2)")
        .await;
    assert!(dup.is_err(), "duplicate work_code accepted");
}
