//! A private RabbitMQ node: its own name, ports, mnesia and cookie; killed with
//! SIGKILL (or frozen with SIGSTOP) and booted again on the same mnesia directory.
//! The nodes of a cluster (cluster.rs) are the same thing sharing one cookie home.

use super::{alive, children_of, free_ports, log_file, signal, tail, wait_gone, Frozen, RunDir};
use anyhow::{bail, Context};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RABBIT_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// Not the /usr/sbin wrappers: they switch to the rabbitmq user and its cookie.
const RABBITMQCTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A RabbitMQ 3.10 node of our own: own node name, AMQP and distribution ports, mnesia
/// and log directories and Erlang cookie (HOME), no plugins. Runs as root.
pub struct PrivateRabbit {
    dir: PathBuf,
    /// HOME of the node and of rabbitmqctl: holds the Erlang cookie.
    home: PathBuf,
    pub node: String,
    pub port: u16,
    dist_port: u16,
    marker: (String, String),
    shell: Option<Child>,
    pub log: PathBuf,
    /// The CA clients trust, on a node whose only listener is TLS (rabbit_tls.rs, with
    /// `url` and the readiness check, `accepts`).
    pub(super) tls_ca: Option<PathBuf>,
}

impl PrivateRabbit {
    pub async fn start(run: &RunDir) -> anyhow::Result<Self> {
        let dir = run.path.join("rmq");
        let node = format!("chaos-{:08x}@localhost", rand::random::<u32>());
        let mut rabbit = Self::create(run, &dir, &dir, node, "")?;
        rabbit.restart().await?;
        Ok(rabbit)
    }

    /// Writes the node's files (not booted yet). `home` must hold the cookie
    /// (`write_cookie`); `extra_conf` is appended to rabbitmq.conf.
    pub fn create(
        run: &RunDir,
        dir: &Path,
        home: &Path,
        node: String,
        extra_conf: &str,
    ) -> anyhow::Result<Self> {
        fs::create_dir_all(dir)?;
        fs::write(dir.join("enabled_plugins"), "[].\n")?;
        fs::write(dir.join("env.conf"), "")?;
        let [port, dist_port] = free_ports::<2>();
        fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users.guest = true\n{extra_conf}"),
        )?;
        if dir == home {
            write_cookie(home)?;
        }
        Ok(Self {
            node,
            log: dir.join("rabbitmq.log"),
            dir: dir.to_path_buf(),
            home: home.to_path_buf(),
            port,
            dist_port,
            marker: run.marker(),
            shell: None,
            tls_ca: None,
        })
    }

    /// The node's own log (RABBITMQ_LOG_BASE/NODE.log).
    pub fn node_log(&self) -> String {
        fs::read_to_string(self.dir.join("log").join(format!("{}.log", self.node)))
            .unwrap_or_default()
    }

    /// Boots the node on its existing mnesia directory (durable queues and persistent
    /// messages survive) and waits until it takes clients (`accepts`).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let d = |p: &str| self.dir.join(p).into_os_string();
        let (out, err) = log_file(&self.log);
        let child = Command::new(RABBIT_SERVER)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", &self.home)
            .env("LANG", "C.UTF-8")
            .env(&self.marker.0, &self.marker.1)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d("mnesia"))
            .env("RABBITMQ_LOG_BASE", d("log"))
            .env("RABBITMQ_PID_FILE", d("beam.pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", d("env.conf"))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("start rabbitmq-server")?;
        self.shell = Some(child);
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .shell
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("rabbitmq-server exited ({status}): {}", tail(&self.log, 30));
            }
            if self.accepts().await {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(90) {
                bail!(
                    "RabbitMQ did not accept connections within 90s: {}",
                    tail(&self.log, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The node's beam.smp: from its pid file, else the wrapper shell's child.
    fn beam_pid(&self) -> Option<u32> {
        let from_file = fs::read_to_string(self.dir.join("beam.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|&p| alive(p));
        from_file.or_else(|| {
            let shell = self.shell.as_ref()?.id();
            children_of(shell).into_iter().find(|&p| alive(p))
        })
    }

    /// A hard stop: SIGKILL to the node's Erlang VM. Returns once it is gone.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let beam = self
            .beam_pid()
            .context("no beam.smp found for the private node")?;
        let mut pids = children_of(beam);
        pids.push(beam);
        signal(&pids, "KILL");
        if !wait_gone(&pids, Duration::from_secs(10)) {
            bail!("beam.smp survived SIGKILL for 10s");
        }
        self.reap_shell(Duration::from_secs(10));
        Ok(())
    }

    /// A graceful stop (`rabbitmqctl shutdown` waits for the VM to exit); SIGKILL if
    /// that does not work within its bound.
    pub async fn shutdown(&mut self) -> anyhow::Result<()> {
        if let Err(e) = self.ctl(&["shutdown"]).await {
            eprintln!("chaos: {} did not shut down ({e:#}); SIGKILL", self.node);
            return self.kill();
        }
        self.reap_shell(Duration::from_secs(30));
        Ok(())
    }

    fn reap_shell(&mut self, timeout: Duration) {
        if let Some(mut shell) = self.shell.take() {
            let start = Instant::now();
            while matches!(shell.try_wait(), Ok(None)) {
                if start.elapsed() > timeout {
                    let _ = shell.kill();
                    let _ = shell.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = fs::remove_file(self.dir.join("beam.pid"));
    }

    /// SIGSTOP to the node's Erlang VM until the guard is dropped: a frozen node keeps
    /// its sockets open and accepts TCP connections, but answers nothing.
    pub fn freeze(&self) -> anyhow::Result<Frozen> {
        let beam = self.beam_pid().context("no beam.smp found")?;
        Ok(Frozen::new(vec![beam]))
    }

    /// `rabbitmqctl -n NODE args...` with the node's HOME (and so its cookie), bounded
    /// to 60 s; its stdout on success.
    pub async fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let run = tokio::process::Command::new(RABBITMQCTL)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", &self.home)
            .env("LANG", "C.UTF-8")
            .env(&self.marker.0, &self.marker.1)
            .args(["-n", &self.node])
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .with_context(|| format!("rabbitmqctl {args:?} on {} took over 60s", self.node))?
            .context("run rabbitmqctl")?;
        if !out.status.success() {
            bail!(
                "rabbitmqctl -n {} {args:?} failed ({}): {}{}",
                self.node,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// One Erlang cookie (mode 400) in `home`, for every node and rabbitmqctl using it.
pub fn write_cookie(home: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(home)?;
    let cookie = home.join(".erlang.cookie");
    fs::write(&cookie, format!("CHAOS{:016X}", rand::random::<u64>()))?;
    fs::set_permissions(&cookie, fs::Permissions::from_mode(0o400))?;
    Ok(())
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        if self.shell.is_some() {
            let _ = self.kill();
        }
    }
}
