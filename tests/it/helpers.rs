//! Shared test fixtures: a fresh database per test, unique queue names, the API on
//! port 0, and loud failures when PostgreSQL or RabbitMQ is not there.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeleteOptions};
use lapin::{BasicProperties, Channel, Connection};
use ppctl::amqp::Topology;
use ppctl::storage::{self, admin, PgPool};
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

pub const PG_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432";
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub fn random_suffix() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// Panics with what to do when PostgreSQL is unreachable: the suite never skips.
async fn require_postgres() {
    if let Err(e) = admin::connect(&format!("{PG_URL}/postgres")).await {
        panic!("PostgreSQL is not reachable at 127.0.0.1:5432 ({e:#}). Start it with scripts/services.sh (or `make test`).");
    }
}

/// Panics with what to do when RabbitMQ is unreachable.
pub async fn require_rabbitmq() -> (Connection, Channel) {
    match ppctl::amqp::connect(AMQP_URL, "ppctl-tests").await {
        Ok(pair) => pair,
        Err(e) => panic!("RabbitMQ is not reachable at 127.0.0.1:5672 ({e:#}). Start it with scripts/services.sh (or `make test`)."),
    }
}

/// A migrated database of the test's own, dropped when the value is dropped.
pub struct TestDb {
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn new() -> Self {
        require_postgres().await;
        let url = format!("{PG_URL}/ppctl_test_{}", random_suffix());
        admin::setup(&url)
            .await
            .expect("create and migrate the test database");
        let pool = storage::pool(&url, 8).expect("pool");
        Self { url, pool }
    }

    pub async fn client(&self) -> storage::Client {
        self.pool.get().await.expect("database connection")
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.client()
            .await
            .query_one(sql, &[])
            .await
            .expect(sql)
            .get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let url = self.url.clone();
        // Drop cannot await; a short-lived runtime on another thread can. Its wait must
        // not freeze the test's runtime: a connection that runtime is opening would stall
        // in authentication, and DROP DATABASE would wait for it (60 s, the server's
        // authentication_timeout). Tests run on the multi-thread runtime for this.
        let drop_it = move || {
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(admin::drop_database(&url)).ok()
            })
            .join()
        };
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let _ = if multi_thread {
            tokio::task::block_in_place(drop_it)
        } else {
            drop_it()
        };
    }
}

/// Queue names of the test's own, deleted when the value is dropped.
pub struct TestQueue {
    pub topology: Topology,
}

impl TestQueue {
    pub fn new() -> Self {
        Self {
            topology: Topology::new(&format!("pp_test_{}", random_suffix())),
        }
    }

    pub fn name(&self) -> &str {
        &self.topology.queue
    }

    /// Declares the topology and returns a confirming channel on it.
    pub async fn channel(&self) -> (Connection, Channel) {
        let (conn, channel) = require_rabbitmq().await;
        self.topology.declare(&channel).await.expect("declare");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        (conn, channel)
    }

    /// Publishes an arbitrary body (poison included) and waits for its confirm.
    pub async fn publish_raw(&self, channel: &Channel, body: &[u8], message_id: Option<&str>) {
        let mut props = BasicProperties::default().with_delivery_mode(2);
        if let Some(id) = message_id {
            props = props.with_message_id(id.into());
        }
        self.publish_with(channel, body, props).await;
    }

    /// Publishes with these properties and waits for the confirm.
    pub async fn publish_with(&self, channel: &Channel, body: &[u8], props: BasicProperties) {
        channel
            .basic_publish(
                "".into(),
                self.name().into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }

    pub async fn counts(&self, channel: &Channel) -> (u32, u32) {
        let ready = self.topology.declare(channel).await.expect("declare");
        (
            ready,
            self.topology.dead_count(channel).await.expect("dead count"),
        )
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let topology = self.topology.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let (_conn, channel) = ppctl::amqp::connect(AMQP_URL, "ppctl-tests-cleanup")
                    .await
                    .ok()?;
                for q in [&topology.queue, &topology.dead_queue] {
                    let _ = channel
                        .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
                let _ = channel
                    .exchange_delete(topology.dead_exchange.as_str().into(), Default::default())
                    .await;
                Some(())
            })
        })
        .join();
    }
}

