//! A private PostgreSQL primary with a streaming standby, for the failover scenarios
//! (12-15): `initdb`, `pg_basebackup -R -X stream`, trust on loopback, each server on
//! its own port and data directory under `<run>/pairs/<tag>/` (owned by postgres, which
//! must be able to reach it). The suite plays the failover manager: it kills, demotes
//! and promotes servers, and clones a new standby from a promoted one.
//!
//! A TLS pair (scenario 17) takes TCP clients over TLS only (`hostssl`), with a
//! certificate made at run time; the suite's own probes (done counts, promotion
//! checks), which are not what is tested, come in plain through the Unix socket.

use super::pgnode::PgNode;
use super::{free_ports, user_ids, RunDir};
use crate::db::wait_for;
use crate::tls_certs::Certs;
use anyhow::Context;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Appended to the primary's postgresql.conf, so that pg_basebackup copies it to every
/// standby: a standby must be able to become a primary with standbys of its own.
const CONF: &str = "
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 10
hot_standby = on
max_connections = 200
shared_buffers = 64MB
# A standby that falls behind for a moment catches up from the primary's WAL.
wal_keep_size = 256MB
log_line_prefix = '%m [%p] '
";

/// The whole pg_hba.conf of a TLS pair (initdb's lines would let plain clients in).
/// Replication may use TLS or not: the standby's link is not what is tested.
const TLS_HBA: &str = "local all all trust
hostssl all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
";

pub struct PgPair {
    pub dir: PathBuf,
    ids: (u32, u32),
    /// The CA the clients trust, on a TLS pair.
    ca: Option<PathBuf>,
    /// n1 (the first primary), n2 (its standby), and any standby cloned later.
    pub nodes: Vec<PgNode>,
}

impl PgPair {
    /// A primary and one streaming standby. `sync`: the primary waits for the standby's
    /// flush before a commit returns (`synchronous_standby_names = '*'`), set with ALTER
    /// SYSTEM after the clone, so the standby's copy of the settings never has it: once
    /// promoted, with no standby of its own, it must not wait for one at every commit.
    pub async fn start(run: &RunDir, tag: &str, sync: bool) -> anyhow::Result<Self> {
        Self::start_with(run, tag, sync, None).await
    }

    /// Like `start`; with `tls`, clients on 127.0.0.1 must use TLS (`certs`' server
    /// certificate, its key handed to postgres) and `multi_url` asks for `verify-full`.
    pub async fn start_with(
        run: &RunDir,
        tag: &str,
        sync: bool,
        tls: Option<&Certs>,
    ) -> anyhow::Result<Self> {
        let started = Instant::now();
        let ids = user_ids("postgres")?;
        let dir = run.path.join("pairs").join(tag);
        fs::create_dir_all(&dir)?;
        chown(&dir, Some(ids.0), Some(ids.1))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        let [port] = free_ports::<1>();
        let mut n1 = PgNode::new("n1", &dir, port, ids);
        let data = n1.data.to_string_lossy().to_string();
        let initdb = [
            "-D",
            &data,
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
        ];
        let args = [&initdb[..], &["--locale=C", "--no-sync"]].concat();
        n1.run_tool("initdb", &args, Duration::from_secs(120))
            .await?;
        configure(&mut n1, tls, ids)?;
        n1.start().await?;
        let mut pair = Self {
            dir,
            ids,
            ca: tls.map(|c| c.ca.clone()),
            nodes: vec![n1],
        };
        pair.add_standby(0).await?;
        if sync {
            let n1 = &pair.nodes[0];
            n1.scalar("ALTER SYSTEM SET synchronous_standby_names = '*'")
                .await?;
            n1.scalar("SELECT pg_reload_conf()").await?;
            wait_for(
                "the standby to be synchronous",
                Duration::from_secs(30),
                || async {
                    let sql = "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'";
                    (n1.scalar(sql).await.ok()? == "1").then_some(())
                },
            )
            .await?;
        }
        println!(
            "chaos: PostgreSQL pair {tag} ({}{}) on :{} and :{} after {:.1}s",
            if sync { "synchronous" } else { "asynchronous" },
            if tls.is_some() { ", TLS" } else { "" },
            pair.nodes[0].port,
            pair.nodes[1].port,
            started.elapsed().as_secs_f64()
        );
        Ok(pair)
    }

