//! The webhook deliverer's series (`consume --webhook-url`), registered by the
//! processes that deliver (`Group::Webhooks`).

use super::{Group, TELEMETRY};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::LazyLock;

/// Seconds from the status change to the 2xx: a second when all is well, up to the
/// retry period when the receiver was away.
const DELIVERY_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0, 300.0, 3600.0, 86400.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

pub struct WebhookSeries {
    /// Attempts by outcome: delivered, retried (to be tried again), failed (given up).
    pub outcomes: Family<OutcomeLabel, Counter>,
    pub attempts: Counter,
    pub latency: Histogram,
    /// Pending deliveries, as last counted.
    pub depth: Gauge,
}

pub static WEBHOOKS: LazyLock<WebhookSeries> = LazyLock::new(|| WebhookSeries {
    outcomes: Family::default(),
    attempts: Counter::default(),
    latency: Histogram::new(DELIVERY_BUCKETS),
    depth: Gauge::default(),
});

impl WebhookSeries {
    pub fn outcome(&self, outcome: &'static str) {
        self.outcomes.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}

/// Registers the series once per process (the first deliverer to start).
pub fn register() {
    TELEMETRY.register(Group::Webhooks);
}

pub(super) fn register_series(registry: &mut Registry) {
    let w = &*WEBHOOKS;
    for outcome in ["delivered", "retried", "failed"] {
        let _ = w.outcomes.get_or_create(&OutcomeLabel { outcome }); // zeros reported
    }
    registry.register(
        "ppctl_webhook_deliveries",
        "webhook attempts by outcome: delivered (2xx), retried (to be tried again), failed (no 2xx within the retry period)",
        w.outcomes.clone(),
    );
    registry.register(
        "ppctl_webhook_attempts",
        "webhook POSTs sent (every attempt)",
        w.attempts.clone(),
    );
    registry.register(
        "ppctl_webhook_delivery_seconds",
        "time from a work's status change to its webhook's 2xx",
        w.latency.clone(),
    );
    registry.register(
        "ppctl_webhook_outbox_depth",
        "webhook deliveries pending in the outbox, counted every 5 s by each deliverer",
        w.depth.clone(),
    );
}
