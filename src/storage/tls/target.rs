//! Where and how to connect: the driver's config and the TLS connector, parsed and
//! built once from a URL and shared by every connection to it.

use super::PgTls;
use crate::config::{parse_database_url, redact_url};
use std::sync::Arc;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Socket};

/// A connection's driver half (spawn it, or poll it for notifications).
pub type PgConnection =
    tokio_postgres::Connection<Socket, <PgTls as MakeTlsConnect<Socket>>::Stream>;

#[derive(Clone)]
pub struct PgTarget {
    config: Config,
    tls: PgTls,
    /// The URL with its passwords hidden, for messages.
    shown: Arc<str>,
}

impl PgTarget {
    /// Parses `url` and builds its connector (reading the certificate files): every
    /// error is a `config::SettingError`, one line, without the password.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let parsed = parse_database_url(url)?;
        Ok(Self {
            tls: super::connector(&parsed.ssl)?,
            config: parsed.config,
            shown: redact_url(url).into(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The connector, for cancel requests.
    pub fn tls(&self) -> PgTls {
        self.tls.clone()
    }

    /// The URL with its passwords hidden.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The hosts of the URL as `HOST:PORT`, comma-separated (no password in them).
    pub fn hosts(&self) -> String {
        let ports = self.config.get_ports();
        let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let hosts = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| match h {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{}", port(i)),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            });
        hosts.collect::<Vec<_>>().join(",")
    }

    /// The same server and settings, another database (`postgres`, to create ours).
    pub fn with_dbname(&self, name: &str) -> Self {
        let mut other = self.clone();
        other.config.dbname(name);
        other
    }

    /// Opens one connection (bounded per address by the URL's `connect_timeout`; the
    /// callers bound the whole, TLS and login included).
    pub async fn connect(&self) -> Result<(Client, PgConnection), tokio_postgres::Error> {
        self.config.connect(self.tls.clone()).await
    }
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("url", &self.shown)
            .finish()
    }
}
