//! A private PostgreSQL 15 pair for the replication phase: a primary and a streaming
//! standby on free loopback ports, in a directory under the target dir. It is stopped
//! and removed when dropped, so an error anywhere in the phase does not leave it running.

use anyhow::{bail, Context};
use std::os::unix::fs::{chown, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The shared server's shape (scripts/services.sh: 2 GB of shared_buffers, 8 GB of WAL
/// between checkpoints), halved where two servers share the machine's memory.
const PRIMARY_CONF: &str = "\
listen_addresses = '127.0.0.1'
max_connections = 300
shared_buffers = 1GB
max_wal_size = 8GB
wal_level = replica
max_wal_senders = 4
synchronous_commit = on
";

pub struct PgPair {
    dir: PathBuf,
    pub primary: u16,
    pub standby: u16,
    /// PostgreSQL refuses to run as root: as root, it runs as the postgres user.
    owner: Option<(u32, u32)>,
}

impl PgPair {
    /// initdb, start the primary, pg_basebackup -R -X stream, start the standby, and wait
    /// until the primary sees it streaming.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-pgpair");
        let owner = if std::fs::metadata("/proc/self")?.uid() == 0 {
            Some(postgres_ids()?)
        } else {
            None
        };
        let pair = Self {
            dir,
            primary: crate::procs::free_port()?,
            standby: crate::procs::free_port()?,
            owner,
        };
        // A run killed before its Drop leaves a pair behind: stop it, then start afresh.
        pair.stop();
        std::fs::create_dir_all(&pair.dir)?;
        if let Some((uid, gid)) = owner {
            chown(&pair.dir, Some(uid), Some(gid))?;
        }
        pair.setup().await.map(|()| pair)
    }

    async fn setup(&self) -> anyhow::Result<()> {
        let (n1, n2) = (self.data("n1"), self.data("n2"));
        self.pg(
            "initdb",
            &["-D", &n1, "-U", "postgres", "-A", "trust", "--no-sync"],
        )?;
        let socket = format!("unix_socket_directories = '{}'\n", self.dir.display());
        append(
            &n1,
            &format!("{PRIMARY_CONF}port = {}\n{socket}", self.primary),
        )?;
        append_file(
            &format!("{n1}/pg_hba.conf"),
            "host replication all 127.0.0.1/32 trust\n",
        )?;
        self.start_node("n1")?;
        let port = self.primary.to_string();
        self.pg(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                &n2,
                "-R",
                "-X",
                "stream",
            ],
        )?;
        // The standby's walreceiver names itself after cluster_name.
        append(
            &n2,
            &format!("port = {}\ncluster_name = 'bench_standby'\n", self.standby),
        )?;
        self.start_node("n2")?;
        self.wait_sync_state("async").await
    }

    fn data(&self, node: &str) -> String {
        self.dir.join(node).display().to_string()
    }

    /// A PostgreSQL tool as the cluster's owner; its output goes to DIR/NAME.log.
    fn pg(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let log_path = self.dir.join(format!("{tool}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = Command::new(format!("{PG_BIN}/{tool}"));
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        let status = cmd.status().with_context(|| format!("cannot run {tool}"))?;
        if !status.success() {
            let out = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("{tool} failed ({status}): {out}");
        }
        Ok(())
    }

    /// Starts a node; its server log is quoted on failure, as the directory is removed.
    fn start_node(&self, node: &str) -> anyhow::Result<()> {
        let log = self.dir.join(format!("{node}.log"));
        let data = self.data(node);
        let started = self.pg(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                &log.display().to_string(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        started.with_context(|| {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("{node} did not start; its log ends:\n{}", tail.join("\n"))
        })
    }

    /// `postgres://postgres@127.0.0.1:P1,127.0.0.1:P2/DB?target_session_attrs=read-write`:
    /// what an operator gives ppctl for a Patroni-style pair.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{db}?target_session_attrs=read-write",
            self.primary, self.standby
        )
    }

    /// The primary alone, for the harness's own statements.
    pub fn primary_url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.primary)
    }

    /// Synchronous (`synchronous_standby_names = '*'`) or asynchronous replication, set
    /// on the running primary; returns once pg_stat_replication shows it took effect.
    pub async fn set_sync(&self, sync: bool) -> anyhow::Result<()> {
        let names = if sync { "*" } else { "" };
        let client = ppctl::storage::admin::connect(&self.primary_url("postgres")).await?;
        client
            .batch_execute(&format!(
                "ALTER SYSTEM SET synchronous_standby_names = '{names}'"
            ))
            .await?;
        client.batch_execute("SELECT pg_reload_conf()").await?;
        self.wait_sync_state(if sync { "sync" } else { "async" })
            .await
    }

    /// Waits (30 s at most) until the standby streams with `state` as its sync_state.
    async fn wait_sync_state(&self, state: &str) -> anyhow::Result<()> {
        let client = ppctl::storage::admin::connect(&self.primary_url("postgres")).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let rows = client
                .query(
                    "SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'",
                    &[],
                )
                .await?;
            let states: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            if states.iter().any(|s| s == state) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the standby's sync_state is {states:?} after 30 s, not {state}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops both servers (immediately: their data is thrown away) and removes them.
    fn stop(&self) {
        for node in ["n2", "n1"] {
            let data = self.data(node);
            if Path::new(&data).join("postmaster.pid").exists() {
                let _ = self.pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for PgPair {
    fn drop(&mut self) {
        self.stop();
    }
}

fn postgres_ids() -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == "postgres")
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .context("running as root, and no postgres user to run PostgreSQL as")
}

/// Settings appended to a node's postgresql.conf (a later line wins).
fn append(data: &str, lines: &str) -> anyhow::Result<()> {
    append_file(&format!("{data}/postgresql.conf"), lines)
}

fn append_file(path: &str, lines: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
    Ok(file.write_all(lines.as_bytes())?)
}
