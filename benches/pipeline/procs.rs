//! ppctl processes under test: spawned from the bench's own build, stopped with SIGTERM,
//! and asked for their peak resident memory.

use anyhow::{bail, Context};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    /// Starts `ppctl ARGS` with `env`; its logs go to target/bench-NAME.log.
    pub fn spawn(name: &str, args: &[&str], env: &[(&str, String)]) -> anyhow::Result<Self> {
        let log = std::fs::File::create(format!("target/bench-{name}.log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_ppctl"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start ppctl {name}"))?;
        Ok(Self {
            name: name.to_string(),
            child,
        })
    }

    /// Runs `ppctl ARGS` to completion and returns how long it took.
    pub fn run(name: &str, args: &[&str], env: &[(&str, String)]) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let mut proc = Self::spawn(name, args, env)?;
        let status = proc.child.wait()?;
        if !status.success() {
            bail!("ppctl {name} failed ({status}); see target/bench-{name}.log");
        }
        Ok(start.elapsed())
    }

    /// VmHWM: the most resident memory the process has had, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    /// A KiB field of /proc/PID/status: `VmRSS:` (resident now), `RssAnon:` (its heap
    /// and stacks, without the binary's pages that fault in as code paths are first run).
    pub fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// SIGTERM, then waits up to 30 s for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("ppctl {} exited with {status} after SIGTERM", self.name);
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("ppctl {} did not stop within 30 s of SIGTERM", self.name)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until `GET /health` answers 200 on `addr`.
pub async fn wait_healthy(addr: &str) -> anyhow::Result<()> {
    let request = ppctl::rawhttp::Request::new("GET", "/health")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(response) = ppctl::rawhttp::send(addr, &request).await {
            if response.status == 200 {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("serve on {addr} did not become healthy")
}

/// The environment of a ppctl under test: its database, the broker, its queue and the
/// API's address.
pub fn env(db_url: &str, queue: &str, addr: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db_url.to_string()),
        ("AMQP_URL", crate::AMQP.to_string()),
        ("PP_QUEUE", queue.to_string()),
        ("PP_HTTP_ADDR", addr.to_string()),
    ]
}

/// A free loopback port (bind to 0, read it, release it).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Polls a `--metrics-addr` endpoint until counter `name` reaches `target`.
pub async fn wait_counter(addr: &str, name: &str, target: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        // None while the process is not listening yet.
        let value = metric(addr, name).await.map(|v| v as u64);
        if value.is_some_and(|v| v >= target) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name} reached {value:?} of {target} in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One sample's value from a `--metrics-addr` endpoint, if it answers and has it.
pub async fn metric(addr: &str, name: &str) -> Option<f64> {
    sample(&scrape(addr).await?, name)
}

/// The text of `GET /metrics` on `addr`, if it answers.
pub async fn scrape(addr: &str) -> Option<String> {
    let request = ppctl::rawhttp::Request::new("GET", "/metrics").ok()?;
    let response = ppctl::rawhttp::send(addr, &request).await.ok()?;
    Some(String::from_utf8_lossy(&response.body).into_owned())
}

/// One series' value in a scrape; `name` may carry labels as rendered
/// (`ppctl_db_pool_connections{state="open"}`).
pub fn sample(text: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.parse().ok()))
}

/// A histogram's quantile `q` from its cumulative buckets in a scrape, interpolated
/// within the bucket it falls in, as Prometheus's `histogram_quantile` does.
pub fn quantile(text: &str, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let (le, count) = l.strip_prefix(&prefix)?.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.parse().ok()?))
        })
        .collect();
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut below = (0.0, 0.0);
    for &(le, count) in &buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(below.0);
            }
            let share = (rank - below.1) / (count - below.1).max(f64::MIN_POSITIVE);
            return Some(below.0 + (le - below.0) * share);
        }
        below = (le, count);
    }
    None
}

/// How busy the whole machine was between `Busy::start` and `percent`: the share of its
/// CPU time (every core) not idle, from /proc/stat. Shows whether a run was bounded by
/// the machine rather than by what it measured.
#[derive(Debug, Clone, Copy)]
pub struct Busy {
    busy: u64,
    total: u64,
}

impl Busy {
    pub fn start() -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let line = stat.lines().next().context("/proc/stat is empty")?;
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .context("unexpected /proc/stat")?;
        anyhow::ensure!(ticks.len() >= 5, "unexpected /proc/stat: {line}");
        // user nice system idle iowait irq softirq steal ...: idle and iowait are idle.
        let idle = ticks[3] + ticks[4];
        let total: u64 = ticks.iter().take(8).sum();
        Ok(Self {
            busy: total - idle,
            total,
        })
    }

    /// Percent busy since `self`.
    pub fn percent(&self) -> anyhow::Result<f64> {
        let now = Self::start()?;
        let total = now.total.saturating_sub(self.total).max(1);
        Ok(100.0 * now.busy.saturating_sub(self.busy) as f64 / total as f64)
    }
}
