//! Queued demands become finished works. One batch: dead-letter what can never
//! succeed, compute the rest, store works and events in one statement, then one
//! multiple-ack. Nothing is acknowledged before its work is committed, and nothing a
//! publisher sends can hold a batch up: a demand the database keeps refusing, with
//! whatever error that is not an outage, is dead-lettered alone; outages are retried
//! without limit. The steps are `prepare`, then the store (`worker::store`), then
//! `acknowledge`; the consume loop (`worker::consumer`) runs them itself, so that two
//! batches' stores overlap while the acks still go out in delivery order.

use super::message_ids::MissingIds;
use super::Demand;
use crate::amqp::dead_letter::DeadLetterer;
use crate::model::WorkDemand;
use crate::storage::works;
use crate::telemetry::{spans, TELEMETRY};
use anyhow::Context;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use lapin::Channel;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// New works stored.
    pub stored: u64,
    /// Deliveries whose message_id was already stored (redeliveries), acked without a work.
    pub duplicates: u64,
    /// Deliveries rejected to the dead-letter queue.
    pub dead: u64,
}

/// Why a delivery can never succeed, or its message id (`None`: it has none),
/// `add_up_to`, and when it is due if it asks to run later (`None`: now).
pub fn parse(delivery: &Delivery) -> Result<(Option<&str>, i64, Option<SystemTime>), String> {
    let message_id = match delivery.properties.message_id() {
        Some(id) if !id.as_str().is_empty() => Some(id.as_str()),
        _ => None,
    };
    if message_id.is_some_and(|id| id.contains('\0')) {
        // PostgreSQL text cannot hold NUL: such an id could never be stored.
        return Err(format!("message_id {message_id:?} contains a NUL byte"));
    }
    let (n, when) = WorkDemand::parse(&delivery.data)?;
    let run_at = when.and_then(|w| w.run_at(SystemTime::now()));
    // validate() bounds n to 0..=4294967295, which fits in i64.
    Ok((message_id, n as i64, run_at))
}

/// The demand a good delivery becomes: its own message id, or a key made up for it.
fn demand(delivery: &Delivery, ids: &MissingIds) -> Result<Demand, String> {
    let (message_id, add_up_to, run_at) = parse(delivery)?;
    let (message_id, possible_repeat) = match message_id {
        Some(id) => (id.to_string(), false),
        None => {
            let made_up = ids.key_for(delivery)?;
            (made_up.key, made_up.possible_repeat)
        }
    };
    Ok(Demand {
        message_id,
        add_up_to,
        tag: delivery.delivery_tag,
        trace_parent: None,
        possible_repeat,
        run_at,
    })
}

/// A batch between its steps: poison rejected, the rest computed, maybe stored.
#[derive(Debug)]
pub struct Batch {
    /// Computed works and the delivery tag each came from.
    pub(super) finished: Vec<(works::Finished, u64)>,
    /// Tags of the deliveries acked by this batch's multiple-ack (duplicates included).
    good_tags: Vec<u64>,
    /// Deliveries the database refused for good, with the reason: dead-lettered.
    pub(super) refused: Vec<(u64, String)>,
    /// The good deliveries themselves (moved, not copied): a refused one is
    /// dead-lettered as a copy of its body and properties.
    kept: Vec<Delivery>,
    /// Each delivery's processing span by tag (tracing on), ended with the batch, after
    /// its ack.
    pub(super) spans: Vec<(u64, tracing::Span)>,
    deliveries: usize,
    pub outcome: BatchOutcome,
}

impl Batch {
    /// How many deliveries the batch settles.
    pub fn deliveries(&self) -> usize {
        self.deliveries
    }

    /// The processing span of the delivery with this tag (none while tracing is off).
    pub(super) fn span(&self, tag: u64) -> tracing::Span {
        self.spans
            .iter()
            .find(|(t, _)| *t == tag)
            .map_or_else(tracing::Span::none, |(_, s)| s.clone())
    }
}

