//! How deep the work queue and its dead-letter queue are, sampled into the process's
//! telemetry: by `consume` on its own connection, and by `serve` (for the dashboard's
//! dead-letter card) on a connection that only ever looks.

use super::{Nodes, Topology};
use crate::backoff::{Backoff, Warnings};
use crate::shutdown::{AbortOnDrop, Shutdown};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

/// Samples the depth of the work queue and its dead-letter queue every few seconds on
/// `channel` (one of its own), into the process's telemetry, until the connection
/// closes or the returned guard is dropped (its channel would otherwise keep a
/// connection the consumer has given up on open).
pub fn start_depth_monitor(channel: lapin::Channel, topology: Topology) -> AbortOnDrop<()> {
    let task = tokio::spawn(async move {
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
            t.queue_depth.set(depths[0]);
            t.dead_depth.set(depths[1]);
            t.register(crate::telemetry::Group::Depths);
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        }
    });
    AbortOnDrop(task)
}

/// Keeps a depth monitor running on some node until shutdown, reconnecting with
/// backoff; while the broker is out of reach the depths stay at their last value.
pub async fn watch(nodes: Nodes, topology: Topology, shutdown: Shutdown) {
    let mut backoff = Backoff::default();
    let mut warnings = Warnings::new(WARN_EVERY);
    while !shutdown.is_triggered() {
        let name = format!("ppctl-serve {}", topology.queue);
        match nodes.connect(&name).await {
            Ok(opened) => {
                warnings.reset();
                watch_until_lost(opened, &topology, &shutdown, &mut backoff).await;
            }
            Err(e) => {
                if let Some(unsaid) = warnings.failed() {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        failed_since_last_line = unsaid,
                        "cannot reach RabbitMQ for the queue depths; retrying"
                    );
                }
            }
        }
        nodes.lost();
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.wait() => {}
        }
    }
}

/// How often at most the watcher repeats why it cannot connect.
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

async fn watch_until_lost(
    (connection, channel): (lapin::Connection, lapin::Channel),
    topology: &Topology,
    shutdown: &Shutdown,
    backoff: &mut Backoff,
) {
    let started = std::time::Instant::now();
    tokio::select! {
        _ = monitor_ended(start_depth_monitor(channel, topology.clone())) => {}
        _ = shutdown.wait() => {}
    }
    let _ = connection.close(200, "bye".into()).await;
    // A monitor that ends at once (no queue declared yet) must not reconnect
    // at full speed: only one that ran a while earns a fresh backoff.
    if started.elapsed() > std::time::Duration::from_secs(30) {
        backoff.reset();
    }
}

async fn monitor_ended(mut monitor: AbortOnDrop<()>) {
    let _ = (&mut monitor.0).await;
}