    /// Clones a streaming standby of node `from` (`pg_basebackup -R -X stream`), starts
    /// it and waits until `from` reports it streaming; returns its index.
    pub async fn add_standby(&mut self, from: usize) -> anyhow::Result<usize> {
        let [port] = free_ports::<1>();
        let name = format!("n{}", self.nodes.len() + 1);
        let mut node = PgNode::new(&name, &self.dir, port, self.ids);
        if self.ca.is_some() {
            node.probe_through_socket();
        }
        let data = node.data.to_string_lossy().to_string();
        let source = self.nodes[from].port.to_string();
        let args = [
            "-h",
            "127.0.0.1",
            "-p",
            &source,
            "-U",
            "postgres",
            "-D",
            &data,
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        ];
        node.run_tool("pg_basebackup", &args, Duration::from_secs(120))
            .await?;
        node.start().await?;
        let primary = &self.nodes[from];
        wait_for(
            "the new standby to stream",
            Duration::from_secs(30),
            || async {
                let sql = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'";
                (primary.scalar(sql).await.ok()?.parse::<i64>().ok()? >= 1).then_some(())
            },
        )
        .await
        .with_context(|| format!("{name} cloned from {}", primary.name))?;
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    /// `postgres://postgres@127.0.0.1:<port of node i>/<db>`, the suite's own (plain;
    /// through the Unix socket, its path percent-encoded, on a TLS pair).
    pub fn url(&self, i: usize, db: &str) -> String {
        let node = &self.nodes[i];
        let host = node.probe_host.replace('/', "%2F");
        format!("postgres://postgres@{host}:{}/{db}", node.port)
    }

    /// Both first servers, libpq style, as an operator behind Patroni writes it; on a
    /// TLS pair with `sslmode=verify-full&sslrootcert=<the CA>`.
    pub fn multi_url(&self, db: &str) -> String {
        let tls = self.ca.as_ref().map_or(String::new(), |ca| {
            format!("&sslmode=verify-full&sslrootcert={}", ca.display())
        });
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{db}?target_session_attrs=read-write{tls}",
            self.nodes[0].port, self.nodes[1].port
        )
    }

    /// Waits until `standby` has replayed everything `primary` has written; returns
    /// how long that took.
    pub async fn wait_caught_up(&self, primary: usize, standby: usize) -> anyhow::Result<f64> {
        let start = Instant::now();
        let lsn = self.nodes[primary]
            .scalar("SELECT pg_current_wal_lsn()")
            .await?;
        let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
        let standby = &self.nodes[standby];
        wait_for(
            "the standby to replay the primary's last WAL",
            Duration::from_secs(30),
            || async { (standby.scalar(&sql).await.ok()? == "t").then_some(()) },
        )
        .await?;
        Ok(start.elapsed().as_secs_f64())
    }
}

/// Appends the pair's settings to n1's postgresql.conf (pg_basebackup copies them to
/// every standby) and lets replication in; on a TLS pair, `ssl = on` and TLS_HBA.
fn configure(n1: &mut PgNode, tls: Option<&Certs>, ids: (u32, u32)) -> anyhow::Result<()> {
    let mut conf = CONF.to_string();
    let mut hba = fs::OpenOptions::new()
        .append(true)
        .open(n1.data.join("pg_hba.conf"))?;
    match tls {
        None => hba.write_all(b"host replication all 127.0.0.1/32 trust\n")?,
        Some(certs) => {
            certs
                .give_server_key(ids.0, ids.1)
                .context("hand the server key to postgres")?;
            conf.push_str(&format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                certs.server_cert.display(),
                certs.server_key.display()
            ));
            fs::write(n1.data.join("pg_hba.conf"), TLS_HBA)?;
            n1.probe_through_socket();
        }
    }
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(n1.data.join("postgresql.conf"))?;
    file.write_all(conf.as_bytes())?;
    Ok(())
}
