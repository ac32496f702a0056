//! Private PostgreSQL and RabbitMQ instances that the suite may crash at will, in a
//! run directory of its own. The shared services on 5432/5672 are never touched.
//!
//! Every process the suite starts carries `PPCTL_CHAOS_RUN=<run dir>` in its
//! environment (PostgreSQL rewrites its own environ for `ps`, so it is found through
//! `postmaster.pid` instead). A run directory whose owner process is gone (a run killed
//! before its Drop guards ran) is cleaned up by the next run, processes included.

mod cluster;
mod pair;
mod pgnode;
mod postgres;
mod rabbit;
mod rabbit_tls;
mod rundir;

pub use cluster::RabbitCluster;
pub use pair::PgPair;
pub use postgres::PrivatePostgres;
pub use rabbit::PrivateRabbit;
pub use rundir::RunDir;

use anyhow::bail;
use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const MARKER: &str = "PPCTL_CHAOS_RUN";
pub(crate) const RUN_PREFIX: &str = "ppctl-chaos-";

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("addr").port())
}

/// Sends `signal` (KILL, TERM, ...) to `pids` with kill(1); no libc needed.
pub fn signal(pids: &[u32], signal: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// Processes stopped with SIGSTOP; SIGCONT when dropped, so a scenario that fails
/// half-way never leaves a frozen server behind.
pub struct Frozen {
    pids: Vec<u32>,
}

impl Frozen {
    pub fn new(pids: Vec<u32>) -> Self {
        signal(&pids, "STOP");
        Self { pids }
    }

    pub fn thaw(self) {} // Drop does it
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(&self.pids, "CONT");
    }
}

/// (state, ppid) of a process from /proc, or None when it is gone.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: parse after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Alive and not a zombie.
pub fn alive(pid: u32) -> bool {
    matches!(proc_stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

pub(crate) fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub fn children_of(parent: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&pid| matches!(proc_stat(pid), Some((_, ppid)) if ppid == parent))
        .collect()
}

/// Waits until none of `pids` is alive, at most `timeout`; true when they are all gone.
pub fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let start = Instant::now();
    while pids.iter().any(|&p| alive(p)) {
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

pub(crate) fn user_ids(name: &str) -> anyhow::Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd")?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == name {
            return Ok((f[2].parse()?, f[3].parse()?));
        }
    }
    bail!("no user {name} in /etc/passwd")
}

pub(crate) fn log_file(path: &Path) -> (Stdio, Stdio) {
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open a log file");
    let err = file.try_clone().expect("clone a log file handle");
    (Stdio::from(file), Stdio::from(err))
}

/// Copies every `*.log` under the run directory (server logs: PostgreSQL, each
/// RabbitMQ node) into `dest` before the run directory is removed, named after their
/// path, so a failed scenario can be read afterwards.
pub fn keep_server_logs(run: &RunDir, dest: &Path) {
    let mut dirs = vec![run.path.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "log") {
                let rel = path.strip_prefix(&run.path).unwrap_or(&path);
                let name = rel.to_string_lossy().replace('/', "_");
                let _ = fs::copy(&path, dest.join(format!("server-{name}")));
            }
        }
    }
}

/// The last `n` lines of a log file, for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
