//! The broker's nodes from `AMQP_URL`, each with its own TLS, and connecting to the
//! first that answers.

use super::tls::{Tls, TlsParams};
use super::tls_verify;
use crate::config::redact_url;
use anyhow::{bail, Context};
use lapin::tcp::AMQPUriTcpExt;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Channel, Connection, ConnectionProperties};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A node that accepts TCP but never answers (a frozen broker) must not hold a client
/// forever: each connection attempt, TLS and AMQP handshakes included, is bounded by this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Heartbeat asked for when the URL does not set one (`?heartbeat=N`): RabbitMQ's
/// default of 60 s would leave a client on a frozen node for two minutes.
const DEFAULT_HEARTBEAT_SECS: u16 = 5;

/// One node: lapin's URI, the URL as it may be shown, and its TLS for `amqps://`.
pub(super) struct Node {
    pub(super) uri: AMQPUri,
    pub(super) shown: String,
    pub(super) tls: Option<Tls>,
}

/// The broker's nodes, from `AMQP_URL` (comma-separated, as with Celery's failover):
/// clients connect to the first that answers and, once it is lost, start from the next.
/// Holds the passwords: its `Debug` shows only the redacted URLs.
pub struct Nodes {
    pub(super) nodes: Vec<Node>,
    pub(super) preferred: AtomicUsize,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<&str> = self.nodes.iter().map(|n| n.shown.as_str()).collect();
        f.debug_struct("Nodes").field("nodes", &shown).finish()
    }
}

impl Nodes {
    /// Parses and checks every URL, and reads each one's TLS files. A malformed entry
    /// is described by its place in the list, never shown: redaction relies on the
    /// URL's shape, which is what is wrong.
    pub fn parse(list: &str) -> anyhow::Result<Self> {
        let count = list.split(',').count();
        let mut nodes = Vec::new();
        for (i, url) in list.split(',').map(str::trim).enumerate() {
            let which = match count {
                1 => "AMQP_URL".to_string(),
                _ => format!("AMQP_URL's node {} of {count}", i + 1),
            };
            nodes.push(parse_node(url, &which)?);
        }
        Ok(Self {
            nodes,
            preferred: AtomicUsize::new(0),
        })
    }

