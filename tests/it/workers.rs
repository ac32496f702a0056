//! The workers registry, seen through GET /workers and `ppctl workers`: real `consume`
//! processes register with their pid and beat; a SIGKILLed one shows as gone within
//! the stated bound, the API work it leased still listed under it with its lease end;
//! a gracefully stopped one shows as stopped.

use crate::helpers::{eventually, outputs, ppctl, TestApp, TestDb, TestQueue, AMQP_URL};
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Child;

/// A `ppctl consume` on the test's database and queue, logging to a file named in
/// failures; killed when dropped.
pub(super) fn spawn_consumer(db: &TestDb, queue: &TestQueue, extra: &[&str]) -> Child {
    spawn_logged(db, queue, extra).0
}

/// `spawn_consumer`, and the path of its log.
fn spawn_logged(db: &TestDb, queue: &TestQueue, extra: &[&str]) -> (Child, std::path::PathBuf) {
    let log_path = std::env::temp_dir().join(format!(
        "ppctl-workers-{}-{}.log",
        queue.name(),
        crate::helpers::random_suffix()
    ));
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ppctl"))
        // The type TestQueue declares.
        .args(["consume", "--queue", queue.name(), "--queue-type", "quorum"])
        .args(extra)
        .env("DATABASE_URL", &db.url)
        .env("AMQP_URL", AMQP_URL)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("PP_QUEUE")
        .env_remove("PP_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("log file")))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("start ppctl consume");
    (child, log_path)
}

/// GET /workers, as JSON.
pub(super) async fn workers(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.call("GET", "/workers", None).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().expect("a JSON array").clone()
}

fn with_pid(listed: &[Value], pid: u32) -> Option<Value> {
    listed.iter().find(|w| w["pid"] == pid).cloned()
}

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_register_and_a_killed_one_shows_gone_with_its_leased_work() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let app = TestApp::spawn(&db).await;
    // A long simulated work keeps the API work leased while its worker is killed.
    let args = ["--work-delay", "60s", "--sweep-every", "100ms"];
    let mut first = spawn_consumer(&db, &queue, &args);
    let mut second = spawn_consumer(&db, &queue, &args);
    let pids = [first.id().expect("pid"), second.id().expect("pid")];
    let listed = eventually("both consumers registered", WAIT, || async {
        let listed = workers(&app).await;
        pids.iter()
            .all(|p| with_pid(&listed, *p).is_some())
            .then_some(listed)
    })
    .await;
    for pid in pids {
        let w = with_pid(&listed, pid).expect("listed");
        assert_eq!(w["state"], "running", "{w}");
        assert_eq!(w["gone"], false, "{w}");
        assert_eq!(w["queue"], queue.name(), "{w}");
        assert_eq!(w["version"], ppctl::VERSION, "{w}");
    }
    let (status, work) = app.call("POST", "/works", Some("{\"add_up_to\": 7}")).await;
    assert_eq!(status, 201, "{work}");
    // The lease names the worker's registry id: find who holds it.
    let holder = eventually("a worker lists the API work it leased", WAIT, || async {
        let listed = workers(&app).await;
        listed.into_iter().find(|w| {
            w["works"]
                .as_array()
                .is_some_and(|ws| ws.iter().any(|h| h["id"] == work["id"]))
        })
    })
    .await;
    let locked_by: String = db
        .client()
        .await
        .query_one(
            "SELECT locked_by FROM works WHERE id = $1",
            &[&work["id"].as_i64()],
        )
        .await
        .expect("the work")
        .get(0);
    assert_eq!(holder["id"], locked_by.as_str(), "{holder}");
    let (victim, survivor) = if holder["pid"] == pids[0] {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };
    let victim_pid = victim.id().expect("pid");
    victim.start_kill().expect("SIGKILL"); // tokio's kill is SIGKILL
    let _ = victim.wait().await;
    let killed = Instant::now();
    let gone = eventually("the killed worker shown as gone", WAIT, || async {
        let w = with_pid(&workers(&app).await, victim_pid)?;
        (w["gone"] == true).then_some(w)
    })
    .await;
    let took = killed.elapsed();
    eprintln!("a SIGKILLed worker showed as gone after {took:?}");
    assert!(
        took <= Duration::from_secs(13),
        "bound is 10 s of silence: {took:?}"
    );
    assert_eq!(gone["state"], "gone", "{gone}");
    let held = &gone["works"][0];
    assert_eq!(
        held["id"], work["id"],
        "its leased work stays listed: {gone}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(
        held["locked_until"].as_i64().is_some_and(|t| t > now),
        "{gone}"
    );
    let survivor_pid = survivor.id().expect("pid");
    let alive = with_pid(&workers(&app).await, survivor_pid).expect("listed");
    assert_eq!(alive["state"], "running", "{alive}");

    // The CLI shows the same, through the API and straight from the database.
    let out = ppctl(&["workers", "--api-url", &app.url()]).await;
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("LAST_SEEN") && stdout.contains(&format!(" {victim_pid} ")),
        "{stdout}"
    );
    assert!(stdout.contains("LEASE_UNTIL"), "the lease table: {stdout}");
    let out = ppctl(&[
        "workers",
        "--via",
        "db",
        "--database-url",
        &db.url,
        "--json",
    ])
    .await;
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<Value> = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(rows.len(), 2, "{stdout}");

    // A graceful stop says so at once, not after the silence bound.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &survivor_pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let stopped = eventually("the stopped worker shown as stopped", WAIT, || async {
        let w = with_pid(&workers(&app).await, survivor_pid)?;
        (w["state"] == "stopped").then_some(w)
    })
    .await;
    assert_eq!(stopped["gone"], true, "{stopped}");
    let exit = tokio::time::timeout(WAIT, survivor.wait()).await;
    assert!(
        exit.is_ok_and(|s| s.is_ok_and(|s| s.success())),
        "exit 0 on SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_count_workers_by_state() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let app = TestApp::spawn(&db).await;
    let _consumer = spawn_consumer(&db, &queue, &[]);
    eventually("one running worker in /metrics", WAIT, || async {
        let metrics = crate::helpers::scrape(&app.addr.to_string()).await;
        let running = metrics
            .lines()
            .any(|l| l == "ppctl_workers{state=\"running\"} 1");
        let paused = metrics.lines().any(|l| l == "ppctl_pipeline_paused 0");
        (running && paused).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_that_cannot_write_hold_nothing_up_and_are_logged_once() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let app = TestApp::spawn(&db).await;
    let (_conn, channel) = queue.channel().await;
    let (consumer, log) = spawn_logged(&db, &queue, &[]);
    let pid = consumer.id().expect("pid");
    eventually("the worker registered", WAIT, || async {
        with_pid(&workers(&app).await, pid).filter(|w| w["state"] == "running")
    })
    .await;
    // Writes to the registry wait behind this lock (reads do not): every beat times out.
    let blocker = db.client().await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE workers IN EXCLUSIVE MODE")
        .await
        .expect("lock the registry");
    for i in 0..100 {
        let id = format!("during-{i}");
        queue
            .publish_raw(&channel, b"{\"add_up_to\": 3}", Some(&id))
            .await;
    }
    let stored = Instant::now();
    eventually("the demands stored while beats fail", WAIT, || async {
        (db.count("SELECT count(*) FROM works").await == 100).then_some(())
    })
    .await;
    eprintln!(
        "100 demands stored in {:?} with the registry locked",
        stored.elapsed()
    );
    eventually("the silent worker shown as gone", WAIT, || async {
        with_pid(&workers(&app).await, pid).filter(|w| w["state"] == "gone")
    })
    .await;
    blocker.batch_execute("ROLLBACK").await.expect("unlock");
    eventually("the worker back to running", WAIT, || async {
        with_pid(&workers(&app).await, pid).filter(|w| w["state"] == "running")
    })
    .await;
    let text = std::fs::read_to_string(&log).expect("the consumer's log");
    let failed = text.matches("worker heartbeat failed").count();
    assert_eq!(failed, 1, "one line for a minute of failures:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_workers_gone_for_a_day_are_pruned_and_no_others() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute(
            "INSERT INTO workers (id, host, pid, version, queue, prefetch, last_seen, state) VALUES \
             ('long-gone', 'h', 1, 'v', 'q', 1, now() - interval '25 hours', 'running'), \
             ('stopped-an-hour-ago', 'h', 2, 'v', 'q', 1, now() - interval '1 hour', 'stopped'), \
             ('live', 'h', 3, 'v', 'q', 1, now(), 'running')",
        )
        .await
        .expect("rows");
    let pruned = ppctl::storage::workers::prune(&client)
        .await
        .expect("prune");
    assert_eq!(pruned, 1);
    let listed = ppctl::storage::workers::list(&client).await.expect("list");
    let shown: Vec<(&str, &str)> = listed
        .iter()
        .map(|w| (w.id.as_str(), w.state.as_str()))
        .collect();
    assert_eq!(
        shown,
        [("live", "running"), ("stopped-an-hour-ago", "stopped")]
    );
}