/// The API on an ephemeral port, serving `db`.
pub struct TestApp {
    pub addr: SocketAddr,
    pub handle: actix_web::dev::ServerHandle,
}

impl TestApp {
    pub async fn spawn(db: &TestDb) -> Self {
        Self::spawn_with(db.pool.clone(), None).await
    }

    pub async fn spawn_with(pool: PgPool, api_token: Option<String>) -> Self {
        let config = ppctl::http::ServerConfig {
            api_token,
            ..Default::default()
        };
        Self::spawn_config(pool, config).await
    }

    /// The API with `/dead-letters` reading the dead-letter queue of `queue`.
    pub async fn spawn_with_queue(db: &TestDb, queue: &str, api_token: Option<String>) -> Self {
        let source = ppctl::http::dead::DeadLetterSource::new(AMQP_URL, Topology::new(queue))
            .expect("AMQP URL");
        let config = ppctl::http::ServerConfig {
            api_token,
            dead_letters: Some(source),
            ..Default::default()
        };
        Self::spawn_config(db.pool.clone(), config).await
    }

    /// One HTTP worker, whatever `config` says.
    pub async fn spawn_config(pool: PgPool, config: ppctl::http::ServerConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let config = ppctl::http::ServerConfig {
            workers: Some(1),
            ..config
        };
        let server = ppctl::http::start(listener, pool, config).expect("start server");
        let handle = server.handle();
        tokio::spawn(server);
        Self { addr, handle }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends a request through the project's own client and returns (status, body).
    pub async fn call(
        &self,
        method: &str,
        target: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut request = ppctl::rawhttp::Request::new(method, target).expect("request");
        request.body = body.map(|b| b.as_bytes().to_vec());
        let response = ppctl::rawhttp::send(&self.addr.to_string(), &request)
            .await
            .expect("response");
        let json = serde_json::from_slice(&response.body).unwrap_or_else(|e| {
            panic!(
                "{method} {target}: body is not JSON ({e}): {}",
                String::from_utf8_lossy(&response.body)
            )
        });
        (response.status, json)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// Polls `check` until it returns Some, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Settings the `ppctl` binary reads from the environment; cleared so a developer's
/// shell cannot change what a test sees.
const PPCTL_ENV: [&str; 16] = [
    "DATABASE_URL",
    "AMQP_URL",
    "PP_QUEUE",
    "PP_HTTP_ADDR",
    "PP_API_URL",
    "PP_API_TOKEN",
    "PP_RAW_ADDR",
    "PP_DB_POOL_SIZE",
    "PP_MAX_STREAMS",
    "RUST_LOG",
    "PP_LOG_FORMAT",
    "PP_TRACE_URL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_SERVICE_NAME",
];

/// Runs the real `ppctl` binary to completion without blocking the test's runtime
/// (which also serves the TestApp the binary may be talking to).
pub async fn ppctl(args: &[&str]) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ppctl"));
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for var in PPCTL_ENV {
        command.env_remove(var);
    }
    // A guard against a hang, not a timing assertion.
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("ppctl {args:?} did not finish within 60s"))
        .expect("run the ppctl binary")
}

/// stdout and stderr of a finished process, as text.
pub fn outputs(output: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The system interpreter, whose python3-pika `scripts/services.sh chaos-tools` installs.
pub const PYTHON: &str = "/usr/bin/python3";

/// Runs one of the tests' Python scripts with `job` (JSON) on stdin; its stdout, parsed.
pub async fn run_python(script: &str, job: &serde_json::Value) -> serde_json::Value {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(PYTHON)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {PYTHON}: {e} (scripts/services.sh chaos-tools installs it with pika)"
            )
        });
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(job.to_string().as_bytes())
        .await
        .expect("write the job");
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} finishes within 60 s"))
        .expect("the script runs");
    assert!(
        out.status.success(),
        "{script} failed (is pika installed? scripts/services.sh chaos-tools): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script answers JSON")
}

/// A process's /metrics text (`--metrics-addr`).
pub async fn scrape(addr: &str) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text")
}

/// The value of a series (with its labels) in Prometheus text.
pub fn series(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
