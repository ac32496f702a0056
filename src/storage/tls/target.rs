//! Where and how to connect: the driver's config and the TLS connector, parsed and
//! built once from a URL and shared by every connection to it.

use super::PgTls;
use crate::config::{parse_database_url, redact_url};
use crate::storage::connect::{ConnectError, Hosts};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Socket};

/// A connection's driver half (spawn it, or poll it for notifications).
pub type PgConnection =
    tokio_postgres::Connection<Socket, <PgTls as MakeTlsConnect<Socket>>::Stream>;

#[derive(Clone)]
pub struct PgTarget {
    /// The driver's config, and which host last answered (shared by the clones: the
    /// pool, its LISTEN and NOTIFY connections learn together).
    hosts: Hosts,
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
            hosts: Hosts::new(parsed.config),
            shown: redact_url(url).into(),
        })
    }

    pub fn config(&self) -> &Config {
        self.hosts.config()
    }

    /// The most one connect takes: every host, each to its `connect_timeout`.
    pub fn connect_bound(&self) -> Duration {
        self.hosts.bound()
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
        let count = self.config().get_hosts().len();
        let hosts = (0..count).map(|i| self.hosts.shown(i));
        hosts.collect::<Vec<_>>().join(",")
    }

    /// The same server and settings, another database (`postgres`, to create ours).
    pub fn with_dbname(&self, name: &str) -> Self {
        let mut other = self.clone();
        other.hosts.config_mut().dbname(name);
        other
    }

    /// Opens one connection, each host bounded by the URL's `connect_timeout` (TCP,
    /// TLS, start-up and `target_session_attrs`): `storage::connect`.
    pub async fn connect(&self) -> Result<(Client, PgConnection), ConnectError> {
        self.hosts.connect(&self.tls).await
    }
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("url", &self.shown)
            .finish()
    }
}
