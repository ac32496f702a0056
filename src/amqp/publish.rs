//! Publishing with publisher confirms, in a window of in-flight messages. A message
//! leaves the outbox only when the broker has confirmed it; a nack or a lost
//! connection leaves it there to be published again under the same message_id, which
//! the consumer deduplicates.

use super::{Nodes, Topology};
use crate::model::WorkDemand;
use crate::telemetry::context::Hop;
use crate::telemetry::{context, spans, TELEMETRY};
use anyhow::{bail, Context};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use lapin::{Confirmation, PublisherConfirm};
use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

/// Confirms awaited at once: past ~200 in flight, throughput stops growing.
pub const CONFIRM_WINDOW: usize = 256;
/// A message nacked this many times ends the publishing session with an error: the
/// producer reconnects (to the next node of `AMQP_URL`) and publishes it again. It stays
/// in the outbox: a nack never drops a demand.
const MAX_NACKS: u32 = 5;

/// A message waiting for its confirm.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub message_id: String,
    pub body: Vec<u8>,
    nacks: u32,
    /// Its publish hop (tracing on), from the first publish to the confirm: a message
    /// published again after a nack or a reconnect stays in the same span.
    hop: Option<Hop>,
}

impl Outgoing {
    pub fn new(message_id: String, body: Vec<u8>) -> Self {
        Self {
            message_id,
            body,
            nacks: 0,
            hop: None,
        }
    }

    /// A demand with a fresh unique message id.
    pub fn demand(add_up_to: u64) -> Self {
        let demand = WorkDemand {
            add_up_to: add_up_to.into(),
            done: false,
        };
        // Serialising two integers cannot fail; fall back to the literal shape anyway.
        let body = serde_json::to_vec(&demand)
            .unwrap_or_else(|_| format!("{{\"add_up_to\":{add_up_to}}}").into_bytes());
        Self::new(new_message_id(), body)
    }
}

/// 128 random bits in hex: unique without coordination, like a UUIDv4.
pub fn new_message_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A confirming channel bound to one queue.
pub struct Publisher {
    _connection: Connection,
    channel: Channel,
    queue: String,
}

impl Publisher {
    /// Connects to a node, declares the topology (or, `declared_before`, checks it is
    /// there: see `Topology::ensure`) and turns on confirms.
    pub async fn connect(
        nodes: &Nodes,
        topology: &Topology,
        declared_before: bool,
    ) -> anyhow::Result<Self> {
        let name = format!("ppctl-produce {}", topology.queue);
        let (connection, channel) = nodes.connect(&name).await?;
        let channel = topology
            .ensure(&connection, channel, declared_before)
            .await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("cannot enable publisher confirms")?;
        Ok(Self {
            _connection: connection,
            channel,
            queue: topology.queue.clone(),
        })
    }

    async fn publish(&self, msg: &mut Outgoing) -> lapin::Result<PublisherConfirm> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(msg.message_id.as_str().into())
            .with_timestamp(now);
        let hop = msg.hop.get_or_insert_with(|| {
            spans::publish(&self.queue, &msg.message_id, msg.body.len(), None)
        });
        let mut headers = FieldTable::default();
        context::inject_amqp(hop, &mut headers);
        if !headers.inner().is_empty() {
            props = props.with_headers(headers);
        }
        self.channel
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                // Mandatory: a message no queue takes comes back instead of being
                // confirmed and dropped.
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &msg.body,
                props,
            )
            .await
    }

    /// Publishes everything in `outbox`, keeping up to `CONFIRM_WINDOW` confirms in
    /// flight, and removes each message once confirmed, counting it in `confirmed` (also
    /// when a later message fails: those confirmed have left the outbox for good). On
    /// error, every unconfirmed message is back in `outbox`.
    pub async fn publish_confirmed(
        &self,
        outbox: &mut VecDeque<Outgoing>,
        confirmed: &mut u64,
    ) -> anyhow::Result<()> {
        let mut in_flight: VecDeque<(Outgoing, PublisherConfirm)> =
            VecDeque::with_capacity(CONFIRM_WINDOW);
        let result = self.drive(outbox, &mut in_flight, confirmed).await;
        // Whatever is still in flight is unconfirmed: back into the outbox, in order.
        while let Some((msg, _)) = in_flight.pop_back() {
            outbox.push_front(msg);
        }
        result
    }

    async fn drive(
        &self,
        outbox: &mut VecDeque<Outgoing>,
        in_flight: &mut VecDeque<(Outgoing, PublisherConfirm)>,
        confirmed: &mut u64,
    ) -> anyhow::Result<()> {
        loop {
            while in_flight.len() < CONFIRM_WINDOW {
                let Some(mut msg) = outbox.pop_front() else {
                    break;
                };
                match self.publish(&mut msg).await {
                    Ok(confirm) => {
                        TELEMETRY.published.inc();
                        in_flight.push_back((msg, confirm));
                    }
                    Err(e) => {
                        outbox.push_front(msg);
                        return Err(anyhow::Error::from(e).context("publish failed"));
                    }
                }
            }
            let Some((mut msg, confirm)) = in_flight.pop_front() else {
                return Ok(());
            };
            match confirm.await {
                Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_))) => {
                    // Returned unroutable: the queue is gone. Reconnecting redeclares it.
                    TELEMETRY.returned.inc();
                    outbox.push_front(msg);
                    bail!(
                        "the broker returned a message as unroutable (queue {} missing?)",
                        self.queue
                    );
                }
                Ok(Confirmation::Ack(None)) => {
                    TELEMETRY.confirmed.inc();
                    *confirmed += 1;
                }
                Ok(Confirmation::Nack(None)) => {
                    TELEMETRY.nacked.inc();
                    msg.nacks += 1;
                    let span = msg
                        .hop
                        .as_ref()
                        .map_or(tracing::Span::none(), |h| h.span.clone());
                    span.in_scope(|| tracing::warn!(message_id = %msg.message_id, nacks = msg.nacks, "broker nacked a publish"));
                    let give_up = msg.nacks >= MAX_NACKS;
                    outbox.push_back(msg);
                    if give_up {
                        bail!("the broker refused a message {MAX_NACKS} times");
                    }
                }
                Ok(Confirmation::NotRequested) => {
                    outbox.push_front(msg);
                    bail!("publisher confirms are not enabled on this channel");
                }
                Err(e) => {
                    outbox.push_front(msg);
                    return Err(anyhow::Error::from(e).context("lost a publisher confirm"));
                }
            }
        }
    }
}
