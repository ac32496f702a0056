//! The operator's side of the dead-letter queue: list, replay, purge.
//!
//! Listing reads without consuming: `basic.get` without ack, then the channel closes and
//! the broker puts every unacknowledged message back where it was (the dead-letter queue
//! is a classic queue: no delivery limit, and a requeued message keeps its place).
//! Replaying publishes to the work queue with confirms, and acknowledges (removes) a dead
//! letter only once its copy is confirmed: a crash in between leaves both, and the
//! consumer deduplicates by message_id.
//!
//! A dead letter whose properties lapin cannot parse (a non-UTF-8 message_id) kills the
//! connection that receives it. Each operation therefore runs on a connection of its own,
//! and such a message is a wall: it is reported by its position, and what lies behind it
//! cannot be seen or replayed until it is removed (`dead_unreadable`; docs/dead-letters.md,
//! "Unreadable dead letters").

use super::dead_props::{for_replay, reason_of};
pub use super::dead_reader::DeadError;
use super::dead_reader::{close, open, publish_confirmed, Reader};
use super::{Nodes, Topology};
use crate::telemetry::context::{self, AmqpHeaders, REPLAY_OF_HEADER};
use crate::telemetry::{spans, traces};
use anyhow::{bail, Context};
use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, ConfirmSelectOptions, QueuePurgeOptions};
use lapin::types::AMQPValue;
use lapin::Channel;
use opentelemetry::propagation::Extractor;
use serde::Serialize;
use tracing::Instrument;

/// Bytes of a body shown in a listing.
const PREVIEW_BYTES: usize = 80;

/// A readable dead letter.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// 0 for the head of the queue.
    pub position: u64,
    #[schema(required = true)]
    pub message_id: Option<String>,
    /// Why it was dead-lettered: the consumer's `x-ppctl-reason` header, or the broker's
    /// `x-death` (e.g. `delivery_limit`).
    pub reason: String,
    /// When it was dead-lettered, Unix seconds (null when nothing recorded it).
    #[schema(required = true)]
    pub dead_at: Option<i64>,
    /// Body size in bytes.
    pub size: usize,
    /// The body's first bytes as text (invalid UTF-8 replaced).
    pub preview: String,
}

/// A dead letter the AMQP client cannot read (e.g. a non-UTF-8 message_id), by its
/// position in the queue; nothing behind it can be read until it is purged.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Unreadable {
    pub position: u64,
}

/// What `list` saw.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Listing {
    pub queue: String,
    /// Messages ready in the dead-letter queue when the listing began.
    pub count: u32,
    pub dead_letters: Vec<DeadLetter>,
    pub unreadable: Vec<Unreadable>,
    /// Messages behind an unreadable one, which no listing can reach.
    pub behind_unreadable: u64,
}

/// Which dead letters to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Ids(Vec<String>),
}

/// What `replay` did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Replayed {
    /// Message ids sent back to the work queue (null for a message without one).
    pub replayed: Vec<Option<String>>,
    /// Asked-for ids not found in front of any unreadable message.
    pub not_found: Vec<String>,
    /// Skipped: the client cannot read them.
    pub unreadable: Vec<Unreadable>,
    pub behind_unreadable: u64,
    /// The replay stopped at its deadline (an API request's bound) with dead letters
    /// still to go: nothing more is sent after the answer; ask again for the rest.
    /// `not_found` is then empty: the rest was not looked at.
    pub stopped_at_deadline: bool,
}

fn describe(position: u64, message: &BasicGetMessage) -> DeadLetter {
    let delivery = &message.delivery;
    let (reason, dead_at_ms) = reason_of(delivery.properties.headers().as_ref());
    let shown = &delivery.data[..delivery.data.len().min(PREVIEW_BYTES)];
    let preview: String = String::from_utf8_lossy(shown)
        .chars()
        .map(|c| if c.is_control() { '.' } else { c })
        .collect();
    DeadLetter {
        position,
        message_id: delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_string()),
        reason,
        dead_at: dead_at_ms.map(|ms| ms / 1000),
        size: delivery.data.len(),
        preview,
    }
}

/// Up to `limit` dead letters from the head of the queue, without removing any.
pub async fn list(nodes: &Nodes, topology: &Topology, limit: u32) -> anyhow::Result<Listing> {
    let mut reader = Reader::open(nodes, topology).await?;
    let count = reader.count;
    let mut listing = Listing {
        queue: topology.dead_queue.clone(),
        count,
        dead_letters: Vec::new(),
        unreadable: Vec::new(),
        behind_unreadable: 0,
    };
    let mut position = 0u64;
    while position < u64::from(limit) {
        let next = reader.next().await;
        let next = match next {
            Ok(next) => next,
            Err(e) => {
                reader.close("failed").await;
                return Err(e);
            }
        };
        match next {
            Ok(Some(message)) => listing.dead_letters.push(describe(position, &message)),
            Ok(None) => break,
            Err(()) => {
                listing.unreadable.push(Unreadable { position });
                listing.behind_unreadable = u64::from(count).saturating_sub(position + 1);
                break;
            }
        }
        position += 1;
    }
    reader.close("listed").await;
    Ok(listing)
}

