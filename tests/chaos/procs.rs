//! The real `ppctl` binary as child processes: started with a scenario's settings in
//! the environment, logs to files under target/chaos-logs, killed or signalled by pid.

use crate::infra::{self, MARKER};
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Settings the `ppctl` binary reads from the environment; cleared so a developer's
/// shell cannot change what the suite sees.
const PPCTL_ENV: [&str; 13] = [
    "DATABASE_URL",
    "AMQP_URL",
    "PP_QUEUE",
    "PP_QUEUE_TYPE",
    "PP_HTTP_ADDR",
    "PP_API_URL",
    "PP_API_TOKEN",
    "PP_RAW_ADDR",
    "PP_DB_POOL_SIZE",
    "PP_HTTP_WORKERS",
    "PP_ACK_AFTER",
    "PP_DATABASE_READ_URL",
    "PP_MAX_REPLICA_LAG",
];

/// Where a scenario's processes connect, and where their logs go.
#[derive(Debug, Clone)]
pub struct Env {
    pub scenario: String,
    pub database_url: String,
    pub amqp_url: String,
    pub queue: String,
    pub http_addr: Option<String>,
    pub run_dir: PathBuf,
    pub log_dir: PathBuf,
}

/// A running `ppctl` process. Killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    pid: u32,
    pub log: PathBuf,
    exit: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(env: &Env, name: &str, args: &[&str]) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&env.log_dir)?;
        let log = env.log_dir.join(format!("{}-{name}.log", env.scenario));
        let file = std::fs::File::create(&log)?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_ppctl"));
        command.args(args);
        for var in PPCTL_ENV {
            command.env_remove(var);
        }
        command
            .env("DATABASE_URL", &env.database_url)
            .env("AMQP_URL", &env.amqp_url)
            .env("PP_QUEUE", &env.queue)
            .env("PP_DB_POOL_SIZE", "8")
            // Debug for the consumer's per-batch outcome (stored, duplicates, dead).
            .env("RUST_LOG", "info,lapin=warn,ppctl::worker::consumer=debug")
            .env("NO_COLOR", "1")
            .env(MARKER, &env.run_dir);
        if let Some(addr) = &env.http_addr {
            command.env("PP_HTTP_ADDR", addr);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start ppctl {args:?}"))?;
        let pid = child.id().context("no pid")?;
        Ok(Self {
            name: name.to_string(),
            child,
            pid,
            log,
            exit: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Still running (has not exited).
    pub fn running(&mut self) -> bool {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit.is_none()
    }

    /// Exited with an error or by a signal; a clean exit (a producer done with its
    /// `--count`) is not a failure.
    pub fn failed(&mut self) -> bool {
        !self.running() && !self.exit.is_some_and(|s| s.success())
    }

    pub fn sigterm(&self) {
        infra::signal(&[self.pid], "TERM");
    }

    /// SIGKILL, then reap.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        let _ = self.child.start_kill();
        self.wait(Duration::from_secs(10)).await.map(|_| ())
    }

    /// Waits for the exit, at most `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.exit {
            return Ok(status);
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                self.exit = Some(status);
                Ok(status)
            }
            Err(_) => bail!(
                "{} (pid {}) did not exit within {timeout:?}; log tail:\n{}",
                self.name,
                self.pid,
                self.tail(15)
            ),
        }
    }

    /// SIGTERM, then a bounded wait: a graceful stop must exit 0.
    pub async fn stop(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        if !self.running() {
            bail!(
                "{} had already exited ({:?}); log tail:\n{}",
                self.name,
                self.exit,
                self.tail(15)
            );
        }
        self.sigterm();
        let status = self.wait(timeout).await?;
        if !status.success() {
            bail!(
                "{} exited with {status} after SIGTERM (expected 0); log tail:\n{}",
                self.name,
                self.tail(15)
            );
        }
        Ok(start.elapsed())
    }

    pub fn tail(&self, n: usize) -> String {
        infra::tail(&self.log, n)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Redeliveries the consumer acknowledged without a second work, summed from its
    /// per-batch debug lines (`BatchOutcome { stored, duplicates, dead }`); None when it
    /// logged none (no batch, or RUST_LOG above does not reach the module logging them).
    pub fn deduplicated(&self) -> Option<u64> {
        let text = self.log_text();
        let outcomes: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split("BatchOutcome {").nth(1))
            .collect();
        if outcomes.is_empty() {
            return None;
        }
        let n = outcomes
            .into_iter()
            .filter_map(|l| l.split("duplicates: ").nth(1))
            .filter_map(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        Some(n)
    }
}

/// Runs `ppctl args` to completion (bounded), failing unless it exits 0.
pub async fn run_ok(env: &Env, name: &str, args: &[&str], timeout: Duration) -> anyhow::Result<()> {
    let mut proc = Proc::spawn(env, name, args)?;
    let status = proc.wait(timeout).await?;
    if !status.success() {
        bail!("ppctl {args:?} exited with {status}:\n{}", proc.tail(15));
    }
    Ok(())
}
