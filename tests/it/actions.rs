//! Operators' actions: retry a failed or expired work, cancel a pending one, through the
//! API and the CLI (both backends); anything else is a 409 with the reason.

use super::helpers::*;
use super::sweeps::sweep_opts;
use super::totals::{counts, exact_counts};
use ppctl::worker::sweep;
use serde_json::Value;
use std::time::Duration;

async fn last_event(app: &TestApp, id: i64) -> (String, String) {
    let (status, events) = app.call("GET", &format!("/works/{id}/events"), None).await;
    assert_eq!(status, 200);
    let last = events
        .as_array()
        .and_then(|e| e.last())
        .cloned()
        .unwrap_or(Value::Null);
    let text = |k: &str| last[k].as_str().unwrap_or_default().to_string();
    (text("variable"), text("value"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_a_pending_work_and_retry_a_failed_one_through_the_api() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let (_, work) = app
        .call("POST", "/works", Some(r#"{"add_up_to": 4}"#))
        .await;
    let id = work["id"].as_i64().expect("id");
    let (status, cancelled) = app.call("POST", &format!("/works/{id}/cancel"), None).await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled"))
    );
    assert_eq!(
        last_event(&app, id).await,
        ("work/cancelled".into(), "was pending".into())
    );
    // Neither action applies to a cancelled work any more.
    for action in ["cancel", "retry"] {
        let (status, body) = app
            .call("POST", &format!("/works/{id}/{action}"), None)
            .await;
        assert_eq!(status, 409, "{action}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or("")
                .contains("is cancelled"),
            "{body}"
        );
    }
    let (status, _) = app.call("POST", "/works/999999/retry", None).await;
    assert_eq!(status, 404);

    let (_, work) = app
        .call("POST", "/works", Some(r#"{"add_up_to": 5}"#))
        .await;
    let id = work["id"].as_i64().expect("id");
    db.client()
        .await
        .execute(
            "UPDATE works SET status = 'failed', attempts = 3 WHERE id = $1",
            &[&id],
        )
        .await
        .expect("fail it");
    // By hand, so counted by hand, as a sweeper's failure would be.
    db.client()
        .await
        .batch_execute("UPDATE work_counts SET failed = failed + 1 WHERE shard = 0")
        .await
        .expect("count it");
    let (status, retried) = app.call("POST", &format!("/works/{id}/retry"), None).await;
    assert_eq!((status, retried["status"].as_str()), (200, Some("pending")));
    assert_eq!(
        last_event(&app, id).await,
        ("work/retried".into(), "was failed".into())
    );
    assert_eq!(
        db.count(&format!(
            "SELECT attempts::bigint FROM works WHERE id = {id}"
        ))
        .await,
        0
    );
    // Fresh attempts: a sweeper takes it and finishes it.
    let outcome = sweep::sweep_once(&db.pool, &sweep_opts("retrier", Duration::from_secs(30), 3))
        .await
        .expect("sweep");
    assert_eq!(outcome.completed, 1);
    let (_, done) = app.call("GET", &format!("/works/{id}"), None).await;
    assert_eq!(
        (done["status"].as_str(), done["result"].as_i64()),
        (Some("done"), Some(15))
    );
    let (status, body) = app.call("POST", &format!("/works/{id}/cancel"), None).await;
    assert_eq!(status, 409, "a done work cannot be cancelled: {body}");
    assert_eq!(
        counts(&db).await,
        exact_counts(&db).await,
        "the running totals"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_the_token_like_every_write() {
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(db.pool.clone(), Some("s3cret".into())).await;
    let work =
        ppctl::storage::works::create_pending(&db.client().await, "api-tokentest1", 1, None, None)
            .await
            .expect("work");
    let (status, _) = app
        .call("POST", &format!("/works/{}/cancel", work.id), None)
        .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_retries_and_cancels_through_both_backends() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let api = app.url();
    let client = db.client().await;
    for via in [
        vec!["--api-url", api.as_str()],
        vec!["--via", "db", "--database-url", db.url.as_str()],
    ] {
        let work = ppctl::storage::works::create_pending(
            &client,
            &format!("api-cli{}", via.len()),
            2,
            None,
            None,
        )
        .await
        .expect("work");
        let id = work.id.to_string();
        let output = ppctl(&[&["work", "cancel", &id, "--json"][..], &via[..]].concat()).await;
        let (stdout, stderr) = outputs(&output);
        assert!(output.status.success(), "{via:?}: {stderr}");
        let shown: Value = serde_json::from_str(&stdout).expect("JSON");
        assert_eq!(shown["status"], "cancelled", "{via:?}");
        let again = ppctl(&[&["work", "cancel", &id][..], &via[..]].concat()).await;
        let (_, stderr) = outputs(&again);
        assert_eq!(again.status.code(), Some(1), "{via:?}: {stderr}");
        assert!(stderr.contains("is cancelled"), "{via:?}: {stderr}");
        // Watching a work that ended other than done says so, and exits 1 at once.
        let watch = ppctl(&[&["work", "watch", &id][..], &via[..]].concat()).await;
        let (stdout, _) = outputs(&watch);
        assert_eq!(watch.status.code(), Some(1), "{via:?}: {stdout}");
        assert!(stdout.contains("cancelled"), "{via:?}: {stdout}");
        let unknown = ppctl(&[&["work", "retry", "999999"][..], &via[..]].concat()).await;
        assert_eq!(unknown.status.code(), Some(3), "{via:?}");
    }
}
