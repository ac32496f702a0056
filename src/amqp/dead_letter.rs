//! Dead letters that say why. The consumer does not leave dead-lettering to the broker
//! (a `basic.reject` carries no reason): it publishes a copy of the delivery to the
//! dead-letter exchange with the reason and the time in its headers, waits for the
//! broker's confirm, and only then acknowledges the original. Anything short of a
//! confirm falls back to a plain reject, which the broker dead-letters itself: a dead
//! letter may then exist twice, never zero times.

use super::dead_props::with_reason;
use super::Topology;
use anyhow::{bail, Context};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicPublishOptions, BasicRejectOptions, ConfirmSelectOptions,
};
use lapin::{Channel, Confirmation, Connection};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
