//! Defects an outside review found (issue 17): a demand the database keeps refusing in
//! a way that is not a constraint, a database clock that disagrees with the API's, a
//! missing schema.

use super::helpers::*;
use super::pipeline::{start_consumer, stop, wait_for_works, worker_opts, WAIT};
use ppctl::storage;
use std::time::Duration;

const DONE: &str = "SELECT count(*) FROM works WHERE status = 'done'";

/// A trigger that raises (SQLSTATE P0001) is neither an outage nor a constraint: it
/// used to be retried forever, and acks go in order, so everything behind it waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demand_a_trigger_refuses_is_dead_lettered_with_the_reason_and_the_rest_flow() {
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute(
            "CREATE FUNCTION refuse_13() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.add_up_to = 13 THEN RAISE EXCEPTION 'thirteen is refused here'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER refuse_13 BEFORE INSERT ON works FOR EACH ROW EXECUTE FUNCTION refuse_13()",
        )
        .await
        .expect("trigger");
    let queue = TestQueue::new();
    let (_conn, channel) = queue.channel().await;
    for i in 0..40 {
        let body = format!(r#"{{"add_up_to": {i}}}"#);
        queue
            .publish_raw(&channel, body.as_bytes(), Some(&format!("raised-{i}")))
            .await;
    }
    let (trigger, task) = start_consumer(&db, &queue, worker_opts(Duration::ZERO, WAIT));
    wait_for_works(&db, DONE, 39).await;
    eventually("13 dead-lettered", WAIT, || async {
        (queue.counts(&channel).await == (0, 1)).then_some(())
    })
    .await;
    stop(trigger, task).await;
    let reason = dead_letter_reason(&channel, &queue).await;
    assert!(reason.contains("thirteen is refused here"), "{reason}");
}

/// The `x-death`-like reason ppctl writes on its dead letter.
async fn dead_letter_reason(channel: &lapin::Channel, queue: &TestQueue) -> String {
    let got = channel
        .basic_get(
            queue.topology.dead_queue.as_str().into(),
            Default::default(),
        )
        .await
        .expect("basic.get")
        .expect("a dead letter");
    let headers = got
        .delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    let reason = headers
        .inner()
        .iter()
        .find(|(k, _)| k.as_str() == "x-ppctl-reason")
        .map(|(_, v)| match v {
            lapin::types::AMQPValue::LongString(s) => {
                String::from_utf8_lossy(s.as_bytes()).into_owned()
            }
            other => format!("{other:?}"),
        });
    reason.unwrap_or_else(|| format!("no x-ppctl-reason header in {headers:?}"))
}

