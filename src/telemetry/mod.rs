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

pub mod context;
mod export_queue;
pub mod logs;
mod otlp_client;
pub mod sampling;
mod series;
pub mod spans;
pub mod traces;
pub mod webhooks;

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
pub struct ReasonLabel {
    pub reason: &'static str,
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
    /// Registered workers by shown state, and the pause switch, from the database at
    /// each scrape.
    pub workers: Family<StateLabel, Gauge>,
    pub pipeline_paused: Gauge,
    pub pool_connections: Family<StateLabel, Gauge>,
    pub pool_waiting: Gauge,
    /// Connections that met a server no longer taking writes, or broke (storage::role).
    pub db_role_losses: Counter,
    /// Redeliveries whose body differs from the stored work's (same message_id).
    pub changed_redeliveries: Counter,
    /// Queued demands with no message_id (stored under a made-up key, or refused), and
    /// those of them the broker redelivered (stored, marked as possible repeats).
    pub demands_without_id: Counter,
    pub possible_repeats: Counter,
    /// `--ack-after standby`: how long batches waited, and whether one is waiting now
    /// past the log interval.
    pub standby_wait: Histogram,
    pub standby_stalled: Gauge,
    /// `serve --database-read-url`: the replica's pool, whether reads go to it, its lag.
    pub replica_connections: Family<StateLabel, Gauge>,
    pub replica_in_use: Gauge,
    pub replica_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Tracing (when on): spans handed to the collector, and spans dropped instead
    /// (queue full, export failed): tracing loses spans, never work.
    pub spans_exported: Counter,
    pub spans_dropped: Family<ReasonLabel, Counter>,
    /// Works made to run later: now - run_at when a sweeper claimed them.
    pub schedule_lateness: Histogram,
    registry: Mutex<(Registry, HashSet<Group>)>,
}

/// The series that only some processes register.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Group {
    Api,
    Pool,
    Depths,
    Replica,
    Tracing,
    Webhooks,
}

pub static TELEMETRY: LazyLock<Telemetry> = LazyLock::new(Telemetry::new);

/// An OpenTelemetry variable's value, an empty one counting as unset (as the
/// specification says); the tracer and the sampler both read them.
pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Seconds past run_at; the sweep interval (1 s by default) bounds the usual case.
const LATENESS_BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0];

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
            workers: Family::default(),
            pipeline_paused: Gauge::default(),
            pool_connections: Family::default(),
            pool_waiting: Gauge::default(),
            db_role_losses: Counter::default(),
            changed_redeliveries: Counter::default(),
            demands_without_id: Counter::default(),
            possible_repeats: Counter::default(),
            standby_wait: latency_histogram(),
            standby_stalled: Gauge::default(),
            replica_connections: Family::default(),
            replica_in_use: Gauge::default(),
            replica_lag_seconds: Gauge::default(),
            spans_exported: Counter::default(),
            spans_dropped: Family::default(),
            schedule_lateness: Histogram::new(LATENESS_BUCKETS),
            registry: Mutex::new((Registry::default(), HashSet::new())),
        };
        if let Ok(mut guard) = t.registry.lock() {
            series::register_pipeline(&t, &mut guard.0);
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
        series::register_group(self, group, registry);
    }

    pub fn observe_request(&self, method: &'static str, route: String, status: u16, secs: f64) {
        let labels = RequestLabels {
            method,
            route,
            status,
        };
        self.requests.get_or_create(&labels).observe(secs);
    }

    pub fn spans_dropped(&self, reason: &'static str) -> Counter {
        self.spans_dropped
            .get_or_create(&ReasonLabel { reason })
            .clone()
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
mod tests;
