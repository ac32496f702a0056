//! A consumer's connection to one node: the queues made sure of, the prefetch window
//! set, a depth monitor and a dead-letter channel beside the consuming channel.

use super::dead_letter::DeadLetterer;
use super::{depth, Nodes, Topology};
use crate::shutdown::AbortOnDrop;
use anyhow::Context;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use std::sync::atomic::{AtomicBool, Ordering};

/// One connection's consuming state; the monitor is aborted when it is dropped.
pub struct Session {
    pub connection: Connection,
    pub channel: Channel,
    /// Poison goes to the dead-letter exchange through this confirm-mode channel.
    pub dead: DeadLetterer,
    pub consumer: Consumer,
    pub monitor: AbortOnDrop<()>,
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
        })
    }
}