/// The database's clock 10 s ahead of the API's: its `clock_timestamp()` is shadowed
/// for this database's connections. Every create used to be refused as "after its
/// deadline".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_clock_ahead_of_the_api_still_creates_works() {
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute(
            "CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE sql \
             AS $$ SELECT pg_catalog.clock_timestamp() + interval '10 seconds' $$",
        )
        .await
        .expect("skewed clock");
    let url = format!("{}?options=-c%20search_path%3Dpublic,pg_catalog", db.url);
    let pool = storage::pool(&url, 2).expect("pool");
    let client = pool.get().await.expect("connection");
    let ahead: bool = client
        .query_one(
            "SELECT clock_timestamp() > now() + interval '9 seconds'",
            &[],
        )
        .await
        .expect("clock")
        .get(0);
    assert!(ahead, "the shadowed clock is in use");
    drop(client);
    let app = TestApp::spawn_with(pool, None).await;
    for _ in 0..3 {
        let (status, body) = app
            .call("POST", "/works", Some(r#"{"add_up_to": 2}"#))
            .await;
        assert_eq!(status, 201, "{body}");
    }
}

/// A database with no tables yet: the API says what to run, as a 503, not a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_schema_is_a_503_that_says_to_run_db_setup() {
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute("DROP TABLE works CASCADE")
        .await
        .expect("drop");
    let app = TestApp::spawn(&db).await;
    for target in ["/works", "/works/1"] {
        let (status, body) = app.call("GET", target, None).await;
        assert_eq!(status, 503, "{target}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains("ppctl db setup"), "{target}: {error}");
    }
}

/// A process built before a migration (the database knows one it does not), or after
/// one not yet applied, uses no connection to it: each route says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_older_or_newer_than_the_schema_refuses_it_and_says_why() {
    let db = TestDb::new().await;
    let cases = [
        (
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')",
            "upgrade ppctl",
        ),
        (
            "DELETE FROM schema_migrations WHERE version = 9999 \
             OR version = (SELECT max(version) FROM schema_migrations WHERE version < 9999)",
            "ppctl db setup",
        ),
    ];
    for (change, advice) in cases {
        db.client().await.batch_execute(change).await.expect(change);
        // A pool of its own: the checks run when a connection is opened.
        let app = TestApp::spawn_with(storage::pool(&db.url, 2).expect("pool"), None).await;
        let (status, body) = app.call("GET", "/works", None).await;
        assert_eq!(status, 503, "{body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(advice), "{error}");
        let (status, health) = app.call("GET", "/health", None).await;
        assert_eq!(status, 503, "{health}");
        assert_eq!(health["database"], "schema", "{health}");
        assert!(
            health["error"]
                .as_str()
                .unwrap_or_default()
                .contains(advice),
            "{health}"
        );
    }
}

/// A request cut at the API's bound (4 s) used to leave its statement running on the
/// pooled connection, and the next request queued behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_at_its_bound_leaves_no_statement_running() {
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(storage::pool(&db.url, 1).expect("pool"), None).await;
    let locker = storage::admin::connect(&db.url).await.expect("connect");
    locker
        .batch_execute("BEGIN; LOCK TABLE works IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let (status, body) = app.call("GET", "/works/1", None).await;
    assert_eq!(status, 503, "{body}");
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()";
    eventually(
        "the cut statement cancelled",
        Duration::from_secs(5),
        || async {
            let n: i64 = locker.query_one(waiting, &[]).await.expect(waiting).get(0);
            (n == 0).then_some(())
        },
    )
    .await;
    // The pool's one connection is free (a new one): this does not queue behind it.
    let (status, health) = app.call("GET", "/health", None).await;
    assert_eq!(status, 200, "{health}");
    locker.batch_execute("COMMIT").await.expect("unlock");
}

/// Retry and cancel, like create, change nothing when the database runs them after the
/// request's deadline (its client was told 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_run_after_its_deadline_changes_nothing() {
    use ppctl::storage::actions::{self, Action, Outcome};
    let db = TestDb::new().await;
    let client = db.client().await;
    let work = storage::works::create_pending(&client, "api-actlate0001", 3, None, None)
        .await
        .expect("work");
    let past = std::time::SystemTime::now() - Duration::from_secs(1);
    let late = actions::apply(&client, work.id, Action::Cancel, Some(past)).await;
    assert!(matches!(&late, Err(e) if e.is_unavailable()), "{late:?}");
    let status = "SELECT count(*) FROM works WHERE status = 'pending'";
    assert_eq!(db.count(status).await, 1);
    let soon = std::time::SystemTime::now() + Duration::from_secs(5);
    let done = actions::apply(&client, work.id, Action::Cancel, Some(soon)).await;
    assert!(matches!(done, Ok(Outcome::Changed(_))), "{done:?}");
}

/// An API replay too large for one request answers with what it sent back and sends
/// nothing after its answer (it used to be cut at the bound: a 503, and a client that
/// could not know which dead letters had gone back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_too_large_for_one_request_stops_at_its_deadline_and_says_so() {
    use lapin::options::BasicPublishOptions;
    use lapin::BasicProperties;
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let (_conn, channel) = queue.channel().await;
    queue.counts(&channel).await; // declares the queues
    let dead = queue.topology.dead_queue.as_str();
    let mut confirms = Vec::new();
    for i in 0..6000 {
        let props = BasicProperties::default().with_message_id(format!("many-{i}").into());
        let body = br#"{"add_up_to": 1}"#;
        let published = channel
            .basic_publish(
                "".into(),
                dead.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .expect("publish");
        confirms.push(published);
    }
    for confirm in confirms {
        confirm.await.expect("confirm");
    }
    let app = TestApp::spawn_with_queue(&db, queue.name(), None).await;
    let (status, done) = app
        .call("POST", "/dead-letters/replay", Some(r#"{"all": true}"#))
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["stopped_at_deadline"], true, "{done}");
    let replayed = done["replayed"].as_array().map_or(0, Vec::len) as u32;
    assert!(replayed > 0 && replayed < 6000, "{replayed}");
    // Nothing more goes back after the answer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(queue.counts(&channel).await, (replayed, 6000 - replayed));
}
