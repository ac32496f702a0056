//! The process's metrics: one prometheus-client registry, rendered in Prometheus text
//! format by `serve`'s `/metrics` and by `consume`/`produce --metrics-addr`. A static,
//! so every worker updates its series without plumbing.
//!
//! Every process registers the pipeline's series at start, so a series at zero is
//! reported rather than missing. Series that only some processes can know (the API's
//! requests, the works table, a database pool, queue depths) are registered by the
//! processes that feed them, once, the first time they do.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

/// Prometheus' text format, as `/metrics` answers.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds of the consumer's batch size histogram.
const BATCH_BUCKETS: [f64; 8] = [1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 150.0, 300.0];
/// Upper bounds of the request latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    /// The route pattern, never the raw path: the label set stays bounded.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

type RequestFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

pub struct Telemetry {
    pub works_stored: Counter,
    pub duplicates: Counter,
    pub dead_lettered: Counter,
    pub swept: Counter,
    pub failed: Counter,
    pub expired: Counter,
    pub published: Counter,
    pub confirmed: Counter,
    pub nacked: Counter,
    pub returned: Counter,
    pub reconnects: Counter,
    /// Batch stores running in this process's tasks (a reconnect must not leak them).
    pub store_tasks: Gauge,
    pub batch_size: Histogram,
    /// Messages ready in the work queue and its dead-letter queue, as last seen.
    pub queue_depth: Gauge,
    pub dead_depth: Gauge,
    pub works_created: Counter,
    pub requests: RequestFamily,
    /// Works by status, from the database at each scrape.
    pub works: Family<StatusLabel, Gauge>,
    pub database_up: Gauge,
    pub pool_connections: Family<StateLabel, Gauge>,
    pub pool_waiting: Gauge,
    registry: Mutex<(Registry, HashSet<Group>)>,
}

/// The series that only some processes register.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Group {
    Api,
    Pool,
    Depths,
}

