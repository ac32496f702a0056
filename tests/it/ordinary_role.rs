//! ppctl under the kind of role a managed PostgreSQL hands out: it owns its database and
//! nothing more (no superuser, no CREATEDB, no pg_monitor). The whole pipeline runs with
//! the real binary as that role, and what the role cannot see is said, never guessed.

use super::dead::list_json;
use super::helpers::*;
use super::scale::{free_addr, terminate};
use super::traced::{logs_dir, spawn};
use std::time::Duration;

/// A role that owns a database of its own, both dropped on drop.
pub(super) struct OrdinaryRole {
    pub name: String,
    pub url: String,
    /// The superuser's URL of the server, without a database.
    server: String,
    admin_url: String,
}

impl OrdinaryRole {
    /// On the shared server.
    pub async fn new() -> Self {
        Self::on(PG_URL, "127.0.0.1:5432").await
    }

    /// Creates the role and its empty database (as a provider's console would) on the
    /// server a superuser reaches at `server` (`postgres://postgres:PW@HOST:PORT`); the
    /// role itself migrates it (`ppctl db setup`).
    pub async fn on(server: &str, host_port: &str) -> Self {
        let suffix = random_suffix();
        let name = format!("ppctl_app_{suffix}");
        let db = format!("ppctl_test_{suffix}");
        let admin = ppctl::storage::admin::connect(&format!("{server}/postgres"))
            .await
            .expect("a superuser connection");
        let role = format!(
            "CREATE ROLE {name} LOGIN PASSWORD 'app-pw' NOSUPERUSER NOCREATEDB NOCREATEROLE"
        );
        let database = format!("CREATE DATABASE {db} OWNER {name}");
        for sql in [role, database] {
            admin.batch_execute(&sql).await.expect(&sql);
        }
        Self {
            url: format!("postgres://{name}:app-pw@{host_port}/{db}"),
            admin_url: format!("{server}/{db}"),
            server: server.to_string(),
            name,
        }
    }

    /// Runs `sql` as the superuser (a grant, a revoke).
    pub async fn admin(&self, sql: &str) {
        let admin = ppctl::storage::admin::connect(&format!("{}/postgres", self.server))
            .await
            .expect("admin");
        admin.batch_execute(sql).await.expect(sql);
    }

    /// The settings a ppctl process gets: this role's URL and the test's queue.
    pub fn env(&self, queue: &TestQueue) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.url.clone()),
            ("AMQP_URL", AMQP_URL.to_string()),
            ("PP_QUEUE", queue.name().to_string()),
        ]
    }

    /// A superuser's count on the role's database (what really happened).
    pub async fn count(&self, sql: &str) -> i64 {
        let client = ppctl::storage::admin::connect(&self.admin_url)
            .await
            .expect("admin connection");
        client.query_one(sql, &[]).await.expect(sql).get(0)
    }
}

impl Drop for OrdinaryRole {
    fn drop(&mut self) {
        let (url, role) = (self.admin_url.clone(), self.name.clone());
        let server = self.server.clone();
        let drop_both = move || {
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    ppctl::storage::admin::drop_database(&url).await.ok()?;
                    let admin = ppctl::storage::admin::connect(&format!("{server}/postgres"))
                        .await
                        .ok()?;
                    admin.batch_execute(&format!("DROP ROLE {role}")).await.ok()
                })
            })
            .join()
        };
        let _ = tokio::task::block_in_place(drop_both);
    }
}

/// Runs `ppctl args` with `env` only, to the end: (exit code, stdout, stderr).
pub(super) async fn run(env: &[(&str, String)], args: &[&str]) -> (i32, String, String) {
    let log = logs_dir().join("run.log");
    let child = spawn(args, env, &log);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("ppctl {args:?} ends within 30 s"))
        .expect("output");
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

