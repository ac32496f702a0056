//! A private node whose only listener is TLS (scenario 17): `listeners.tcp = none`, the
//! AMQP port a TLS listener with a certificate made at run time, client certificates
//! verified when shown but not required. What clients get (`url`), readiness, and
//! the proof that every client connection is encrypted, as the broker sees it.

use super::{PrivateRabbit, RunDir};
use crate::tls_certs::Certs;
use anyhow::Context;
use std::fs;
use std::time::Duration;

/// The node's whole rabbitmq.conf: the TLS listener replaces the plain one.
fn tls_conf(port: u16, certs: &Certs) -> String {
    format!(
        "listeners.tcp = none\nlisteners.ssl.default = 127.0.0.1:{port}\n\
         loopback_users.guest = true\n\
         ssl_options.cacertfile = {}\nssl_options.certfile = {}\nssl_options.keyfile = {}\n\
         ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = false\n",
        certs.ca.display(),
        certs.server_cert.display(),
        certs.server_key.display()
    )
}

impl PrivateRabbit {
    /// A node of its own under `<run>/rmq-<tag>`, TLS only, booted.
    pub async fn start_tls(run: &RunDir, tag: &str, certs: &Certs) -> anyhow::Result<Self> {
        let dir = run.path.join(format!("rmq-{tag}"));
        let node = format!("chaos-{tag}-{:08x}@localhost", rand::random::<u32>());
        let mut rabbit = Self::create(run, &dir, &dir, node, "")?;
        fs::write(dir.join("rabbitmq.conf"), tls_conf(rabbit.port, certs))?;
        rabbit.tls_ca = Some(certs.ca.clone());
        rabbit.restart().await?;
        Ok(rabbit)
    }

    /// What clients get: plain `amqp://` to 127.0.0.1; on a TLS node `amqps://` to
    /// `localhost` (the name its certificate carries; guest logs in from loopback
    /// only) with the CA to trust.
    pub fn url(&self) -> String {
        match &self.tls_ca {
            None => format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port),
            Some(ca) => format!(
                "amqps://guest:guest@localhost:{}/%2f?cacertfile={}",
                self.port,
                ca.display()
            ),
        }
    }

    /// Whether the node takes clients yet: an AMQP login on a plain node; on a TLS node
    /// a TCP accept on its port (RabbitMQ opens its listeners last, once booted), so
    /// that the set-up does not depend on the TLS client the scenario is testing.
    pub(super) async fn accepts(&self) -> bool {
        let wait = Duration::from_secs(3);
        if self.tls_ca.is_some() {
            let connect = tokio::net::TcpStream::connect(("127.0.0.1", self.port));
            return matches!(tokio::time::timeout(wait, connect).await, Ok(Ok(_)));
        }
        let props = lapin::ConnectionProperties::default();
        let url = self.url();
        let attempt = tokio::time::timeout(wait, lapin::Connection::connect(&url, props));
        match attempt.await {
            Ok(Ok(conn)) => {
                let _ = conn.close(200, "ready".into()).await;
                true
            }
            _ => false,
        }
    }

    /// The node's client connections as it lists them (`rabbitmqctl list_connections
    /// ssl ssl_protocol`): (how many are TLS, how many in all, the protocols seen).
    pub async fn tls_connections(&self) -> anyhow::Result<(usize, usize, String)> {
        let args = [
            "list_connections",
            "-q",
            "ssl",
            "ssl_protocol",
            "--formatter",
            "json",
        ];
        let out = self.ctl(&args).await?;
        let rows: Vec<serde_json::Value> = serde_json::from_str(out.trim())
            .with_context(|| format!("rabbitmqctl list_connections said {out:?}"))?;
        let ssl = rows.iter().filter(|r| r["ssl"] == true).count();
        let mut protocols: Vec<String> = rows
            .iter()
            .map(|r| r["ssl_protocol"].to_string().trim_matches('"').to_string())
            .collect();
        protocols.sort();
        protocols.dedup();
        Ok((ssl, rows.len(), protocols.join(",")))
    }
}
