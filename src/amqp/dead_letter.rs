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

/// How long the consumer waits for the confirms of one batch's dead letters, all of
/// them together, before it falls back to rejecting the unconfirmed ones (a frozen node
/// must not hold the batch forever, nor for this long once per dead letter).
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
        let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut confirms = Vec::with_capacity(items.len());
        for (delivery, reason) in items {
            let props = with_reason(&delivery.properties, reason, now_ms);
            let published = self.channel.basic_publish(
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
            );
            let published = tokio::time::timeout_at(deadline, published).await;
            confirms.push(published.ok().and_then(Result::ok));
        }
        confirmed_by(confirms, deadline).await
    }
}

/// Whether each confirm is a plain ack that arrived before `deadline` (one deadline for
/// them all: a broker that stops confirming costs a batch that much, however many dead
/// letters it has). `None`: the publish itself failed.
async fn confirmed_by<F, E>(confirms: Vec<Option<F>>, deadline: tokio::time::Instant) -> Vec<bool>
where
    F: std::future::Future<Output = Result<Confirmation, E>>,
{
    let mut confirmed = Vec::with_capacity(confirms.len());
    for confirm in confirms {
        let ok = match confirm {
            Some(confirm) => matches!(
                tokio::time::timeout_at(deadline, confirm).await,
                Ok(Ok(Confirmation::Ack(None)))
            ),
            None => false,
        };
        confirmed.push(ok);
    }
    confirmed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broker that never confirms: 100 dead letters wait one timeout, not 100.
    #[tokio::test(start_paused = true)]
    async fn a_batch_of_unconfirmed_dead_letters_waits_one_timeout() {
        let started = tokio::time::Instant::now();
        let never = || Some(std::future::pending::<Result<Confirmation, ()>>());
        let confirms: Vec<_> = (0..100).map(|_| never()).collect();
        let confirmed = confirmed_by(confirms, started + CONFIRM_TIMEOUT).await;
        assert_eq!(confirmed, vec![false; 100]);
        assert_eq!(started.elapsed(), CONFIRM_TIMEOUT);
    }
}