    /// Connects to the preferred node or, failing that, to each next one in turn, and
    /// opens a channel. The node that answered becomes the preferred one.
    pub async fn connect(&self, name: &str) -> anyhow::Result<(Connection, Channel)> {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in (0..self.nodes.len()).map(|k| (start + k) % self.nodes.len()) {
            let node = &self.nodes[i];
            let shown = &node.shown;
            match tokio::time::timeout(CONNECT_TIMEOUT, open(node, name)).await {
                Ok(Ok(opened)) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    tracing::debug!(node = %shown, "connected to RabbitMQ");
                    return Ok(opened);
                }
                Ok(Err(e)) => match tls_verify::explain(&e) {
                    Some(why) => errors.push(format!("{shown}: {why}")),
                    None => errors.push(format!("{shown}: {e:#}")),
                },
                Err(_) => errors.push(format!("{shown}: no answer within {CONNECT_TIMEOUT:?}")),
            }
        }
        bail!("cannot connect to RabbitMQ ({})", errors.join("; "))
    }

    /// The connection to the preferred node was lost: try the next one first.
    pub fn lost(&self) {
        let next = (self.preferred.load(Ordering::Relaxed) + 1) % self.nodes.len();
        self.preferred.store(next, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether every node is reached over TLS (`amqps://`), for the start-up line: a
    /// connection exists only once its TLS handshake succeeded.
    pub fn encryption(&self) -> &'static str {
        match self.nodes.iter().filter(|n| n.tls.is_some()).count() {
            0 => "unencrypted (amqp://)",
            n if n == self.nodes.len() => "encrypted (amqps://)",
            _ => "mixed: some nodes amqps://, some amqp://",
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

fn parse_node(url: &str, which: &str) -> anyhow::Result<Node> {
    if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
        bail!(
            "{which} is not an amqp:// or amqps:// URL (not shown: it may hold a \
             password); expected amqp://USER:PASSWORD@HOST:5672/%2f, comma-separated"
        );
    }
    let invalid = |e: String| {
        // The parsers may quote their input.
        let e = e.replace(url, "(the URL)");
        anyhow::anyhow!("{which} is not a valid URL (not shown: it may hold a password): {e}")
    };
    let mut uri: AMQPUri = url.parse().map_err(invalid)?;
    let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    // lapin's parser turns an IP address into "localhost": the host as written.
    let host = match parsed.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(host) => host.to_string(),
        None => uri.authority.host.clone(),
    };
    uri.authority.host.clone_from(&host);
    uri.query.heartbeat.get_or_insert(DEFAULT_HEARTBEAT_SECS);
    let params = TlsParams::from_url(&parsed).map_err(|e| anyhow::anyhow!("{which}: {e}"))?;
    let tls = match uri.scheme {
        AMQPScheme::AMQPS => Some(
            params
                .build(&host)
                .map_err(|e| anyhow::anyhow!("{which}: {e}"))?,
        ),
        AMQPScheme::AMQP => None,
    };
    Ok(Node {
        uri,
        shown: redact_url(url),
        tls,
    })
}

async fn open(node: &Node, name: &str) -> anyhow::Result<(Connection, Channel)> {
    let props = ConnectionProperties::default().with_connection_name(name.to_string().into());
    let connection = match &node.tls {
        None => Connection::connect_uri(node.uri.clone(), props).await?,
        Some(tls) => connect_tls(node.uri.clone(), tls.clone(), props).await?,
    };
    let channel = connection
        .create_channel()
        .await
        .context("cannot open an AMQP channel")?;
    Ok((connection, channel))
}

/// TCP to the node, then TLS with the node's own configuration and server name.
async fn connect_tls(
    uri: AMQPUri,
    tls: Tls,
    props: ConnectionProperties,
) -> lapin::Result<Connection> {
    let runtime = lapin::runtime::default_runtime()?;
    let connect = async move |uri: AMQPUri, runtime| {
        let plain = AMQPUri {
            scheme: AMQPScheme::AMQP,
            ..uri
        };
        let stream = plain.connect_async(&runtime).await?;
        Ok(stream.into_rustls(&tls.connector, &tls.server_name).await?)
    };
    Connection::connector(uri, runtime, connect, props).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists_parse_and_rotate() {
        let nodes = Nodes::parse("amqp://u:secret@h1:5672/%2f, amqp://u:secret@h2:5673/%2f")
            .expect("two nodes");
        assert_eq!(nodes.len(), 2);
        assert_eq!(
            nodes.nodes[0].uri.query.heartbeat,
            Some(DEFAULT_HEARTBEAT_SECS)
        );
        assert_eq!(nodes.nodes[1].uri.authority.port, 5673);
        nodes.lost();
        assert_eq!(nodes.preferred.load(Ordering::Relaxed), 1);
        nodes.lost();
        assert_eq!(nodes.preferred.load(Ordering::Relaxed), 0);
        let custom = Nodes::parse("amqp://h/%2f?heartbeat=30").expect("one node");
        assert_eq!(custom.nodes[0].uri.query.heartbeat, Some(30));
        for bad in [
            "",
            "amqp://h/%2f,",
            "http://u:secret@h",
            "amqp://u:secret@h:x/v",
            "guest:secret@h:5672",
            "amqp:/guest:secret@h:5672/%2f",
            "amqp:guest:secret@h",
            "amqp://u:secret@h1/%2f,guest:secret@h2:5672",
            "amqp://u:secret@h1/%2f, amqp://u:se?cret@h2:5672/%2f",
            "amqp://u:secret",
        ] {
            let err = Nodes::parse(bad).expect_err(bad).to_string();
            assert!(!err.contains("secret") && !err.contains("cret"), "{err}");
        }
        let err = Nodes::parse("amqp://u:p@h1/%2f, bad").expect_err("bad node");
        assert!(err.to_string().contains("node 2 of 2"), "{err}");
    }

    #[test]
    fn debug_never_shows_a_password() {
        let nodes =
            Nodes::parse("amqp://u:secret@h1:5672/%2f,amqp://u:secret@h2/%2f").expect("two nodes");
        let shown = format!("{nodes:?}");
        assert!(!shown.contains("secret") && shown.contains("h2"), "{shown}");
    }
}
