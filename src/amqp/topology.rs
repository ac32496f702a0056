//! The queue, its dead-letter exchange and dead-letter queue. Producer and consumer
//! both declare all three, so either may start first.

use super::existing::{self, Existing};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ExchangeKind};
use std::sync::{Arc, OnceLock};

/// A quorum queue dead-letters a message after this many returns: one that crashes
/// every consumer that takes it (a frame the client cannot parse) must not loop
/// forever. RabbitMQ 4's default; high enough that a good message caught in a few
/// consumer crashes or node losses is never dead-lettered.
pub const QUORUM_DELIVERY_LIMIT: i64 = 20;

/// The queue exists with arguments other than ours (another type, another limit) and
/// `--queue-type` asked for ours exactly: not something a reconnect can fix, so
/// commands stop with this one-line error. Without `--queue-type` the queue is used as
/// it is (`existing`).
#[derive(Debug, thiserror::Error)]
#[error(
    "queue {queue} already exists with other arguments than {wanted} ({detail}), and \
     --queue-type (PP_QUEUE_TYPE) asks for exactly that; either leave --queue-type unset \
     to use the queue as it is, or migrate: stop the producers, let the consumers drain \
     it, delete it (rabbitmqctl delete_queue {queue}) and start again, or pick a new \
     --queue name"
)]
pub struct TopologyMismatch {
    pub queue: String,
    pub wanted: &'static str,
    pub detail: String,
}

/// The work queue's type (`--queue-type`): quorum is replicated on a cluster and has a
/// delivery limit; classic has neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueType {
    Classic,
    Quorum,
}

/// Names derived from the work queue's name.
#[derive(Debug, Clone)]
pub struct Topology {
    pub queue: String,
    pub dead_exchange: String,
    pub dead_queue: String,
    /// The type ppctl declares the work queue with.
    pub queue_type: QueueType,
    /// Whether a queue that already exists with other arguments is used as it is (no
    /// `--queue-type` given) rather than refused.
    pub use_existing: bool,
    /// What such a queue was found to be, once it was used as it is.
    pub existing: Arc<OnceLock<Existing>>,
}

impl Topology {
    /// The default type: quorum, replicated and with a delivery limit.
    pub fn new(queue: &str) -> Self {
        Self::with_type(queue, QueueType::Quorum)
    }

    /// Exactly this type: a queue that exists with other arguments is refused.
    pub fn with_type(queue: &str, queue_type: QueueType) -> Self {
        Self {
            queue: queue.to_string(),
            dead_exchange: format!("{queue}.dlx"),
            dead_queue: format!("{queue}.dead"),
            queue_type,
            use_existing: false,
            existing: Arc::default(),
        }
    }

    /// As `--queue-type` chose: that type exactly, or (unset) a quorum queue when ppctl
    /// creates it, and the queue as it is when it already exists.
    pub fn chosen(queue: &str, queue_type: Option<QueueType>) -> Self {
        Self {
            use_existing: queue_type.is_none(),
            ..Self::with_type(queue, queue_type.unwrap_or(QueueType::Quorum))
        }
    }

