//! The queue, its dead-letter exchange and dead-letter queue. Producer and consumer
//! both declare all three, so either may start first.

use crate::cli::QueueType;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

/// A quorum queue dead-letters a message after this many redeliveries: one that crashes
/// every consumer that takes it must not loop forever.
pub const QUORUM_DELIVERY_LIMIT: i64 = 10;

/// Names derived from the work queue's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub queue: String,
    pub dead_exchange: String,
    pub dead_queue: String,
    pub queue_type: QueueType,
}

impl Topology {
    pub fn new(queue: &str) -> Self {
        Self::with_type(queue, QueueType::Classic)
    }

    pub fn with_type(queue: &str, queue_type: QueueType) -> Self {
        Self {
            queue: queue.to_string(),
            dead_exchange: format!("{queue}.dlx"),
            dead_queue: format!("{queue}.dead"),
            queue_type,
        }
    }

    /// Declares everything (idempotent). Returns the work queue's message count.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<u32> {
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
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.dead_exchange.as_str().into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(self.queue.as_str().into()),
        );
        let queue = channel
            .queue_declare(self.queue.as_str().into(), durable, args)
            .await?;
        Ok(queue.message_count())
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

/// Samples the depth of the work queue and its dead-letter queue every few seconds on
/// a channel of its own, into the process's telemetry, until the connection closes.
pub async fn start_depth_monitor(
    connection: &lapin::Connection,
    topology: Topology,
) -> lapin::Result<()> {
    let channel = connection.create_channel().await?;
    tokio::spawn(async move {
        let passive = QueueDeclareOptions {
            passive: true,
            durable: true,
            ..QueueDeclareOptions::default()
        };
        loop {
            let mut depths = [0i64; 2];
            for (depth, queue) in depths
                .iter_mut()
                .zip([&topology.queue, &topology.dead_queue])
            {
                match channel
                    .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                    .await
                {
                    Ok(q) => *depth = i64::from(q.message_count()),
                    Err(_) => return, // the connection is gone; the next one starts a new monitor
                }
            }
            let t = &crate::telemetry::TELEMETRY;
            t.queue_depth
                .store(depths[0], std::sync::atomic::Ordering::Relaxed);
            t.dead_depth
                .store(depths[1], std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        }
    });
    Ok(())
}
