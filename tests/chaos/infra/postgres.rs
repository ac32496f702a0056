//! A private PostgreSQL 15 cluster: initdb, start, crash (SIGKILL to every process),
//! restart with crash recovery.

use super::{
    children_of, free_ports, log_file, signal, tail, user_ids, wait_gone, Frozen, RunDir, MARKER,
};
use anyhow::{bail, Context};
use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL 15 cluster of our own: initdb in the run directory, its own port,
/// trust authentication for user postgres on 127.0.0.1.
pub struct PrivatePostgres {
    dir: PathBuf,
    data: PathBuf,
    pub port: u16,
    uid: u32,
    gid: u32,
    postmaster: Option<Child>,
    pub log: PathBuf,
}

impl PrivatePostgres {
    pub async fn start(run: &RunDir) -> anyhow::Result<Self> {
        let (uid, gid) = user_ids("postgres")?;
        let dir = run.path.join("pg");
        fs::create_dir_all(&dir)?;
        chown(&dir, Some(uid), Some(gid))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        let data = dir.join("data");
        let log = dir.join("postgres.log");
        let [port] = free_ports::<1>();
        let (out, err) = log_file(&dir.join("initdb.log"));
        let status = Command::new(format!("{PG_BIN}/initdb"))
            .args(["-D", &data.to_string_lossy(), "-U", "postgres"])
            .args(["--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"])
            .current_dir(&dir)
            .uid(uid)
            .gid(gid)
            .env(MARKER, run.path.as_os_str())
            .stdout(out)
            .stderr(err)
            .status()
            .context("run initdb")?;
        if !status.success() {
            bail!("initdb failed: {}", tail(&dir.join("initdb.log"), 20));
        }
        // The postgres user must be able to write its log.
        fs::write(&log, "")?;
        chown(&log, Some(uid), Some(gid))?;
        let mut pg = Self {
            dir,
            data,
            port,
            uid,
            gid,
            postmaster: None,
            log,
        };
        pg.restart().await?;
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:<port>/<db>`
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Starts the postmaster on the existing data directory (crash recovery included)
    /// and waits until it accepts queries.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let (out, err) = log_file(&self.log);
        let child = Command::new(format!("{PG_BIN}/postgres"))
            .args([
                "-D",
                &self.data.to_string_lossy(),
                "-p",
                &self.port.to_string(),
            ])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args([
                "-c",
                &format!("unix_socket_directories={}", self.dir.display()),
            ])
            .args(["-c", "max_connections=300", "-c", "shared_buffers=128MB"])
            .current_dir(&self.dir)
            .uid(self.uid)
            .gid(self.gid)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("start postgres")?;
        self.postmaster = Some(child);
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .postmaster
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("postgres exited ({status}): {}", tail(&self.log, 20));
            }
            if self.ping().await {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "postgres did not accept connections within 60s: {}",
                    tail(&self.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ping(&self) -> bool {
        let conn = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=2",
            self.port
        );
        match tokio::time::timeout(
            Duration::from_secs(3),
            tokio_postgres::connect(&conn, tokio_postgres::NoTls),
        )
        .await
        {
            Ok(Ok((client, connection))) => {
                let driver = tokio::spawn(connection);
                let ok = client.simple_query("SELECT 1").await.is_ok();
                drop(client);
                let _ = driver.await;
                ok
            }
            _ => false,
        }
    }

    /// SIGSTOP to the postmaster and every backend until the guard is dropped: TCP
    /// connections are still accepted, nothing answers.
    pub fn freeze(&self) -> anyhow::Result<Frozen> {
        let pid = self
            .postmaster
            .as_ref()
            .context("postgres is not running")?
            .id();
        let mut pids = children_of(pid);
        pids.push(pid);
        Ok(Frozen::new(pids))
    }

    /// A crash: SIGKILL to the postmaster and every backend at once, as when the
    /// machine dies. Returns once they are all gone.
    pub fn crash(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.postmaster.take() else {
            bail!("postgres is not running");
        };
        let pid = child.id();
        let mut pids = children_of(pid);
        pids.push(pid);
        signal(&pids, "KILL");
        let start = Instant::now();
        while child.try_wait()?.is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("the postmaster survived SIGKILL for 10s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if !wait_gone(&pids, Duration::from_secs(10)) {
            bail!("postgres backends survived SIGKILL for 10s");
        }
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.postmaster.take() {
            let mut pids = children_of(child.id());
            pids.push(child.id());
            signal(&pids, "KILL");
            let _ = child.wait();
            wait_gone(&pids, Duration::from_secs(10));
        }
    }
}
