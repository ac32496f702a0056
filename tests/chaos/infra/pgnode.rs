//! One server of a replicated PostgreSQL pair (pair.rs): a postmaster on its own data
//! directory and port, run as the postgres user, that the suite SIGKILLs and promotes.
//! Its settings live in the data directory's postgresql.conf (copied to a standby by
//! pg_basebackup); only the port and the socket directory are given on the command line.

use super::{children_of, log_file, signal, tail, wait_gone, Frozen};
use anyhow::{bail, Context};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_postgres::{NoTls, SimpleQueryMessage};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct PgNode {
    pub name: String,
    pub data: PathBuf,
    pub port: u16,
    pub log: PathBuf,
    /// Where the suite's own probes connect, without TLS: 127.0.0.1, or on a TLS pair
    /// (whose TCP address takes TLS only: pair.rs) the Unix socket's directory.
    pub probe_host: String,
    socket_dir: PathBuf,
    uid: u32,
    gid: u32,
    postmaster: Option<Child>,
}

impl PgNode {
    pub fn new(name: &str, dir: &std::path::Path, port: u16, (uid, gid): (u32, u32)) -> Self {
        Self {
            name: name.into(),
            data: dir.join(name),
            port,
            log: dir.join(format!("{name}.log")),
            probe_host: "127.0.0.1".into(),
            socket_dir: dir.to_path_buf(),
            uid,
            gid,
            postmaster: None,
        }
    }

    /// Starts the postmaster and waits until it answers queries (a standby answers
    /// once it has reached a consistent state).
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let (out, err) = log_file(&self.log);
        let child = Command::new(format!("{PG_BIN}/postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.socket_dir)
            .current_dir(&self.socket_dir)
            .uid(self.uid)
            .gid(self.gid)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start postgres {}", self.name))?;
        self.postmaster = Some(child);
        let start = Instant::now();
        loop {
            if let Some(status) = self.postmaster.as_mut().and_then(|c| c.try_wait().ok()?) {
                bail!("{} exited ({status}): {}", self.name, tail(&self.log, 20));
            }
            if self.scalar("SELECT 1").await.is_ok() {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "{} did not answer within 60s: {}",
                    self.name,
                    tail(&self.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The machine dies: SIGKILL to the postmaster and every backend (walsender
    /// included) at once, so nothing more is streamed or answered.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.postmaster.take() else {
            bail!("{} is not running", self.name);
        };
        let mut pids = children_of(child.id());
        pids.push(child.id());
        signal(&pids, "KILL");
        let _ = child.wait();
        if !wait_gone(&pids, Duration::from_secs(10)) {
            bail!("{}'s processes survived SIGKILL for 10s", self.name);
        }
        Ok(())
    }

    /// SIGSTOP to the server's walsenders until the guard is dropped: the primary goes on
    /// committing while its standby receives nothing, as over a slow or congested link.
    /// (Loopback otherwise streams within microseconds and hides asynchronous loss.)
    pub fn hold_walsenders(&self) -> anyhow::Result<Frozen> {
        let pid = self.postmaster.as_ref().context("not running")?.id();
        let senders: Vec<u32> = children_of(pid)
            .into_iter()
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("walsender"))
            })
            .collect();
        if senders.is_empty() {
            bail!("{} has no walsender", self.name);
        }
        Ok(Frozen::new(senders))
    }

    /// Runs a PostgreSQL client program as the postgres user, bounded by `timeout`
    /// (tokio's process: a basebackup must not block a runtime thread).
    pub async fn run_tool(
        &self,
        tool: &str,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let (out, err) = log_file(&self.log);
        let mut child = tokio::process::Command::new(format!("{PG_BIN}/{tool}"))
            .args(args)
            .current_dir(&self.socket_dir)
            .uid(self.uid)
            .gid(self.gid)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("run {tool}"))?;
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) if status.as_ref().is_ok_and(|s| s.success()) => Ok(()),
            Ok(status) => bail!("{tool} {args:?} exited {status:?}: {}", tail(&self.log, 15)),
            Err(_) => bail!("{tool} {args:?} did not finish within {timeout:?}"),
        }
    }

    /// Probes through the Unix socket (plain, `local` in pg_hba.conf).
    pub fn probe_through_socket(&mut self) {
        self.probe_host = self.socket_dir.to_string_lossy().into_owned();
    }

    /// `pg_ctl promote -w`, then waits until the server takes writes.
    pub async fn promote(&self) -> anyhow::Result<()> {
        let data = self.data.to_string_lossy();
        self.run_tool(
            "pg_ctl",
            &["-D", &data, "-w", "-t", "60", "promote"],
            Duration::from_secs(70),
        )
        .await?;
        crate::db::wait_for(
            "the promoted server to leave recovery",
            Duration::from_secs(30),
            || async {
                (self.scalar("SELECT pg_is_in_recovery()").await.ok()? == "f").then_some(())
            },
        )
        .await
    }

    /// The first column of the first row of `sql` in database postgres, as text.
    pub async fn scalar(&self, sql: &str) -> anyhow::Result<String> {
        self.scalar_in("postgres", sql).await
    }

    pub async fn scalar_in(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let conn = format!(
            "host={} port={} user=postgres dbname={db} connect_timeout=2",
            self.probe_host, self.port
        );
        let query = async {
            let (client, connection) = tokio_postgres::connect(&conn, NoTls).await?;
            let driver = tokio::spawn(connection);
            let messages = client.simple_query(sql).await;
            drop(client);
            let _ = driver.await;
            let first = messages?.into_iter().find_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("").to_string()),
                _ => None,
            });
            anyhow::Ok(first.unwrap_or_default())
        };
        tokio::time::timeout(Duration::from_secs(5), query)
            .await
            .with_context(|| format!("{} did not answer {sql} within 5s", self.name))?
            .with_context(|| format!("{} on {}", sql, self.name))
    }
}

impl Drop for PgNode {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
