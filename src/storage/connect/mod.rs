//! Opening a connection to a multi-host URL so that a dark host is passed in bounded
//! time. tokio-postgres tries the hosts in order with `connect_timeout` bounding only
//! each TCP connect: a host whose packets are dropped, or one that accepts TCP and never
//! answers, holds the whole attempt (TLS and start-up have no bound), and when every host
//! fails only the last error is returned. So each host is tried on its own, with the
//! URL's `connect_timeout` (libpq's meaning, `config`) bounding its whole connection:
//! TCP, TLS, start-up and the `target_session_attrs` check.
//!
//! The attempt starts at the host that last answered, as a pgJDBC or pgx user would
//! expect of a pool: a dark host 1 costs its timeout once per process, not on every new
//! connection. And it runs in a task of its own, so that a caller that gives up (an API
//! request at its bound, a pool create) does not keep the process from learning which
//! host answers.

mod single;

use super::tls::{PgConnection, PgTls};
use rand::seq::SliceRandom;
use single::single_host;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::{Host, LoadBalanceHosts};
use tokio_postgres::{Client, Config};

/// One host's failure, as the error shows it.
#[derive(Debug, Clone)]
pub struct HostFailure {
    /// `HOST:PORT` (or the socket's path): never a password.
    pub host: String,
    pub why: String,
}

/// No host of the URL gave a usable connection: each host's failure, in the order tried.
#[derive(Debug)]
pub struct ConnectError {
    pub failures: Vec<HostFailure>,
    /// The driver's error of the last host that gave one (none when every host timed
    /// out), for callers that decide by SQLSTATE.
    pub driver: Option<tokio_postgres::Error>,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let each: Vec<String> = self
            .failures
            .iter()
            .map(|h| format!("{}: {}", h.host, h.why))
            .collect();
        match each.len() {
            1 => write!(f, "{}", each[0]),
            n => write!(f, "all {n} hosts failed: {}", each.join("; ")),
        }
    }
}

impl std::error::Error for ConnectError {}

/// The hosts of one URL and what the process learned of them.
#[derive(Debug, Clone)]
pub struct Hosts {
    config: Config,
    per_host: Duration,
    /// The host that last gave a connection: where the next attempt starts.
    answered: Arc<AtomicUsize>,
}

impl Hosts {
    pub fn new(config: Config) -> Self {
        let per_host = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(crate::config::DEFAULT_CONNECT_TIMEOUT);
        Self {
            config,
            per_host,
            answered: Arc::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// The most one attempt takes: every host, each to its bound.
    pub fn bound(&self) -> Duration {
        self.per_host * self.count().max(1) as u32
    }

    fn count(&self) -> usize {
        self.config
            .get_hosts()
            .len()
            .max(self.config.get_hostaddrs().len())
    }

    /// `HOST:PORT` of host `i`, or the socket's path.
    pub fn shown(&self, i: usize) -> String {
        let ports = self.config.get_ports();
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        match (
            self.config.get_hosts().get(i),
            self.config.get_hostaddrs().get(i),
        ) {
            (Some(Host::Tcp(name)), _) => format!("{name}:{port}"),
            (Some(Host::Unix(path)), _) => path.display().to_string(),
            (None, Some(addr)) => format!("{addr}:{port}"),
            (None, None) => format!("host {i}"),
        }
    }

    /// Opens one connection: the hosts in URL order, starting at the last to answer.
    pub async fn connect(&self, tls: &PgTls) -> Result<(Client, PgConnection), ConnectError> {
        let (hosts, tls) = (self.clone(), tls.clone());
        // Run apart from the caller: what the attempt learns outlives a caller's bound.
        let attempt = tokio::spawn(async move { hosts.try_each(tls).await });
        attempt.await.unwrap_or_else(|e| {
            Err(ConnectError {
                failures: vec![HostFailure {
                    host: "every host".into(),
                    why: format!("the connect task failed: {e}"),
                }],
                driver: None,
            })
        })
    }

    /// URL order from the host that last answered; `load_balance_hosts=random`: a
    /// random order every time, as libpq does.
    fn order(&self) -> Vec<usize> {
        let count = self.count();
        let first = self.answered.load(Ordering::Relaxed) % count.max(1);
        let mut order: Vec<usize> = (0..count).map(|k| (first + k) % count).collect();
        if self.config.get_load_balance_hosts() == LoadBalanceHosts::Random {
            order.shuffle(&mut rand::rng());
        }
        order
    }

    async fn try_each(&self, tls: PgTls) -> Result<(Client, PgConnection), ConnectError> {
        let mut failed = ConnectError {
            failures: Vec::new(),
            driver: None,
        };
        for i in self.order() {
            let mut one = single_host(&self.config, i);
            // The driver's own TCP timeout would race this bound with a vaguer message.
            one.connect_timeout(self.per_host + Duration::from_secs(1));
            let attempt = one.connect(tls.clone());
            let why = match tokio::time::timeout(self.per_host, attempt).await {
                Ok(Ok(opened)) => {
                    self.answered.store(i, Ordering::Relaxed);
                    return Ok(opened);
                }
                Ok(Err(e)) => {
                    let why = super::error::with_causes(&e);
                    failed.driver = Some(e);
                    why
                }
                Err(_) => format!(
                    "no answer within {}s (TCP, TLS and start-up: connect_timeout)",
                    self.per_host.as_secs()
                ),
            };
            tracing::debug!(host = %self.shown(i), %why, "database host failed; trying the next");
            failed.failures.push(HostFailure {
                host: self.shown(i),
                why,
            });
        }
        Err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_database_url;

    #[test]
    fn each_host_gets_its_port_and_the_bound_counts_them_all() {
        let config = parse_database_url("postgres://u:p@a:1,b:2,c/db?connect_timeout=3")
            .expect("url")
            .config;
        let hosts = Hosts::new(config.clone());
        assert_eq!(hosts.bound(), Duration::from_secs(9));
        let shown: Vec<String> = (0..3).map(|i| hosts.shown(i)).collect();
        assert_eq!(shown, ["a:1", "b:2", "c:5432"]);
        hosts.answered.store(2, Ordering::Relaxed);
        assert_eq!(hosts.order(), [2, 0, 1], "from the last to answer");
        let second = single_host(&config, 1);
        assert_eq!(second.get_hosts(), &[Host::Tcp("b".into())]);
        assert_eq!(second.get_ports(), &[2]);
    }
}
