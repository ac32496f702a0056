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

pub use cluster::RabbitCluster;
pub use pair::PgPair;
pub use postgres::PrivatePostgres;
pub use rabbit::PrivateRabbit;

use anyhow::bail;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const MARKER: &str = "PPCTL_CHAOS_RUN";
const RUN_PREFIX: &str = "ppctl-chaos-";

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

fn all_pids() -> Vec<u32> {
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

/// Processes whose environment carries our marker for `run_dir`.
fn marked_pids(run_dir: &Path) -> Vec<u32> {
    let needle = format!("{MARKER}={}", run_dir.display());
    all_pids()
        .into_iter()
        .filter(|&pid| pid != std::process::id())
        // epmd is shared by every Erlang node on the machine: never ours to kill.
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() != "epmd")
        })
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
        })
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

/// Kills a postmaster and its children, if `data_dir`'s postmaster.pid names a live
/// postmaster of that data directory.
fn kill_postmaster_of(data_dir: &Path) {
    let Ok(text) = fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<u32>().ok())
    else {
        return;
    };
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if alive(pid) && String::from_utf8_lossy(&cmdline).contains(&*data_dir.to_string_lossy()) {
        let mut pids = children_of(pid);
        pids.push(pid);
        signal(&pids, "KILL");
        wait_gone(&pids, Duration::from_secs(10));
    }
}

/// Every PostgreSQL data directory a run may hold: the single server's, and each
/// failover pair's (`pairs/<tag>/<node>`).
fn postgres_data_dirs(run_dir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![run_dir.join("pg/data")];
    for pair in fs::read_dir(run_dir.join("pairs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for node in fs::read_dir(pair.path()).into_iter().flatten().flatten() {
            dirs.push(node.path());
        }
    }
    dirs
}

/// Removes run directories left by runs that died without cleaning up.
fn cleanup_stale() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_run = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(RUN_PREFIX));
        if !is_run {
            continue;
        }
        let owner = fs::read_to_string(path.join("owner.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if owner.is_some_and(alive) {
            continue; // another run in progress
        }
        eprintln!(
            "chaos: cleaning up the stale run directory {}",
            path.display()
        );
        postgres_data_dirs(&path)
            .iter()
            .for_each(|d| kill_postmaster_of(d));
        let pids = marked_pids(&path);
        signal(&pids, "KILL");
        wait_gone(&pids, Duration::from_secs(10));
        let _ = fs::remove_dir_all(&path);
    }
}

/// The run's temporary directory; on drop, kills whatever the run left and removes it.
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn new() -> Self {
        cleanup_stale();
        let path = std::env::temp_dir().join(format!("{RUN_PREFIX}{:08x}", rand::random::<u32>()));
        fs::create_dir_all(&path).expect("create the run directory");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(path.join("owner.pid"), std::process::id().to_string()).expect("owner.pid");
        Self { path }
    }

    pub fn marker(&self) -> (String, String) {
        (MARKER.to_string(), self.path.display().to_string())
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        postgres_data_dirs(&self.path)
            .iter()
            .for_each(|d| kill_postmaster_of(d));
        let pids = marked_pids(&self.path);
        signal(&pids, "KILL");
        wait_gone(&pids, Duration::from_secs(10));
        let _ = fs::remove_dir_all(&self.path);
    }
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