    /// The work queue's arguments: dead-lettering always; for a quorum queue, its
    /// type, the delivery limit and at-least-once dead-lettering (which RabbitMQ
    /// allows only with reject-publish overflow), so a dead letter is never dropped.
    pub fn queue_arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        let text = |s: &str| AMQPValue::LongString(s.into());
        args.insert("x-dead-letter-exchange".into(), text(&self.dead_exchange));
        args.insert("x-dead-letter-routing-key".into(), text(&self.queue));
        if self.queue_type == QueueType::Quorum {
            args.insert("x-queue-type".into(), text("quorum"));
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(QUORUM_DELIVERY_LIMIT),
            );
            args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
            args.insert("x-overflow".into(), text("reject-publish"));
        }
        args
    }

    /// Declares everything (idempotent). Returns the work queue's message count. A
    /// queue that exists with other arguments is a `TopologyMismatch` in the chain.
    pub async fn declare(&self, channel: &Channel) -> anyhow::Result<u32> {
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .exchange_declare(
                self.dead_exchange.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                self.dead_queue.as_str().into(),
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                self.dead_queue.as_str().into(),
                self.dead_exchange.as_str().into(),
                self.queue.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let declared = channel
            .queue_declare(self.queue.as_str().into(), durable, self.queue_arguments())
            .await;
        match declared {
            Ok(queue) => Ok(queue.message_count()),
            Err(e) => Err(self.mismatch(&e).map_or_else(|| e.into(), Into::into)),
        }
    }

    /// The queues, ready on a channel of `connection`. After a first full declare,
    /// `declared_before` makes a reconnect only check that the work queue, the
    /// dead-letter exchange and the dead-letter queue are there (passive declares,
    /// answered by the node itself): a full declare is a broker-wide write that waits
    /// on every cluster member, so with one node frozen it would hold a reconnecting
    /// client for as long as the freeze. Anything gone (an operator deleted it) is
    /// declared in full again, so dead letters are never returned or dropped for want
    /// of their exchange.
    pub async fn ensure(
        &self,
        connection: &Connection,
        channel: Channel,
        declared_before: bool,
    ) -> anyhow::Result<Channel> {
        if declared_before && self.all_there(&channel).await {
            return Ok(channel);
        }
        // A failed passive declare closed that channel: a new one either way is fine.
        let channel = if declared_before {
            connection.create_channel().await?
        } else {
            channel
        };
        match self.declare(&channel).await {
            Ok(_) => Ok(channel),
            Err(e) if self.use_existing && e.is::<TopologyMismatch>() => {
                let (channel, found) = existing::find(connection, &self.queue).await?;
                if self.existing.set(found).is_ok() {
                    let (queue, dlx) = (&self.queue, &self.dead_exchange);
                    let line = existing::lacks(queue, dlx, QUORUM_DELIVERY_LIMIT, found, &e);
                    tracing::warn!("{line}");
                }
                Ok(channel)
            }
            Err(e) => Err(e.context("cannot declare the queues")),
        }
    }

    /// Whether the work queue, the dead-letter exchange and queue all exist. A failed
    /// passive declare closes the channel: the caller then declares on a new one.
    async fn all_there(&self, channel: &Channel) -> bool {
        let passive = QueueDeclareOptions {
            passive: true,
            durable: true,
            ..QueueDeclareOptions::default()
        };
        for queue in [&self.queue, &self.dead_queue] {
            let found = channel
                .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                .await;
            if found.is_err() {
                return false;
            }
        }
        let exchange = ExchangeDeclareOptions {
            passive: true,
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                self.dead_exchange.as_str().into(),
                ExchangeKind::Direct,
                exchange,
                FieldTable::default(),
            )
            .await
            .is_ok()
    }

    fn mismatch(&self, e: &lapin::Error) -> Option<TopologyMismatch> {
        let lapin::ErrorKind::ProtocolError(amqp) = e.kind() else {
            return None;
        };
        let message = amqp.get_message().as_str();
        let wanted = match self.queue_type {
            QueueType::Quorum => "a quorum queue",
            QueueType::Classic => "a classic queue",
        };
        (amqp.get_id() == 406 && message.contains("inequivalent arg")).then(|| TopologyMismatch {
            queue: self.queue.clone(),
            wanted,
            detail: message.to_string(),
        })
    }

    /// Messages waiting in the dead-letter queue (passive declare: creates nothing).
    pub async fn dead_count(&self, channel: &Channel) -> lapin::Result<u32> {
        let passive = QueueDeclareOptions {
            passive: true,
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare(
                self.dead_queue.as_str().into(),
                passive,
                FieldTable::default(),
            )
            .await?;
        Ok(queue.message_count())
    }
}
