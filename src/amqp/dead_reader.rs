//! Reading the dead-letter queue one message at a time on a connection of its own,
//! telling a message lapin cannot parse from any other failure, and publishing from that
//! connection with confirms (replays, messages put back).

use super::{is_unparseable_frame, Nodes, Topology};
use anyhow::{bail, Context};
use lapin::message::BasicGetMessage;
use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::{Channel, Confirmation, Connection};
use std::time::Duration;

/// One `basic.get` may take this long, except a `take`: a frame lapin cannot parse may
/// leave the call waiting instead of failing.
const GET_TIMEOUT: Duration = Duration::from_secs(5);

/// Failures callers tell apart (exit codes, HTTP statuses).
#[derive(Debug, thiserror::Error)]
pub enum DeadError {
    #[error("{0}")]
    Unreachable(String),
    #[error("dead-letter queue {0} does not exist (no producer or consumer has declared it)")]
    NoQueue(String),
}

/// A connection and channel of their own, and the dead-letter queue's ready count.
pub(super) async fn open(
    nodes: &Nodes,
    topology: &Topology,
) -> anyhow::Result<(Connection, Channel, u32)> {
    let name = format!("ppctl-dead {}", topology.dead_queue);
    let (connection, channel) = nodes
        .connect(&name)
        .await
        .map_err(|e| DeadError::Unreachable(format!("{e:#}")))?;
    let count = match topology.dead_count(&channel).await {
        Ok(count) => count,
        Err(e) => {
            close(&connection, "no queue").await;
            let missing =
                matches!(e.kind(), lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404);
            if missing {
                return Err(DeadError::NoQueue(topology.dead_queue.clone()).into());
            }
            return Err(anyhow::Error::from(e).context("cannot look at the dead-letter queue"));
        }
    };
    Ok((connection, channel, count))
}

/// Closes without waiting long: a connection killed by an unreadable frame may never
/// answer, and the broker requeues what it held either way.
pub(super) async fn close(connection: &Connection, why: &str) {
    let closing = connection.close(200, why.into());
    let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
}

/// A connection of its own on the dead-letter queue, and its error events: a frame
/// lapin cannot parse kills the connection without failing the `basic.get` that asked
/// for it (checked on RabbitMQ 3.10: the call waits forever), so the event says which.
pub(super) struct Reader {
    connection: Connection,
    pub channel: Channel,
    events: std::pin::Pin<Box<dyn futures_util::Stream<Item = lapin::Event> + Send>>,
    queue: String,
    /// Ready messages when it opened.
    pub count: u32,
}

impl Reader {
    pub(super) async fn open(nodes: &Nodes, topology: &Topology) -> anyhow::Result<Self> {
        let (connection, channel, count) = open(nodes, topology).await?;
        let events = Box::pin(connection.events_listener());
        Ok(Self {
            connection,
            channel,
            events,
            queue: topology.dead_queue.clone(),
            count,
        })
    }

    /// The next message, without ack; Ok(None) at the end, Err(()) for a frame lapin
    /// cannot parse (the connection is then gone), any other error as it is.
    pub async fn next(&mut self) -> anyhow::Result<Result<Option<BasicGetMessage>, ()>> {
        self.get(false).await
    }

    /// Like `next`, but the broker removes the message as it sends it (`no_ack`): the
    /// one way to take a message off the queue that lapin cannot receive. No timeout:
    /// a late answer given up on would be a message lost. The wait ends with the answer
    /// or with the connection, which lapin closes after two heartbeats of silence.
    pub async fn take(&mut self) -> anyhow::Result<Result<Option<BasicGetMessage>, ()>> {
        self.get(true).await
    }

    async fn get(&mut self, no_ack: bool) -> anyhow::Result<Result<Option<BasicGetMessage>, ()>> {
        use futures_util::StreamExt;
        let get = self
            .channel
            .basic_get(self.queue.as_str().into(), BasicGetOptions { no_ack });
        let failed = async {
            while let Some(event) = self.events.next().await {
                if let lapin::Event::Error(e) = event {
                    return anyhow::Error::from(e);
                }
            }
            anyhow::anyhow!("the connection closed")
        };
        let answered = async {
            tokio::select! {
                got = get => got.map_err(anyhow::Error::from),
                e = failed => Err(e),
            }
        };
        let got = if no_ack {
            answered.await
        } else {
            tokio::time::timeout(GET_TIMEOUT, answered)
                .await
                .map_err(|_| {
                    anyhow::anyhow!("the broker did not answer a basic.get within {GET_TIMEOUT:?}")
                })?
        };
        match got {
            Ok(message) => Ok(Ok(message)),
            Err(e) if is_unparseable_frame(&e) => Ok(Err(())),
            Err(e) => Err(e.context("cannot read the dead-letter queue")),
        }
    }

    /// Closing without acks returns every message held to its place.
    pub async fn close(self, why: &str) {
        close(&self.connection, why).await;
    }
}

/// Publishes to `queue` (default exchange, mandatory) and waits for the broker's confirm.
pub(super) async fn publish_confirmed(
    channel: &Channel,
    queue: &str,
    body: &[u8],
    props: lapin::BasicProperties,
) -> anyhow::Result<()> {
    let mandatory = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    let confirm = channel
        .basic_publish("".into(), queue.into(), mandatory, body, props)
        .await
        .context("publish failed")?;
    match confirm.await.context("lost a publisher confirm")? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => {
            bail!("queue {queue} is missing: the message came back")
        }
        _ => bail!("the broker refused a message for {queue} (queue full?)"),
    }
}
