//! Dead letters that say why. The consumer does not leave dead-lettering to the broker
//! (a `basic.reject` carries no reason): it publishes a copy of the delivery to the
//! dead-letter exchange with the reason and the time in its headers, waits for the
//! broker's confirm, and only then acknowledges the original. Anything short of a
//! confirm falls back to a plain reject, which the broker dead-letters itself: a dead
//! letter may then exist twice, never zero times.

use super::Topology;
use anyhow::{bail, Context};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicPublishOptions, BasicRejectOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Header with the consumer's reason, a short human sentence (the one it logs).
pub const REASON_HEADER: &str = "x-ppctl-reason";
/// Header with the time the consumer dead-lettered the delivery, in Unix milliseconds.
pub const DEAD_AT_HEADER: &str = "x-ppctl-dead-at";

/// How long the consumer waits for the confirms of one batch's dead letters before it
/// falls back to rejecting them (a frozen node must not hold the batch forever).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// A confirm-mode channel of the consumer's connection, for dead letters only: a
/// failure there (a missing exchange closes the channel) leaves consuming untouched.
pub struct DeadLetterer {
    channel: Channel,
    exchange: String,
    routing_key: String,
}

impl DeadLetterer {
    pub async fn open(connection: &Connection, topology: &Topology) -> anyhow::Result<Self> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("cannot enable confirms on the dead-letter channel")?;
        Ok(Self {
            channel,
            exchange: topology.dead_exchange.clone(),
            // The work queue's x-dead-letter-routing-key: the binding the broker uses.
            routing_key: topology.queue.clone(),
        })
    }

    /// Dead-letters each delivery with its reason: a confirmed copy carrying the reason,
    /// then an ack of the original; a plain reject when the copy was not confirmed. Single
    /// acks and rejects touch only their own tag, so the batches' multiple-acks keep their
    /// delivery order.
    pub async fn settle(&self, items: &[(&Delivery, &str)]) -> anyhow::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let confirmed = self.publish(items).await;
        for ((delivery, _), copied) in items.iter().zip(confirmed) {
            let tag = delivery.delivery_tag;
            let sent = if copied {
                delivery.acker.ack(BasicAckOptions::default()).await?
            } else {
                tracing::warn!(delivery_tag = tag, "the dead letter's copy was not confirmed: rejecting the delivery instead (the broker dead-letters it, with x-death but without the reason)");
                let reject = BasicRejectOptions { requeue: false };
                delivery.acker.reject(reject).await?
            };
            if !sent {
                bail!("could not settle dead letter {tag}: the channel is closed");
            }
        }
        Ok(())
    }

    /// Publishes a copy of each delivery with its reason, to the dead-letter exchange,
    /// and says for each whether the broker confirmed it (in order). Never an error:
    /// what is not confirmed is for the caller to reject.
    async fn publish(&self, items: &[(&Delivery, &str)]) -> Vec<bool> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut confirms = Vec::with_capacity(items.len());
        for (delivery, reason) in items {
            let props = with_reason(&delivery.properties, reason, now_ms);
            let published = self
                .channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    self.routing_key.as_str().into(),
                    // Mandatory: with the dead-letter queue gone, the copy comes back
                    // instead of being confirmed and dropped.
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &delivery.data,
                    props,
                )
                .await;
            confirms.push(published.ok());
        }
        let mut confirmed = Vec::with_capacity(confirms.len());
        for confirm in confirms {
            let ok = match confirm {
                Some(confirm) => matches!(
                    tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await,
                    Ok(Ok(Confirmation::Ack(None)))
                ),
                None => false,
            };
            confirmed.push(ok);
        }
        confirmed
    }
}

/// The original properties (message_id, timestamp, headers...) plus the reason and the
/// time, made persistent: a dead letter is the only copy left.
fn with_reason(props: &BasicProperties, reason: &str, now_ms: i64) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    headers.insert(
        REASON_HEADER.into(),
        AMQPValue::LongString(reason.as_bytes().into()),
    );
    headers.insert(DEAD_AT_HEADER.into(), AMQPValue::LongLongInt(now_ms));
    props.clone().with_headers(headers).with_delivery_mode(2)
}

/// Why and when a dead letter died: the consumer's headers, or else the broker's
/// `x-death` (a delivery limit reached, a reject the consumer fell back to). The time
/// is in Unix milliseconds.
pub fn reason_of(headers: Option<&FieldTable>) -> (String, Option<i64>) {
    let Some(headers) = headers.map(FieldTable::inner) else {
        return ("unknown (no headers)".into(), None);
    };
    if let Some(AMQPValue::LongString(reason)) = headers.get(REASON_HEADER) {
        let at = match headers.get(DEAD_AT_HEADER) {
            Some(AMQPValue::LongLongInt(ms)) => Some(*ms),
            _ => None,
        };
        return (String::from_utf8_lossy(reason.as_bytes()).into_owned(), at);
    }
    // x-death: one table per (queue, reason), the most recent first.
    let first = match headers.get("x-death") {
        Some(AMQPValue::FieldArray(deaths)) => deaths.as_slice().first(),
        _ => None,
    };
    let Some(AMQPValue::FieldTable(death)) = first else {
        return ("unknown (no reason recorded)".into(), None);
    };
    let death = death.inner();
    let text = |key: &str| match death.get(key) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_string(),
        _ => "?".into(),
    };
    let at = match death.get("time") {
        Some(AMQPValue::Timestamp(secs)) => i64::try_from(*secs).ok().map(|s| s * 1000),
        _ => None,
    };
    let reason = format!(
        "dead-lettered by the broker: {} (from queue {})",
        text("reason"),
        text("queue")
    );
    (reason, at)
}

/// The properties a replayed message goes back with: the original ones, without the
/// dead-letter headers (ours and the broker's), so it starts afresh.
pub fn for_replay(props: &BasicProperties) -> BasicProperties {
    let Some(headers) = props.headers() else {
        return props.clone();
    };
    let kept: std::collections::BTreeMap<_, _> = headers
        .inner()
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            !(name.starts_with("x-ppctl-")
                || name.starts_with("x-death")
                || name.starts_with("x-first-death")
                || name.starts_with("x-last-death")
                || name == "x-delivery-count")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    props.clone().with_headers(FieldTable::from(kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_come_from_our_headers_then_from_x_death() {
        let props = with_reason(&BasicProperties::default(), "not JSON", 1_700_000_000_123);
        let (reason, at) = reason_of(props.headers().as_ref());
        assert_eq!((reason.as_str(), at), ("not JSON", Some(1_700_000_000_123)));
        let replayed = for_replay(&props);
        assert!(replayed
            .headers()
            .as_ref()
            .is_some_and(|h| h.inner().is_empty()));

        let mut death = FieldTable::default();
        death.insert(
            "reason".into(),
            AMQPValue::LongString("delivery_limit".into()),
        );
        death.insert("queue".into(), AMQPValue::LongString("q".into()));
        death.insert("time".into(), AMQPValue::Timestamp(1_700_000_000));
        let mut headers = FieldTable::default();
        let deaths = vec![AMQPValue::FieldTable(death)];
        headers.insert("x-death".into(), AMQPValue::FieldArray(deaths.into()));
        let (reason, at) = reason_of(Some(&headers));
        assert!(
            reason.contains("delivery_limit") && reason.contains("queue q"),
            "{reason}"
        );
        assert_eq!(at, Some(1_700_000_000_000));
        assert!(reason_of(None).0.starts_with("unknown"));
    }
}