/// Sends the selected dead letters back to the work queue, each removed only once its
/// copy is confirmed. Stops at the first unreadable message (see the module doc).
pub async fn replay(
    nodes: &Nodes,
    topology: &Topology,
    selection: &Selection,
    stop_at: Option<tokio::time::Instant>,
) -> anyhow::Result<Replayed> {
    let mut reader = Reader::open(nodes, topology).await?;
    let count = reader.count;
    reader
        .channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("cannot enable publisher confirms")?;
    let wanted: &[String] = match selection {
        Selection::All => &[],
        Selection::Ids(ids) => ids,
    };
    let mut found = std::collections::HashSet::new();
    let mut done = Replayed::default();
    let mut position = 0u64;
    // Only the messages there when it began: a replayed demand the consumer dead-letters
    // again lands at the tail, and chasing it would loop.
    let result = loop {
        if position >= u64::from(count) {
            break Ok(());
        }
        let message = match reader.next().await {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => break Ok(()),
            Ok(Err(())) => {
                done.unreadable.push(Unreadable { position });
                done.behind_unreadable = u64::from(count).saturating_sub(position + 1);
                break Ok(());
            }
            Err(e) => break Err(e),
        };
        position += 1;
        let delivery = &message.delivery;
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|i| i.as_str().to_string());
        if let Selection::Ids(_) = selection {
            // Every copy of an asked-for id goes (a dead letter may exist twice).
            match id.as_ref().filter(|id| wanted.contains(id)) {
                Some(id) => found.insert(id.clone()),
                None => continue, // not asked for: stays unacked, back in place at the end
            };
        }
        // Not one more after the deadline: the caller's client is being answered.
        if stop_at.is_some_and(|t| tokio::time::Instant::now() >= t) {
            done.stopped_at_deadline = true;
            break Ok(());
        }
        if let Err(e) = send_back(&reader.channel, topology, &message).await {
            break Err(e);
        }
        done.replayed.push(id);
    };
    reader.close("replayed").await;
    result?;
    if !done.stopped_at_deadline {
        done.not_found = wanted
            .iter()
            .filter(|id| !found.contains(*id))
            .cloned()
            .collect();
    }
    Ok(done)
}

/// Publishes one dead letter to the work queue, waits for the confirm, then acks it.
async fn send_back(
    channel: &Channel,
    topology: &Topology,
    message: &BasicGetMessage,
) -> anyhow::Result<()> {
    let delivery = &message.delivery;
    let (props, span) = replay_props(&topology.queue, delivery);
    publish_confirmed(channel, &topology.queue, &delivery.data, props)
        .instrument(span)
        .await?;
    if !delivery.acker.ack(BasicAckOptions::default()).await? {
        bail!("could not remove a replayed dead letter: the channel closed (it may be replayed twice; the consumer deduplicates)");
    }
    Ok(())
}

/// The properties a dead letter is replayed with and, when tracing is on, the replay's
/// publish span: a new operation linked to the demand's own trace, whose context the
/// message carries (the original's in `x-ppctl-replay-of`, for the consumer's link).
fn replay_props(
    queue: &str,
    delivery: &lapin::message::Delivery,
) -> (lapin::BasicProperties, tracing::Span) {
    let props = for_replay(&delivery.properties);
    let id = delivery
        .properties
        .message_id()
        .as_ref()
        .map_or("", |i| i.as_str());
    if !traces::on() {
        return (props, tracing::Span::none());
    }
    let original = AmqpHeaders(delivery.properties.headers().as_ref());
    let hop = spans::publish(queue, id, delivery.data.len(), context::remote(&original));
    let mut headers = props.headers().clone().unwrap_or_default();
    if let Some(parent) = original.get("traceparent") {
        headers.insert(
            REPLAY_OF_HEADER.into(),
            AMQPValue::LongString(parent.into()),
        );
    }
    context::inject_amqp(&hop, &mut headers);
    (props.with_headers(headers), hop.span)
}

/// Empties the dead-letter queue, unreadable messages included; returns how many went.
pub async fn purge(nodes: &Nodes, topology: &Topology) -> anyhow::Result<u32> {
    let (connection, channel, _) = open(nodes, topology).await?;
    let purged = channel
        .queue_purge(
            topology.dead_queue.as_str().into(),
            QueuePurgeOptions::default(),
        )
        .await
        .context("cannot purge the dead-letter queue")?;
    close(&connection, "purged").await;
    Ok(purged)
}
