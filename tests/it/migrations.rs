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
        // After the last one: versions may have gaps (one merged later fills it).
        version: MIGRATIONS.last().map_or(1, |m| m.version + 1),
        name: "test_extra",
        sql: "CREATE TABLE extra (x int)",
        compat: migrate::Compat::Breaking,
    });
    assert_eq!(
        migrate::run(&mut client, &extended).await.expect("apply"),
        1
    );
    // Through the admin connection: a pool refuses a schema it does not know.
    let extra: i64 = client
        .query_one("SELECT count(*) FROM extra", &[])
        .await
        .expect("extra")
        .get(0);
    assert_eq!(extra, 0);
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

/// A test database with only the first `applied` migrations, and a connection to it.
pub(super) async fn database_at(applied: usize) -> (TestDb, tokio_postgres::Client) {
    let url = format!("{PG_URL}/ppctl_test_{}", random_suffix());
    ppctl::storage::admin::create_database(&url)
        .await
        .expect("create");
    let db = TestDb {
        pool: ppctl::storage::pool(&url, 4).expect("pool"),
        url,
    };
    let mut client = ppctl::storage::admin::connect(&db.url)
        .await
        .expect("connect");
    migrate::run(&mut client, &MIGRATIONS[..applied])
        .await
        .expect("the first migrations");
    (db, client)
}

/// A database migrated only to `version`, with history written the way that
/// version's ppctl wrote it; then upgraded by every migration since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_the_first_release_upgrades_with_its_history() {
    let (db, mut client) = database_at(1).await;
    // 0001's consumer: a done work and its four event rows, with the work code in each.
    client
        .batch_execute(
            "WITH w AS (INSERT INTO works (work_code, add_up_to, status, result, message_id) \
               VALUES ('consumer-old0000001', 4, 'done', 10, 'old-1') RETURNING id, work_code) \
             INSERT INTO events (work_id, work_code, variable, value) \
             SELECT id, work_code, v, CASE WHEN v = 'compute/result' THEN '10' END FROM w, \
               unnest(ARRAY['work/created','compute/start','compute/stop','compute/result']) v; \
             INSERT INTO works (work_code, add_up_to) VALUES ('api-old0000002', 3)",
        )
        .await
        .expect("old history");
    let old_events = "SELECT string_agg(id || ':' || work_code || ':' || variable || ':' || \
                      coalesce(value, '-'), ',' ORDER BY id) FROM events";
    let before: String = client
        .query_one(old_events, &[])
        .await
        .expect("events")
        .get(0);
    let applied = migrate::run(&mut client, MIGRATIONS)
        .await
        .expect("upgrade");
    assert_eq!(applied, MIGRATIONS.len() - 1);
    let after: String = client
        .query_one(old_events, &[])
        .await
        .expect("events")
        .get(0);
    assert_eq!(
        after, before,
        "the old events read the same through the view"
    );
    // The running done total starts from the history; new works add to it.
    let pg = db.client().await;
    let batch = [ppctl::storage::works::Finished {
        message_id: "new-1".into(),
        work_code: "consumer-new0000001".into(),
        add_up_to: 5,
        result: 15,
        started: std::time::SystemTime::now(),
        stopped: std::time::SystemTime::now(),
        trace_parent: None,
        possible_repeat: false,
        run_at: None,
    }];
    assert_eq!(
        ppctl::storage::works::insert_finished(&pg, &batch)
            .await
            .expect("insert"),
        1
    );
    assert_eq!(
        super::totals::counts(&db).await,
        super::totals::exact_counts(&db).await
    );
    // The new work's events come from its row, after the old ones, in order.
    let new_events: Vec<String> = pg
        .query(
            "SELECT e.variable FROM events e JOIN works w ON w.id = e.work_id \
             WHERE w.message_id = 'new-1' ORDER BY e.id",
            &[],
        )
        .await
        .expect("new events")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        new_events,
        [
            "work/created",
            "compute/start",
            "compute/stop",
            "compute/result"
        ]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM events").await,
        8,
        "4 old, 4 new"
    );
}
