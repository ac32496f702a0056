//! Bulk retry and cancel: every work a search filter matches, up to a maximum, newest
//! first, in batches that commit on their own, each work with its event; a dry run
//! counts and changes nothing; through the API and the CLI's two backends.

use super::helpers::*;
use super::totals::{counts, exact_counts};
use serde_json::Value;
use std::time::Duration;

/// `n` works with codes `{prefix}{i}` in `status`, counted as the pipeline counts them.
async fn seed(db: &TestDb, prefix: &str, n: i64, status: &str) {
    let client = db.client().await;
    let sql = format!(
        "INSERT INTO works (work_code, add_up_to, status, attempts) \
         SELECT '{prefix}' || i, i, '{status}', 3 FROM generate_series(1, {n}) i"
    );
    client.batch_execute(&sql).await.expect("seed works");
    if matches!(status, "failed" | "expired" | "cancelled") {
        let count = format!("UPDATE work_counts SET {status} = {status} + {n} WHERE shard = 0");
        client.batch_execute(&count).await.expect("count them");
    }
}

async fn status_of(db: &TestDb, prefix: &str, status: &str) -> i64 {
    db.count(&format!(
        "SELECT count(*) FROM works WHERE work_code LIKE '{prefix}%' AND status = '{status}'"
    ))
    .await
}

fn field(body: &Value, k: &str) -> i64 {
    body[k].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_retry_counts_then_changes_newest_first_up_to_max() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    seed(&db, "api-bulkf", 5, "failed").await;
    seed(&db, "api-bulke", 2, "expired").await;
    seed(&db, "api-bulkp", 3, "pending").await;
    let (status, dry) = app
        .call("POST", "/works/retry?status=failed&dry_run=true", None)
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!((field(&dry, "matched"), field(&dry, "changed")), (5, 0));
    assert_eq!(
        status_of(&db, "api-bulkf", "failed").await,
        5,
        "a dry run changes nothing"
    );

    let (status, first) = app
        .call("POST", "/works/retry?status=failed&max=3", None)
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        (field(&first, "changed"), first["more"].as_bool()),
        (3, Some(true))
    );
    // Newest first: the three highest ids, each with one event saying what it was.
    let newest = db
        .count(
            "SELECT count(*) FROM (SELECT status FROM works WHERE work_code LIKE 'api-bulkf%' \
             ORDER BY id DESC LIMIT 3) s WHERE status = 'pending'",
        )
        .await;
    assert_eq!(newest, 3);
    let (_, rest) = app
        .call("POST", "/works/retry?status=failed&max=3", None)
        .await;
    assert_eq!(
        (field(&rest, "changed"), rest["more"].as_bool()),
        (2, Some(false))
    );
    let events = db
        .count(
            "SELECT count(*) FROM event_log e JOIN works w ON w.id = e.work_id \
             WHERE w.work_code LIKE 'api-bulkf%' AND e.variable = 'work/retried' \
             AND e.value = 'was failed'",
        )
        .await;
    assert_eq!(events, 5, "one work/retried event per work");
    // No status filter: every status the action takes (expired here), nothing else.
    let (_, all) = app
        .call("POST", "/works/retry?work_code=api-bulk", None)
        .await;
    assert_eq!(field(&all, "changed"), 2, "{all}");
    assert_eq!(status_of(&db, "api-bulkp", "pending").await, 3);
    assert_eq!(
        counts(&db).await,
        exact_counts(&db).await,
        "the running totals"
    );

    let (status, body) = app.call("POST", "/works/retry?status=done", None).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = app.call("POST", "/works/cancel?max=0", None).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.call("POST", "/works/cancel?limit=5", None).await;
    assert_eq!(status, 400, "an unknown parameter is refused: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_cancel_takes_only_the_prefix_and_needs_the_token() {
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(db.pool.clone(), Some("s3cret".into())).await;
    seed(&db, "api-mine", 4, "pending").await;
    seed(&db, "api-theirs", 4, "pending").await;
    // Two of mine run later: cancel takes scheduled works too.
    db.client()
        .await
        .batch_execute(
            "INSERT INTO works (work_code, add_up_to, status, run_at) \
             SELECT 'api-mine-later' || i, i, 'scheduled', now() + interval '1 hour' \
             FROM generate_series(1, 2) i",
        )
        .await
        .expect("scheduled works");
    let (status, _) = app
        .call("POST", "/works/cancel?work_code=api-mine", None)
        .await;
    assert_eq!(status, 401);
    assert_eq!(status_of(&db, "api-mine", "pending").await, 4);
    let output = ppctl(&[
        "work",
        "cancel",
        "--work-code",
        "api-mine",
        "--api-url",
        &app.url(),
        "--api-token",
        "s3cret",
    ])
    .await;
    let (stdout, stderr) = outputs(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("cancel: 6 works changed"), "{stdout}");
    assert_eq!(status_of(&db, "api-mine", "cancelled").await, 6);
    assert_eq!(status_of(&db, "api-theirs", "pending").await, 4);
    assert_eq!(
        counts(&db).await,
        exact_counts(&db).await,
        "the running totals"
    );
}

/// 1,200 works in batches of 500: while the oldest work is locked elsewhere, the
/// newer batches are already committed and seen by others; one statement over all
/// 1,200 would show none until the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_batches_commit_on_their_own() {
    let db = TestDb::new().await;
    seed(&db, "api-many", 1200, "failed").await;
    let mut holder = db.client().await;
    let lock = holder.transaction().await.expect("begin");
    lock.batch_execute(
        "SELECT id FROM works WHERE work_code LIKE 'api-many%' ORDER BY id LIMIT 1 FOR UPDATE",
    )
    .await
    .expect("lock the oldest");
    let url = db.url.clone();
    let bulk = tokio::spawn(async move {
        ppctl(&[
            "work",
            "retry",
            "--status",
            "failed",
            "--max",
            "2000",
            "--via",
            "db",
            "--database-url",
            &url,
            "--json",
        ])
        .await
    });
    let seen = eventually(
        "the first batches committed",
        Duration::from_secs(20),
        || async {
            let n = status_of(&db, "api-many", "pending").await;
            (n >= 1000).then_some(n)
        },
    )
    .await;
    assert!(seen < 1200, "the last batch waits for the lock: {seen}");
    lock.rollback().await.expect("release");
    let output = bulk.await.expect("join");
    let (stdout, stderr) = outputs(&output);
    assert!(output.status.success(), "{stderr}");
    let outcome: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(field(&outcome, "changed"), 1200, "{outcome}");
    let events = db
        .count("SELECT count(DISTINCT work_id) FROM event_log WHERE variable = 'work/retried'")
        .await;
    let all = db
        .count("SELECT count(*) FROM event_log WHERE variable = 'work/retried'")
        .await;
    assert_eq!((events, all), (1200, 1200), "each work retried once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_wants_an_id_or_filters_not_both_nor_neither() {
    for args in [
        vec!["work", "retry"],
        vec!["work", "retry", "--dry-run"],
        vec!["work", "retry", "7", "--status", "failed"],
        vec!["work", "cancel", "--status", "failed", "--max", "0"],
    ] {
        let output = ppctl(&args).await;
        let (_, stderr) = outputs(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{args:?}: one line: {stderr}"
        );
    }
}
