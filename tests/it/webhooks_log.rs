//! The webhook log (sql/0016):
//! - it is walked in commit order: a delivery whose transaction commits after later
//!   ones were sent is still sent;
//! - a first attempt that succeeds leaves no row of its own, only the cursor past it,
//!   and pruning takes the log's rows with their works;
//! - a delivery delivered at once is listed and can be redelivered, with its id;
//! - a deliverer frozen while it holds the cursor lets go of it after its lease.

use super::helpers::*;
use super::pipeline::{produce, start_consumer, stop, WAIT};
use super::private_pg::{server_dir, PrivatePostgres};
use super::webhook_receiver::Receiver;
use super::webhooks::{assert_all_delivered, new_secret, wait_for_every_delivery, webhook_opts};
use super::webhooks_ops::consume_process;
use ppctl::shutdown::Trigger;
use ppctl::storage::admin;
use std::time::Duration;
use tokio::task::JoinHandle;

/// A consumer delivering to a receiver of its own, once it has turned recording on.
struct Delivering {
    receiver: Receiver,
    secret: String,
    consumer: (Trigger, JoinHandle<anyhow::Result<()>>),
}

async fn delivering(db: &TestDb, queue: &TestQueue) -> Delivering {
    let receiver = Receiver::start().await;
    let secret = new_secret();
    let consumer = start_consumer(db, queue, webhook_opts(&receiver.url(), &secret));
    eventually("recording on", WAIT, || async {
        let on = db.count("SELECT count(*) FROM webhook_settings WHERE enabled");
        (on.await == 1).then_some(())
    })
    .await;
    Delivering {
        receiver,
        secret,
        consumer,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_committed_after_later_ones_is_still_sent() {
    let db = TestDb::new().await;
    let queue = TestQueue::new();
    let Delivering {
        receiver,
        secret,
        consumer: (trigger, task),
    } = delivering(&db, &queue).await;
    // A finished work whose transaction stays open: its log row has the lower id.
    let mut slow = db.client().await;
    let tx = slow.transaction().await.expect("begin");
    let insert =
        "INSERT INTO works (work_code, add_up_to, status, result) VALUES ($1, 1, 'done', 1)";
    tx.execute(insert, &[&"api-latecommit"])
        .await
        .expect("late");
    // Later ones commit at once, and the deliverer walks for a while.
    for n in 0..5 {
        let code = format!("api-early{n:05}");
        db.client()
            .await
            .execute(insert, &[&code])
            .await
            .expect("early");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    tx.commit().await.expect("commit");
    wait_for_every_delivery(&db, &receiver, WAIT).await;
    assert_all_delivered(&db, &receiver.received(), &secret).await;
    stop(trigger, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_attempt_successes_leave_only_the_cursor() {
    let db = TestDb::new().await;
    let queue = TestQueue::new();
    let Delivering {
        receiver,
        secret: _,
        consumer: (trigger, task),
    } = delivering(&db, &queue).await;
    assert_eq!(produce(&queue, 300).await, 300);
    eventually("300 works stored", WAIT, || async {
        (db.count("SELECT count(*) FROM works").await == 300).then_some(())
    })
    .await;
    wait_for_every_delivery(&db, &receiver, WAIT).await;
    stop(trigger, task).await;
    assert_eq!(db.count("SELECT count(*) FROM webhook_outbox").await, 300);
    assert_eq!(db.count("SELECT count(*) FROM webhook_deliveries").await, 0);
    let past = "SELECT count(*) FROM webhook_outbox o, webhook_cursor c \
                WHERE (o.txid, o.id) <= (c.txid, c.id)";
    assert_eq!(db.count(past).await, 300);
    let shown = "SELECT count(*) FROM webhook_delivery_states \
                 WHERE state = 'delivered' AND attempts = 1";
    assert_eq!(db.count(shown).await, 300);
    // Pruned with their works, though no foreign key ties them.
    let pruned = ppctl::storage::prune::prune(&db.pool, Duration::ZERO).await;
    assert_eq!(pruned.expect("prune").works, 300);
    assert_eq!(db.count("SELECT count(*) FROM webhook_outbox").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_delivered_at_once_is_listed_and_redelivered_with_its_id() {
    let db = TestDb::new().await;
    let queue = TestQueue::new();
    let app = TestApp::spawn_with_queue(&db, queue.name(), None).await;
    let Delivering {
        receiver,
        secret: _,
        consumer: (trigger, task),
    } = delivering(&db, &queue).await;
    assert_eq!(produce(&queue, 3).await, 3);
    let delivered = eventually("three listed delivered", WAIT, || async {
        let (status, body) = app
            .call("GET", "/webhooks/deliveries?status=delivered", None)
            .await;
        assert_eq!(status, 200, "{body}");
        let list = body.as_array().cloned().unwrap_or_default();
        (list.len() == 3).then_some(list)
    })
    .await;
    assert!(
        delivered.iter().all(|d| d["attempts"] == 1),
        "{delivered:?}"
    );
    let (status, pending) = app
        .call("GET", "/webhooks/deliveries?status=pending", None)
        .await;
    assert_eq!((status, pending.as_array().map(Vec::len)), (200, Some(0)));
    let one = &delivered[0];
    let path = format!("/webhooks/deliveries/{}/redeliver", one["id"]);
    let (status, again) = app.call("POST", &path, None).await;
    assert_eq!(
        (status, again["state"].as_str()),
        (200, Some("pending")),
        "{again}"
    );
    let id = one["webhook_id"].as_str().expect("webhook_id").to_string();
    eventually("the redelivery", WAIT, || async {
        let times = receiver.received().iter().filter(|r| r.id == id).count();
        (times == 2).then_some(())
    })
    .await;
    stop(trigger, task).await;
}

/// A deliverer frozen (SIGSTOP) mid-batch, holding the log's cursor, goes silent: no
/// error reaches anyone. The server ends its transaction once the lease has passed idle
/// (`idle_in_transaction_session_timeout`, 30 s), and another consumer sends that batch
/// again, under the same ids. On a PostgreSQL of its own: the frozen transaction holds
/// back the oldest running transaction of its whole cluster for 30 s, and with it every
/// other test's deliveries (the walk takes only rows older than that).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_deliverer_lets_go_of_the_cursor_after_its_lease() {
    let hba = "host all all 127.0.0.0/8 scram-sha-256\n";
    let pg = PrivatePostgres::start(server_dir("pgfrozenhook"), "", hba);
    let database_url = pg.url("127.0.0.1", "app", "connect_timeout=5");
    admin::setup(&database_url).await.expect("db setup");
    let queue = TestQueue::new();
    let receiver = Receiver::start().await;
    receiver.delay(Duration::from_secs(3)); // the batch is in flight for a while
    let secret = new_secret();
    let mut frozen = consume_process(&database_url, &queue, &receiver.url(), &secret);
    assert_eq!(produce(&queue, 20).await, 20);
    eventually("a batch in flight", WAIT, || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;
    let pid = frozen.id().expect("pid").to_string();
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status();
    assert!(stopped.expect("kill -STOP").success());
    let in_flight = receiver.received();
    receiver.delay(Duration::ZERO);
    let mut other = consume_process(&database_url, &queue, &receiver.url(), &secret);
    eventually(
        "the frozen batch sent again",
        Duration::from_secs(90),
        || async {
            let received = receiver.received();
            let again = |id: &str| received.iter().filter(|r| r.id == id).count() >= 2;
            in_flight.iter().all(|r| again(&r.id)).then_some(())
        },
    )
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    for child in [&mut frozen, &mut other] {
        child.start_kill().expect("stop");
        let _ = child.wait().await;
    }
}
