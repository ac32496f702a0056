//! A rolling upgrade with real processes. The newer ppctl is this same binary with
//! `PP_TEST_EXTRA_MIGRATIONS` (debug builds only) naming one more, additive, migration:
//! its `db migrate` applies and records it through the real code, and its schema check
//! knows it. The processes started without the variable are the older binaries.

use super::helpers::*;
use super::scale::{free_addr, terminate};
use super::upgrades::{ExtraMigrations, ADD_NOTE};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// `ppctl ARGS` with `env`, its stderr in `log` (read by the test at the end).
fn spawn(args: &[&str], env: &[(&str, String)], log: &std::path::Path) -> Child {
    let stderr = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_ppctl"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "info,ppctl::http=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("start ppctl")
}

fn env_of(db: &TestDb, queue: &TestQueue) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.url.clone()),
        ("AMQP_URL", AMQP_URL.to_string()),
        ("PP_QUEUE", queue.name().to_string()),
        ("PP_DB_POOL_SIZE", "4".to_string()),
    ]
}

async fn request(addr: &str, method: &str, path: &str) -> (u16, serde_json::Value) {
    let mut request = ppctl::rawhttp::Request::new(method, path).expect("request");
    if method == "POST" {
        request.body = Some(br#"{"add_up_to": 7}"#.to_vec());
    }
    match ppctl::rawhttp::send(addr, &request).await {
        Ok(r) => (
            r.status,
            serde_json::from_slice(&r.body).unwrap_or_default(),
        ),
        Err(_) => (0, serde_json::Value::Null),
    }
}

/// Ends every session on the test's database but this one: every process reconnects.
async fn terminate_sessions(admin: &tokio_postgres::Client) -> i64 {
    admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("terminate")
        .get(0)
}

async fn count(admin: &tokio_postgres::Client, sql: &str) -> i64 {
    admin.query_one(sql, &[]).await.expect(sql).get(0)
}

async fn wait_healthy(addr: &str) {
    eventually("serve healthy", Duration::from_secs(30), || async {
        (request(addr, "GET", "/health").await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_additive_migration_applied_while_serve_consume_and_produce_run() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let _declared = queue.channel().await;
    let (env, logs) = (env_of(&db, &queue), ExtraMigrations::new(&[]));
    let addr = free_addr();
    let serve = spawn(
        &["serve", "--addr", &addr, "--http-workers", "1"],
        &env,
        &logs.0.join("serve"),
    );
    let consume = spawn(
        &["consume", "--sweep-every", "500ms"],
        &env,
        &logs.0.join("consume"),
    );
    wait_healthy(&addr).await;
    let produce = spawn(
        &["produce", "--every", "20ms", "--count", "300"],
        &env,
        &logs.0.join("produce"),
    );
    let admin = ppctl::storage::admin::connect(&db.url)
        .await
        .expect("connect");
    let newer = ExtraMigrations::new(&[ADD_NOTE]);
    let mut statuses = Vec::new();
    for i in 0..100 {
        statuses.push(request(&addr, "POST", "/works").await.0);
        match i {
            // Before, after the migration (twice): every process opens new connections,
            // against a database older, then newer than itself.
            20 | 60 | 80 => {
                assert!(
                    terminate_sessions(&admin).await > 0,
                    "nothing to end at {i}"
                );
                // The pool finds its connections closed before the next checkout.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            40 => {
                let out = super::upgrades::migrate_as_newer(&db, &newer, &[])
                    .wait_with_output()
                    .await
                    .expect("migrate");
                let (stdout, stderr) = outputs(&out);
                assert!(out.status.success(), "{stdout}{stderr}");
                assert!(stdout.contains("1 migration(s) applied"), "{stdout}");
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let failed: Vec<(usize, u16)> = statuses
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, s)| *s != 201)
        .collect();
    assert!(
        failed.is_empty(),
        "POSTs not answered 201 (index, status): {failed:?}"
    );
    let note = "SELECT count(*) FROM pg_attribute WHERE attrelid = 'works'::regclass AND attname = 'rolling_note'";
    assert_eq!(count(&admin, note).await, 1, "the migration ran");
    // All 300 published and confirmed: produce --count exits 0 by itself.
    let mut produce = produce;
    let produced = tokio::time::timeout(Duration::from_secs(30), produce.wait()).await;
    assert!(
        produced.is_ok_and(|s| s.is_ok_and(|s| s.success())),
        "produce"
    );
    let expected = 300 + statuses.len() as i64;
    let started = Instant::now();
    let mut done = 0;
    while done != expected && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        done = count(&admin, "SELECT count(*) FROM works WHERE status = 'done'").await;
    }
    if done != expected {
        let by_status: Vec<(String, i64)> = admin
            .query("SELECT status::text, count(*) FROM works GROUP BY 1", &[])
            .await
            .expect("statuses")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let log = std::fs::read_to_string(logs.0.join("consume")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        panic!(
            "{done} of {expected} done ({by_status:?}); consume's log, last lines first:\n{}",
            tail.join("\n")
        );
    }
    let after_kill = request(&addr, "GET", "/health").await;
    assert_eq!(after_kill.0, 200, "{}", after_kill.1);
    assert_eq!(
        count(&admin, "SELECT count(*) FROM works").await,
        expected,
        "no work twice"
    );
    eprintln!(
        "all {expected} works done {:?} after produce ended",
        started.elapsed()
    );
    assert!(terminate(consume).await.success());
    assert!(terminate(serve).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_ahead_of_its_database_waits_for_db_migrate_then_works_without_restart() {
    let (db, queue) = (TestDb::new().await, TestQueue::new());
    let (_conn, channel) = queue.channel().await;
    let newer = ExtraMigrations::new(&[ADD_NOTE]);
    let mut env = env_of(&db, &queue);
    env.push(("PP_TEST_EXTRA_MIGRATIONS", newer.0.display().to_string()));
    let addr = free_addr();
    let logs = ExtraMigrations::new(&[]);
    let serve = spawn(
        &["serve", "--addr", &addr, "--http-workers", "1"],
        &env,
        &logs.0.join("serve"),
    );
    let consume = spawn(
        &["consume", "--sweep-every", "500ms"],
        &env,
        &logs.0.join("consume"),
    );
    for i in 0..20 {
        queue
            .publish_raw(
                &channel,
                br#"{"add_up_to": 3}"#,
                Some(&format!("ahead-{i}")),
            )
            .await;
    }
    let (status, health) = eventually("serve answers", Duration::from_secs(30), || async {
        let answer = request(&addr, "GET", "/health").await;
        (answer.0 != 0).then_some(answer)
    })
    .await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["database"], "schema", "{health}");
    let why = health["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("0100_rolling_note") && why.contains("ppctl db migrate"),
        "{health}"
    );
    assert_eq!(request(&addr, "POST", "/works").await.0, 503);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ready, _) = queue.counts(&channel).await;
    assert_eq!(
        ready, 20,
        "the waiting consumer took deliveries it cannot store"
    );
    let out = super::upgrades::migrate_as_newer(&db, &newer, &[])
        .wait_with_output()
        .await
        .expect("migrate");
    assert!(out.status.success(), "{:?}", outputs(&out));
    let started = Instant::now();
    wait_healthy(&addr).await;
    let healthy_after = started.elapsed();
    eprintln!("serve healthy {healthy_after:?} after db migrate");
    assert_eq!(request(&addr, "POST", "/works").await.0, 201);
    eventually(
        "the queue's works and the API's done",
        Duration::from_secs(30),
        || async {
            (db.count("SELECT count(*) FROM works WHERE status = 'done'")
                .await
                == 21)
                .then_some(())
        },
    )
    .await;
    assert!(
        healthy_after < Duration::from_secs(5),
        "healthy {healthy_after:?} after db migrate"
    );
    assert!(terminate(consume).await.success());
    assert!(terminate(serve).await.success());
    let said = std::fs::read_to_string(logs.0.join("consume")).expect("consume log");
    assert_eq!(
        said.matches("waiting for the database schema").count(),
        1,
        "{said}"
    );
    assert_eq!(
        said.matches("schema fits this ppctl now").count(),
        1,
        "{said}"
    );
}
