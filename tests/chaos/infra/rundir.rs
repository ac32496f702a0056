//! The run directory: one per run under the temp dir, holding every server's files.
//! On drop it kills whatever the run started and removes itself; a run killed before
//! its guards ran is cleaned up by the next one (its owner.pid names a dead process).
//! ppctl and RabbitMQ processes are found by the marker in their environment;
//! PostgreSQL rewrites its environ for `ps`, so postmasters are found through each
//! data directory's `postmaster.pid`.

use super::{alive, all_pids, children_of, signal, wait_gone, MARKER, RUN_PREFIX};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
