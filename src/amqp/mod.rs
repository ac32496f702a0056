//! RabbitMQ: connecting to one node of a list, the queue topology, a consumer's
//! session, publishing with confirms, dead letters (the consumer's reasons in
//! `dead_letter`; reading, replaying and purging them in `dead`, `dead_reader`,
//! `dead_unreadable`). Reconnection is the caller's loop: on any channel or connection
//! error, drop everything, back off, connect again (to the next node) and redeclare
//! (lapin's own auto-recovery is not relied on). `amqps://` nodes carry their own TLS
//! (`tls`: the RabbitMQ URI spec's parameters, read once at start).

pub mod dead;
pub mod dead_letter;
pub mod dead_props;
mod dead_reader;
pub mod dead_unreadable;
pub mod depth;
pub mod existing;
mod nodes;
pub mod publish;
mod rescue;
pub mod session;
pub mod tls;
#[cfg(test)]
mod tls_tests;
mod tls_verify;
pub mod topology;

use lapin::{Channel, Connection};

pub use nodes::Nodes;
pub use topology::{QueueType, Topology, TopologyMismatch};

/// Opens a connection to the first node of `amqp_urls` that answers, and one channel.
pub async fn connect(amqp_urls: &str, name: &str) -> anyhow::Result<(Connection, Channel)> {
    Nodes::parse(amqp_urls)?.connect(name).await
}

/// Marks a connection that died on a frame lapin could not parse (a message whose
/// properties break the AMQP rules, a non-UTF-8 message_id): the same message will come
/// back. Known from the connection's events (`session::died_on_unparseable_frame`).
#[derive(Debug, thiserror::Error)]
#[error("a delivery the AMQP client cannot parse closed the connection")]
pub struct UnparseableFrame;

/// True when `error` is marked `UnparseableFrame`, or is lapin's parse failure itself.
pub fn is_unparseable_frame(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<UnparseableFrame>()
            || cause
                .downcast_ref::<lapin::Error>()
                .is_some_and(|e| matches!(e.kind(), lapin::ErrorKind::ParsingError(_)))
    })
}

/// What happens to a message lapin cannot parse, in one line for the operator.
pub fn unreadable_line(topology: &Topology) -> String {
    let fate = match (topology.existing.get(), topology.queue_type) {
        (Some(_), _) => format!(
            "{} was declared by someone else and ppctl cannot tell its delivery limit: \
             without one (a classic queue, or no delivery-limit policy), it comes back \
             forever until removed by hand",
            topology.queue
        ),
        (None, QueueType::Quorum) => format!(
            "consuming one at a time until the broker's delivery limit ({}) moves it to {}, \
             where `ppctl dead purge --unreadable --yes` removes it",
            topology::QUORUM_DELIVERY_LIMIT,
            topology.dead_queue
        ),
        (None, QueueType::Classic) => format!(
            "a classic queue has no delivery limit: it comes back forever until removed \
             from {} by hand",
            topology.queue
        ),
    };
    format!(
        "an unreadable message (AMQP properties the client cannot parse, e.g. a non-UTF-8 \
         message id) closed the connection: {fate}"
    )
}
