//! A consumer's connection to one node: the queues made sure of, the prefetch window
//! set, a depth monitor and a dead-letter channel beside the consuming channel.

use super::dead_letter::DeadLetterer;
use super::{depth, Nodes, Topology};
use crate::shutdown::AbortOnDrop;
use anyhow::{bail, Context};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One connection's consuming state; the monitor is aborted when it is dropped.
pub struct Session {
    pub connection: Connection,
    pub channel: Channel,
    /// Poison goes to the dead-letter exchange through this confirm-mode channel.
    pub dead: DeadLetterer,
    pub consumer: Consumer,
    pub monitor: AbortOnDrop<()>,
    /// The connection's own events: why it died, whichever call noticed.
    pub events: Events,
}

pub type Events = std::pin::Pin<Box<dyn futures_util::Stream<Item = lapin::Event> + Send>>;

/// Whether the connection died on a frame lapin could not parse (a message whose
/// properties break the AMQP rules). The connection reports it in its events before any
/// channel fails, so this holds however the failure surfaced: the consumer stream, an
/// ack (`InvalidChannelState`), a dead letter's publish.
pub fn died_on_unparseable_frame(events: &mut Events) -> bool {
    use futures_util::{FutureExt, StreamExt};
    let mut unparseable = false;
    while let Some(Some(event)) = events.next().now_or_never() {
        if let lapin::Event::Error(e) = event {
            unparseable |= matches!(e.kind(), lapin::ErrorKind::ParsingError(_));
        }
    }
    unparseable
}

impl Session {
    /// Connects, makes sure of the queues, and starts consuming with a depth monitor.
    /// `declared` is shared by a consumer's connections: the first declares the queues
    /// in full, reconnects only check them (and declare again if they are gone).
    pub async fn open(
        nodes: &Nodes,
        topology: &Topology,
        declared: &AtomicBool,
        prefetch: u16,
    ) -> anyhow::Result<Self> {
        let name = format!("ppctl-consume {}", topology.queue);
        let (connection, channel) = nodes.connect(&name).await?;
        let events = Box::pin(connection.events_listener());
        let declared_before = declared.swap(true, Ordering::Relaxed);
        let channel = topology
            .ensure(&connection, channel, declared_before)
            .await
            .inspect_err(|_| declared.store(declared_before, Ordering::Relaxed))?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let monitor =
            depth::start_depth_monitor(connection.create_channel().await?, topology.clone());
        let dead = DeadLetterer::open(&connection, topology).await?;
        let consumer = channel
            .basic_consume(
                topology.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("cannot start consuming")?;
        tracing::info!(queue = %topology.queue, prefetch, "consuming");
        Ok(Self {
            connection,
            channel,
            dead,
            consumer,
            monitor,
            events,
        })
    }
}

/// How long a batch waits for more deliveries after its first one.
const LINGER: Duration = Duration::from_millis(5);

/// After the first delivery, gathers more for up to `LINGER` or until `max`. Not
/// cancelled midway: deliveries taken from the stream must not be dropped.
pub async fn gather(
    consumer: &mut Consumer,
    first: Delivery,
    max: usize,
) -> anyhow::Result<Vec<Delivery>> {
    let mut batch = vec![first];
    let deadline = Instant::now() + LINGER;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline.into(), consumer.next()).await {
            Ok(next) => batch.push(delivery_or_error(next)?),
            Err(_) => break,
        }
    }
    Ok(batch)
}

pub fn delivery_or_error(next: Option<lapin::Result<Delivery>>) -> anyhow::Result<Delivery> {
    match next {
        Some(Ok(delivery)) => Ok(delivery),
        Some(Err(e)) => Err(anyhow::Error::from(e).context("the consumer failed")),
        None => bail!("the broker cancelled the consumer"),
    }
}
