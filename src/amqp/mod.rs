//! RabbitMQ: connecting to one node of a list, the queue topology, a consumer's
//! session, publishing with confirms, dead letters (the consumer's reasons in
//! `dead_letter`; reading, replaying and purging them in `dead`, `dead_reader`,
//! `dead_unreadable`). Reconnection is the caller's loop: on any channel or connection
//! error, drop everything, back off, connect again (to the next node) and redeclare
//! (lapin's own auto-recovery is not relied on).

pub mod dead;
pub mod dead_letter;
pub mod dead_props;
mod dead_reader;
pub mod dead_unreadable;
pub mod depth;
pub mod existing;
pub mod publish;
mod rescue;
pub mod session;
pub mod topology;

use crate::config::redact_url;
use anyhow::{bail, Context};
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use topology::{Topology, TopologyMismatch};

/// A node that accepts TCP but never answers (a frozen broker) must not hold a client
/// forever: each connection attempt, handshake included, is bounded by this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Heartbeat asked for when the URL does not set one (`?heartbeat=N`): RabbitMQ's
/// default of 60 s would leave a client on a frozen node for two minutes.
const DEFAULT_HEARTBEAT_SECS: u16 = 5;

/// The broker's nodes, from `AMQP_URL` (comma-separated, as with Celery's failover):
/// clients connect to the first that answers and, once it is lost, start from the next.
/// Holds the passwords: its `Debug` shows only the redacted URLs.
pub struct Nodes {
    nodes: Vec<(AMQPUri, String)>,
    preferred: AtomicUsize,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<&str> = self.nodes.iter().map(|(_, shown)| shown.as_str()).collect();
        f.debug_struct("Nodes").field("nodes", &shown).finish()
    }
}

impl Nodes {
    /// Parses and checks every URL. A malformed entry is described by its place in the
    /// list, never shown: redaction relies on the URL's shape, which is what is wrong.
    pub fn parse(list: &str) -> anyhow::Result<Self> {
        let count = list.split(',').count();
        let mut nodes = Vec::new();
        for (i, url) in list.split(',').map(str::trim).enumerate() {
            let which = match count {
                1 => "AMQP_URL".to_string(),
                _ => format!("AMQP_URL's node {} of {count}", i + 1),
            };
            if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                bail!(
                    "{which} is not an amqp:// or amqps:// URL (not shown: it may hold a \
                     password); expected amqp://USER:PASSWORD@HOST:5672/%2f, comma-separated"
                );
            }
            let mut uri: AMQPUri = url.parse().map_err(|e: String| {
                // The parser may quote its input.
                let e = e.replace(url, "(the URL)");
                anyhow::anyhow!(
                    "{which} is not a valid URL (not shown: it may hold a password): {e}"
                )
            })?;
            uri.query.heartbeat.get_or_insert(DEFAULT_HEARTBEAT_SECS);
            nodes.push((uri, redact_url(url)));
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
            let (uri, shown) = &self.nodes[i];
            match tokio::time::timeout(CONNECT_TIMEOUT, open(uri, name)).await {
                Ok(Ok(opened)) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    tracing::debug!(node = %shown, "connected to RabbitMQ");
                    return Ok(opened);
                }
                Ok(Err(e)) => errors.push(format!("{shown}: {e:#}")),
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

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

async fn open(uri: &AMQPUri, name: &str) -> anyhow::Result<(Connection, Channel)> {
    let props = ConnectionProperties::default().with_connection_name(name.to_string().into());
    let connection = Connection::connect_uri(uri.clone(), props).await?;
    let channel = connection
        .create_channel()
        .await
        .context("cannot open an AMQP channel")?;
    Ok((connection, channel))
}

/// Opens a connection to the first node of `amqp_urls` that answers, and one channel.
pub async fn connect(amqp_urls: &str, name: &str) -> anyhow::Result<(Connection, Channel)> {
    Nodes::parse(amqp_urls)?.connect(name).await
}

/// Marks a connection that died on a frame lapin could not parse (a message whose
/// properties break the AMQP rules, a non-UTF-8 message_id): the same message will come
/// back. Known from the connection's events (`session::died_on_unparseable_frame`).
#[derive(Debug, thiserror::Error)]
#[error("a delivery the AMQP client cannot parse closed the connection")]
pub struct UnparseableFrame;

/// True when `error` is marked `UnparseableFrame`, or is lapin's parse failure itself.
pub fn is_unparseable_frame(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<UnparseableFrame>()
            || cause
                .downcast_ref::<lapin::Error>()
                .is_some_and(|e| matches!(e.kind(), lapin::ErrorKind::ParsingError(_)))
    })
}

/// What happens to a message lapin cannot parse, in one line for the operator.
pub fn unreadable_line(topology: &Topology) -> String {
    let fate = match (topology.existing.get(), topology.queue_type) {
        (Some(_), _) => format!(
            "{} was declared by someone else and ppctl cannot tell its delivery limit: \
             without one (a classic queue, or no delivery-limit policy), it comes back \
             forever until removed by hand",
            topology.queue
        ),
        (None, crate::cli::QueueType::Quorum) => format!(
            "consuming one at a time until the broker's delivery limit ({}) moves it to {}, \
             where `ppctl dead purge --unreadable --yes` removes it",
            topology::QUORUM_DELIVERY_LIMIT,
            topology.dead_queue
        ),
        (None, crate::cli::QueueType::Classic) => format!(
            "a classic queue has no delivery limit: it comes back forever until removed \
             from {} by hand",
            topology.queue
        ),
    };
    format!(
        "an unreadable message (AMQP properties the client cannot parse, e.g. a non-UTF-8 \
         message id) closed the connection: {fate}"
    )
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
            nodes.nodes[0].0.query.heartbeat,
            Some(DEFAULT_HEARTBEAT_SECS)
        );
        assert_eq!(nodes.nodes[1].0.authority.port, 5673);
        nodes.lost();
        assert_eq!(nodes.preferred.load(Ordering::Relaxed), 1);
        nodes.lost();
        assert_eq!(nodes.preferred.load(Ordering::Relaxed), 0);
        let custom = Nodes::parse("amqp://h/%2f?heartbeat=30").expect("one node");
        assert_eq!(custom.nodes[0].0.query.heartbeat, Some(30));
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