pub static TELEMETRY: LazyLock<Telemetry> = LazyLock::new(Telemetry::new);

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Telemetry {
    fn new() -> Self {
        let t = Self {
            works_stored: Counter::default(),
            duplicates: Counter::default(),
            dead_lettered: Counter::default(),
            swept: Counter::default(),
            failed: Counter::default(),
            expired: Counter::default(),
            published: Counter::default(),
            confirmed: Counter::default(),
            nacked: Counter::default(),
            returned: Counter::default(),
            reconnects: Counter::default(),
            store_tasks: Gauge::default(),
            batch_size: Histogram::new(BATCH_BUCKETS),
            queue_depth: Gauge::default(),
            dead_depth: Gauge::default(),
            works_created: Counter::default(),
            requests: Family::new_with_constructor(latency_histogram),
            works: Family::default(),
            database_up: Gauge::default(),
            pool_connections: Family::default(),
            pool_waiting: Gauge::default(),
            registry: Mutex::new((Registry::default(), HashSet::new())),
        };
        let pipeline: [(&str, &str, &Counter); 11] = [
            (
                "ppctl_works_stored",
                "queued demands stored as done works",
                &t.works_stored,
            ),
            (
                "ppctl_duplicate_deliveries",
                "redelivered demands acked without a second work",
                &t.duplicates,
            ),
            (
                "ppctl_dead_lettered",
                "demands rejected to the dead-letter queue",
                &t.dead_lettered,
            ),
            (
                "ppctl_works_swept",
                "API works computed by the sweeper",
                &t.swept,
            ),
            (
                "ppctl_works_failed",
                "works failed after their last attempt",
                &t.failed,
            ),
            (
                "ppctl_works_expired",
                "API works expired: not finished within the sweep window",
                &t.expired,
            ),
            ("ppctl_published", "demands published", &t.published),
            (
                "ppctl_confirmed",
                "demands confirmed by the broker",
                &t.confirmed,
            ),
            ("ppctl_nacked", "publishes refused by the broker", &t.nacked),
            (
                "ppctl_returned",
                "publishes returned unroutable (mandatory), published again",
                &t.returned,
            ),
            (
                "ppctl_reconnects",
                "reconnections to RabbitMQ",
                &t.reconnects,
            ),
        ];
        if let Ok(mut guard) = t.registry.lock() {
            let registry = &mut guard.0;
            for (name, help, counter) in pipeline {
                registry.register(name, help, counter.clone());
            }
            registry.register(
                "ppctl_store_tasks",
                "batch stores running in this process",
                t.store_tasks.clone(),
            );
            registry.register(
                "ppctl_batch_size",
                "deliveries per consumer batch",
                t.batch_size.clone(),
            );
        }
        t
    }

    /// Registers a group's series, once per process.
    pub fn register(&self, group: Group) {
        let Ok(mut guard) = self.registry.lock() else {
            return;
        };
        let (registry, registered) = &mut *guard;
        if !registered.insert(group) {
            return;
        }
        match group {
            Group::Api => {
                registry.register(
                    "ppctl_works_created",
                    "works created through the API",
                    self.works_created.clone(),
                );
                registry.register(
                    "ppctl_http_request_duration_seconds",
                    "API request latency by method, route pattern and status",
                    self.requests.clone(),
                );
                registry.register("ppctl_works", "works in the database by status: pending and running counted, the finished ones from running totals (a gauge: it goes down after a prune)", self.works.clone());
                registry.register(
                    "ppctl_database_up",
                    "1 when the last scrape could count the works",
                    self.database_up.clone(),
                );
            }
            Group::Pool => {
                registry.register(
                    "ppctl_db_pool_connections",
                    "database pool connections (open, idle, max)",
                    self.pool_connections.clone(),
                );
                registry.register(
                    "ppctl_db_pool_waiting",
                    "tasks waiting for a pooled connection",
                    self.pool_waiting.clone(),
                );
            }
            Group::Depths => {
                registry.register(
                    "ppctl_queue_depth",
                    "messages ready in the work queue, sampled every 5 s",
                    self.queue_depth.clone(),
                );
                registry.register(
                    "ppctl_dead_letter_depth",
                    "messages in the dead-letter queue, sampled every 5 s",
                    self.dead_depth.clone(),
                );
            }
        }
    }

    pub fn observe_request(&self, method: &'static str, route: String, status: u16, secs: f64) {
        let labels = RequestLabels {
            method,
            route,
            status,
        };
        self.requests.get_or_create(&labels).observe(secs);
    }

    /// The dead-letter depth once known (the depth monitor registered it).
    pub fn dead_letters(&self) -> Option<u64> {
        let known = self.registry.lock().ok()?.1.contains(&Group::Depths);
        known
            .then(|| u64::try_from(self.dead_depth.get()).ok())
            .flatten()
    }

    /// Every registered series in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        if let Ok(guard) = self.registry.lock() {
            // Writing to a String cannot fail.
            let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &guard.0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_and_zero_series_and_a_cumulative_histogram() {
        let t = Telemetry::new();
        t.works_stored.inc_by(3);
        t.batch_size.observe(7.0);
        t.batch_size.observe(200.0);
        let out = t.render();
        assert!(out.contains("# HELP ppctl_works_stored_total queued demands stored as done works.\n# TYPE ppctl_works_stored_total counter\nppctl_works_stored_total 3\n"), "{out}");
        assert!(
            out.contains("ppctl_nacked_total 0\n"),
            "a zero counter is kept: {out}"
        );
        assert!(
            out.contains("ppctl_batch_size_bucket{le=\"5\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("ppctl_batch_size_bucket{le=\"10\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("ppctl_batch_size_bucket{le=\"300\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("ppctl_batch_size_sum 207.0\n"), "{out}");
        assert!(
            !out.contains("ppctl_queue_depth"),
            "depths appear once watched: {out}"
        );
        assert_eq!(t.dead_letters(), None);
        t.register(Group::Depths);
        t.register(Group::Depths);
        let out = t.render();
        assert_eq!(
            out.matches("# TYPE ppctl_queue_depth gauge").count(),
            1,
            "{out}"
        );
        assert_eq!(t.dead_letters(), Some(0));
    }
}