/// Step 1: dead-letters what can never succeed (a demand without a message_id too,
/// when `ids` requires one), computes the rest.
pub async fn prepare(
    queue: &str,
    deliveries: Vec<Delivery>,
    dead: &DeadLetterer,
    work_delay: Duration,
    ids: &MissingIds,
) -> anyhow::Result<Batch> {
    let mut outcome = BatchOutcome::default();
    let count = deliveries.len();
    let mut good: Vec<Demand> = Vec::with_capacity(count);
    let mut seen = HashSet::with_capacity(count);
    let mut good_tags = Vec::with_capacity(count);
    let mut poison = Vec::new();
    let mut kept = Vec::with_capacity(count);
    let mut spans = Vec::new();
    for delivery in deliveries {
        let (hop, tag) = (spans::process(queue, &delivery), delivery.delivery_tag);
        let span = hop.span.clone();
        match demand(&delivery, ids) {
            Err(reason) => {
                spans::failed(&span, &reason);
                span.in_scope(|| tracing::warn!(delivery_tag = delivery.delivery_tag, %reason, "dead-lettering a demand that can never succeed"));
                poison.push((delivery, reason));
            }
            Ok(mut demand) => {
                good_tags.push(delivery.delivery_tag);
                if seen.insert(demand.message_id.clone()) {
                    demand.trace_parent = hop.sampled_traceparent();
                    good.push(demand);
                } else {
                    outcome.duplicates += 1;
                }
                kept.push(delivery);
            }
        }
        if !span.is_none() {
            spans.push((tag, span));
        }
    }
    let items: Vec<(&Delivery, &str)> = poison.iter().map(|(d, r)| (d, r.as_str())).collect();
    dead.settle(&items).await?;
    outcome.dead += items.len() as u64;
    let finished = super::compute_all(good, work_delay).await?;
    Ok(Batch {
        finished,
        good_tags,
        refused: Vec::new(),
        kept,
        spans,
        deliveries: count,
        outcome,
    })
}

/// Step 3, only after step 2 committed: the refused deliveries dead-lettered, then one
/// multiple-ack for the rest (dead-lettered tags are no longer outstanding). Acks must go
/// in delivery order: a multiple-ack also covers every earlier tag.
pub async fn acknowledge(
    channel: &Channel,
    dead: &DeadLetterer,
    batch: &Batch,
) -> anyhow::Result<()> {
    let mut items = Vec::with_capacity(batch.refused.len());
    for (tag, reason) in &batch.refused {
        let span = batch.span(*tag);
        spans::failed(&span, reason);
        span.in_scope(|| tracing::warn!(delivery_tag = tag, %reason, "dead-lettering a demand the database refuses"));
        let delivery = batch
            .kept
            .iter()
            .find(|d| d.delivery_tag == *tag)
            .context("a refused delivery is missing from its batch")?;
        items.push((delivery, reason.as_str()));
    }
    dead.settle(&items)
        .await
        .context("dead-lettering failed after commit")?;
    let refused: HashSet<u64> = batch.refused.iter().map(|(tag, _)| *tag).collect();
    let last = batch
        .good_tags
        .iter()
        .filter(|t| !refused.contains(t))
        .max();
    if let Some(&tag) = last {
        channel
            .basic_ack(tag, BasicAckOptions { multiple: true })
            .await
            .context(
                "ack failed after commit (the demands will be redelivered and deduplicated)",
            )?;
    }
    record(&batch.outcome, batch.deliveries);
    Ok(())
}

fn record(outcome: &BatchOutcome, deliveries: usize) {
    let t = &TELEMETRY;
    t.works_stored.inc_by(outcome.stored);
    t.duplicates.inc_by(outcome.duplicates);
    t.dead_lettered.inc_by(outcome.dead);
    t.batch_size.observe(deliveries as f64);
}
