//! A private RabbitMQ 3.10 node with a TLS listener only (no plain AMQP port), for
//! the amqps tests; the shared broker on 5672 is never touched. The recipe is the
//! chaos suite's (tests/chaos/infra/rabbit.rs): its own node name, ports, mnesia and
//! Erlang cookie, started with `env -i`. A node takes seconds to boot, so the tests
//! that run at the same time share one (per kind); the last one to let go of it kills
//! it and removes its directory, and a run killed before that is cleaned up by the
//! next (its owner.pid names a dead process).

use super::tls_certs::Certs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

const RABBIT_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const RABBITMQCTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const PREFIX: &str = "ppctl-it-tls-";

pub struct TlsBroker {
    pub dir: PathBuf,
    pub port: u16,
    pub node: String,
    pub certs: Certs,
    /// The rabbitmq-server shell: reaped once its node is killed.
    shell: Option<std::process::Child>,
}

/// One node per kind: [client certificate optional, client certificate required].
static SHARED: tokio::sync::Mutex<[Weak<TlsBroker>; 2]> =
    tokio::sync::Mutex::const_new([Weak::new(), Weak::new()]);

impl TlsBroker {
    /// A node whose TLS listener verifies client certificates when they are shown
    /// (`fail_if_no_peer_cert = false`), or requires one (`true`).
    pub async fn shared(require_client_cert: bool) -> Arc<Self> {
        let mut shared = SHARED.lock().await;
        let slot = &mut shared[usize::from(require_client_cert)];
        if let Some(broker) = slot.upgrade() {
            return broker;
        }
        let broker = Arc::new(Self::start(require_client_cert).await);
        *slot = Arc::downgrade(&broker);
        broker
    }

    async fn start(require_client_cert: bool) -> Self {
        cleanup_stale();
        let dir = std::env::temp_dir().join(format!("{PREFIX}{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(dir.join("home")).expect("the node's directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::write(dir.join("owner.pid"), std::process::id().to_string()).expect("owner");
        let cookie = dir.join("home/.erlang.cookie");
        std::fs::write(&cookie, format!("TLS{:016X}", rand::random::<u64>())).expect("cookie");
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400)).expect("400");
        let certs = Certs::generate(&dir).expect("the test certificates");
        let [port, dist_port] = free_ports();
        let node = format!("tls-{:08x}@localhost", rand::random::<u32>());
        let mut broker = Self {
            dir,
            port,
            node,
            certs,
            shell: None,
        };
        broker.write_config(require_client_cert);
        broker.shell = Some(broker.boot(dist_port));
        broker.wait_ready().await;
        broker
    }

    fn write_config(&self, require_client_cert: bool) {
        let c = &self.certs;
        let conf = format!(
            "listeners.tcp = none\nlisteners.ssl.default = 127.0.0.1:{}\n\
             loopback_users.guest = true\n\
             ssl_options.cacertfile = {}\nssl_options.certfile = {}\nssl_options.keyfile = {}\n\
             ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = {require_client_cert}\n",
            self.port,
            c.ca.display(),
            c.server_cert.display(),
            c.server_key.display()
        );
        std::fs::write(self.dir.join("rabbitmq.conf"), conf).expect("rabbitmq.conf");
        std::fs::write(self.dir.join("enabled_plugins"), "[].\n").expect("enabled_plugins");
        std::fs::write(self.dir.join("env.conf"), "").expect("env.conf");
    }

    fn boot(&self, dist_port: u16) -> std::process::Child {
        let d = |p: &str| self.dir.join(p).into_os_string();
        let log = std::fs::File::create(self.dir.join("server.out")).expect("server.out");
        Command::new(RABBIT_SERVER)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", d("home"))
            .env("LANG", "C.UTF-8")
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            // The TLS port: with `listeners.tcp = none` nothing plain listens on it.
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d("mnesia"))
            .env("RABBITMQ_LOG_BASE", d("log"))
            .env("RABBITMQ_PID_FILE", d("beam.pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d("rabbitmq.conf"))
            .env("RABBITMQ_CONF_ENV_FILE", d("env.conf"))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start rabbitmq-server (is RabbitMQ installed?)")
    }

    /// Until the TLS port accepts TCP (RabbitMQ opens its listeners last, once booted).
    /// Not through ppctl's client, which is what the tests test: a broken client must
    /// fail the test's assertions, not the set-up. Fails with the node's output when
    /// the port is not open within 90 s.
    async fn wait_ready(&mut self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(90) {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if let Some(status) = self
                .shell
                .as_mut()
                .and_then(|s| s.try_wait().ok().flatten())
            {
                let out = std::fs::read_to_string(self.dir.join("server.out")).unwrap_or_default();
                panic!("the private TLS RabbitMQ exited ({status}): {out}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let out = std::fs::read_to_string(self.dir.join("server.out")).unwrap_or_default();
        panic!("the private TLS RabbitMQ did not open its port within 90s: {out}");
    }

    /// `amqps://guest:guest@HOST:PORT/%2f?QUERY`.
    pub fn url(&self, host: &str, query: &str) -> String {
        format!("amqps://guest:guest@{host}:{}/%2f?{query}", self.port)
    }

    /// `rabbitmqctl -n NODE args…` with the node's cookie; its stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new(RABBITMQCTL)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", self.dir.join("home"))
            .env("LANG", "C.UTF-8")
            .args(["-n", &self.node])
            .args(args)
            .output()
            .expect("run rabbitmqctl");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "rabbitmqctl {args:?}: {stdout}");
        stdout
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        kill_node(&self.dir);
        if let Some(mut shell) = self.shell.take() {
            // It exits with its node; killed too if the node never wrote its pid file.
            let _ = shell.kill();
            let _ = shell.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGKILL to the node's Erlang VM (its pid file) and that VM's children; never epmd,
/// which every Erlang node on the machine shares.
fn kill_node(dir: &Path) {
    let Some(beam) = std::fs::read_to_string(dir.join("beam.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{beam}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()) {
        return; // gone already, or the pid was reused
    }
    let mut pids = children_of(beam);
    pids.push(beam);
    let _ = Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
    let start = Instant::now();
    while Path::new(&format!("/proc/{beam}")).exists() && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The ppid is the second field after the parenthesised command name.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after.split_whitespace().nth(1) == Some(&parent.to_string())
        })
        .collect()
}

/// Nodes left by a test run that was killed before its guards ran.
fn cleanup_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for path in entries.flatten().map(|e| e.path()) {
        let ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(PREFIX));
        let owner = std::fs::read_to_string(path.join("owner.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let owner_alive = owner.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if ours && !owner_alive {
            kill_node(&path);
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("addr").port())
}
