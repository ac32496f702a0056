//! RabbitMQ: connecting, the queue topology, publishing with confirms. Reconnection is
//! the caller's loop: on any channel or connection error, drop everything, back off,
//! connect again and redeclare (lapin's own auto-recovery is not relied on).

pub mod publish;
pub mod topology;

use crate::config::redact_url;
use anyhow::Context;
use lapin::{Channel, Connection, ConnectionProperties};

pub use topology::Topology;

/// Opens a connection and one channel on it.
pub async fn connect(amqp_url: &str, name: &str) -> anyhow::Result<(Connection, Channel)> {
    let props = ConnectionProperties::default().with_connection_name(name.to_string().into());
    let connection = Connection::connect(amqp_url, props)
        .await
        .with_context(|| format!("cannot connect to RabbitMQ at {}", redact_url(amqp_url)))?;
    let channel = connection
        .create_channel()
        .await
        .context("cannot open an AMQP channel")?;
    Ok((connection, channel))
}