const DONE: &str = "SELECT count(*) FROM works WHERE status = 'done'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_pipeline_runs_under_a_role_that_only_owns_its_database() {
    let (role, queue, dir) = (OrdinaryRole::new().await, TestQueue::new(), logs_dir());
    let env = role.env(&queue);
    let (code, _, err) = run(&env, &["db", "setup"]).await;
    assert_eq!(code, 0, "db setup as the role: {err}");
    let addr = free_addr();
    let serve = spawn(&["serve", "--addr", &addr], &env, &dir.join("serve.log"));
    let consume = spawn(
        &["consume", "--sweep-every", "200ms"],
        &env,
        &dir.join("c.log"),
    );
    let (code, _, err) = run(&env, &["produce", "--count", "20", "--every", "0"]).await;
    assert_eq!(code, 0, "produce: {err}");
    let (_conn, channel) = queue.channel().await;
    queue
        .publish_raw(&channel, b"not json", Some("poison"))
        .await;
    let url = format!("http://{addr}");
    let health = eventually("serve answers", WAIT_LONG, || async {
        reqwest::get(format!("{url}/health")).await.ok()
    })
    .await;
    assert_eq!(health.status(), 200, "{:?}", health.text().await);
    let client = reqwest::Client::new();
    for n in [3, 4, 5] {
        let posted = client
            .post(format!("{url}/works"))
            .json(&serde_json::json!({"add_up_to": n}));
        assert_eq!(posted.send().await.expect("POST").status(), 201);
    }
    eventually("20 queued and 3 API works done", WAIT_LONG, || async {
        (role.count(DONE).await == 23).then_some(())
    })
    .await;
    // Every session ppctl opened is the role's, none a superuser's.
    let others = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ppctl' \
                  AND datname = current_database() AND pid <> pg_backend_pid() \
                  AND usename <> (SELECT datdba::regrole::text \
                  FROM pg_database WHERE datname = current_database())";
    assert_eq!(role.count(others).await, 0);
    let mine = others.replace("usename <>", "usename =");
    assert!(
        role.count(&mine).await >= 2,
        "serve's and consume's sessions are the role's"
    );
    assert!(terminate(consume).await.success());
    assert!(terminate(serve).await.success());
    let started = std::fs::read_to_string(dir.join("c.log")).unwrap_or_default();
    assert!(
        started.contains(r#"rabbitmq="unencrypted (amqp://)""#),
        "{started}"
    );
    let listed = list_json(&queue).await;
    assert_eq!(listed["count"], 1, "the poison dead-lettered: {listed}");
    let (code, out, err) = run(&env, &["db", "status"]).await;
    assert_eq!(code, 0, "db status: {err}");
    assert!(out.contains("replication: no standby"), "{out}");
    let (code, _, err) = run(&env, &["db", "prune", "--older-than", "0", "--yes"]).await;
    assert_eq!(code, 0, "db prune: {err}");
    assert_eq!(role.count("SELECT count(*) FROM works").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_after_standby_refuses_to_start_when_the_role_cannot_see_the_standbys() {
    let (role, queue) = (OrdinaryRole::new().await, TestQueue::new());
    let env = role.env(&queue);
    let (code, _, err) = run(&env, &["db", "setup"]).await;
    assert_eq!(code, 0, "db setup as the role: {err}");
    let (code, _, err) = run(&env, &["consume", "--ack-after", "standby"]).await;
    assert_eq!(code, 2, "{err}");
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("GRANT pg_monitor"),
        "{err}"
    );
    // With the grant, the same role may: the consumer starts and stays up.
    role.admin(&format!("GRANT pg_monitor TO {}", role.name))
        .await;
    let log = logs_dir().join("granted.log");
    let mut consume = spawn(&["consume", "--ack-after", "standby"], &env, &log);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        consume.try_wait().expect("status").is_none(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(terminate(consume).await.success());
}

const WAIT_LONG: Duration = Duration::from_secs(60);

/// The operator controls of issue 24 under the same role: the workers registry, the pause
/// switch, a periodic schedule, the webhook outbox (its triggers, its switch) and a bulk
/// action, each read back as the superuser sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_controls_work_under_a_role_that_only_owns_its_database() {
    let (role, queue, dir) = (OrdinaryRole::new().await, TestQueue::new(), logs_dir());
    let mut env = role.env(&queue);
    let (code, _, err) = run(&env, &["db", "setup"]).await;
    assert_eq!(code, 0, "db setup as the role: {err}");
    let (code, _, err) = run(&env, &["pipeline", "pause", "--via", "db"]).await;
    assert_eq!(code, 0, "pause: {err}");
    // Nothing listens there: deliveries stay pending, recorded all the same.
    env.push(("PP_WEBHOOK_URL", format!("http://{}/hooks", free_addr())));
    env.push((
        "PP_WEBHOOK_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
    ));
    let consume = spawn(
        &["consume", "--sweep-every", "200ms"],
        &env,
        &dir.join("c.log"),
    );
    let (code, _, err) = run(&env, &["produce", "--count", "10", "--every", "0"]).await;
    assert_eq!(code, 0, "produce: {err}");
    let paused = "SELECT count(*) FROM workers WHERE state = 'paused'";
    eventually("the consumer registered, paused", WAIT_LONG, || async {
        (role.count(paused).await == 1).then_some(())
    })
    .await;
    assert_eq!(role.count(DONE).await, 0, "nothing done while paused");
    let (code, _, err) = run(
        &env,
        &[
            "schedule",
            "add",
            "tick",
            "--every",
            "1s",
            "--add-up-to",
            "2",
        ],
    )
    .await;
    assert_eq!(code, 0, "schedule add: {err}");
    let (code, _, err) = run(&env, &["pipeline", "resume", "--via", "db"]).await;
    assert_eq!(code, 0, "resume: {err}");
    let cron_done =
        "SELECT count(*) FROM works WHERE work_code LIKE 'cron-tick-%' AND status = 'done'";
    eventually(
        "the 10 queued and a scheduled work done",
        WAIT_LONG,
        || async {
            (role.count(DONE).await >= 11 && role.count(cron_done).await >= 1).then_some(())
        },
    )
    .await;
    let recorded = "SELECT count(*) FROM webhook_delivery_states";
    assert!(
        role.count(recorded).await >= 11,
        "a delivery per finished work"
    );
    let (code, out, err) = run(
        &env,
        &[
            "work",
            "cancel",
            "--work-code",
            "cron-tick-",
            "--dry-run",
            "--via",
            "db",
        ],
    )
    .await;
    assert_eq!(code, 0, "bulk dry run: {err}");
    assert!(out.contains("would change"), "{out}");
    assert!(terminate(consume).await.success());
    let stopped = "SELECT count(*) FROM workers WHERE state = 'stopped'";
    assert_eq!(role.count(stopped).await, 1, "its last beat");
}
