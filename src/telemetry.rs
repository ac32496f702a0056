//! Process-wide counters of the pipeline's work, rendered in Prometheus text format by
//! `serve`'s `/metrics` and by `consume`/`produce --metrics-addr`. Plain atomics in a
//! static: every worker increments them without locks or plumbing.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Upper bounds of the consumer's batch size histogram.
const BATCH_BUCKETS: [u64; 8] = [1, 5, 10, 25, 50, 100, 150, 300];

pub struct Telemetry {
    pub works_stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub swept: AtomicU64,
    pub failed: AtomicU64,
    pub expired: AtomicU64,
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub returned: AtomicU64,
    pub reconnects: AtomicU64,
    /// Messages ready in the work queue and in its dead-letter queue, as last seen by
    /// this process (-1: not known).
    pub queue_depth: AtomicI64,
    pub dead_depth: AtomicI64,
    /// Batch stores running in this process's tasks (a reconnect must not leak them).
    pub store_tasks: AtomicI64,
    batch_buckets: [AtomicU64; BATCH_BUCKETS.len()],
    batch_count: AtomicU64,
    batch_sum: AtomicU64,
}

pub static TELEMETRY: Telemetry = Telemetry::new();

impl Telemetry {
    const fn new() -> Self {
        Self {
            works_stored: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            swept: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            published: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            nacked: AtomicU64::new(0),
            returned: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            queue_depth: AtomicI64::new(-1),
            dead_depth: AtomicI64::new(-1),
            store_tasks: AtomicI64::new(0),
            batch_buckets: [const { AtomicU64::new(0) }; BATCH_BUCKETS.len()],
            batch_count: AtomicU64::new(0),
            batch_sum: AtomicU64::new(0),
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn observe_batch(&self, size: usize) {
        let size = size as u64;
        self.batch_count.fetch_add(1, Relaxed);
        self.batch_sum.fetch_add(size, Relaxed);
        for (bucket, bound) in self.batch_buckets.iter().zip(BATCH_BUCKETS) {
            if size <= bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
    }

    /// Appends every series in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let counters = [
            (
                "ppctl_works_stored_total",
                "queued demands stored as done works",
                &self.works_stored,
            ),
            (
                "ppctl_duplicate_deliveries_total",
                "redelivered demands acked without a second work",
                &self.duplicates,
            ),
            (
                "ppctl_dead_lettered_total",
                "demands rejected to the dead-letter queue",
                &self.dead_lettered,
            ),
            (
                "ppctl_works_swept_total",
                "API works computed by the sweeper",
                &self.swept,
            ),
            (
                "ppctl_works_failed_total",
                "works failed after their last attempt",
                &self.failed,
            ),
            (
                "ppctl_works_expired_total",
                "API works expired: not finished within the sweep window",
                &self.expired,
            ),
            (
                "ppctl_published_total",
                "demands published",
                &self.published,
            ),
            (
                "ppctl_confirmed_total",
                "demands confirmed by the broker",
                &self.confirmed,
            ),
            (
                "ppctl_nacked_total",
                "publishes refused by the broker",
                &self.nacked,
            ),
            (
                "ppctl_returned_total",
                "publishes returned unroutable (mandatory), published again",
                &self.returned,
            ),
            (
                "ppctl_reconnects_total",
                "reconnections to RabbitMQ",
                &self.reconnects,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Relaxed)
            );
        }
        for (name, value) in [
            ("ppctl_queue_depth", &self.queue_depth),
            ("ppctl_dead_letter_depth", &self.dead_depth),
            ("ppctl_store_tasks", &self.store_tasks),
        ] {
            let v = value.load(Relaxed);
            if v >= 0 {
                let _ = writeln!(out, "# TYPE {name} gauge\n{name} {v}");
            }
        }
        let _ = writeln!(out, "# TYPE ppctl_batch_size histogram");
        for (bucket, bound) in self.batch_buckets.iter().zip(BATCH_BUCKETS) {
            let _ = writeln!(
                out,
                "ppctl_batch_size_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = self.batch_count.load(Relaxed);
        let _ = writeln!(out, "ppctl_batch_size_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "ppctl_batch_size_sum {}\nppctl_batch_size_count {count}",
            self.batch_sum.load(Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let t = Telemetry::new();
        Telemetry::add(&t.works_stored, 3);
        t.observe_batch(7);
        t.observe_batch(200);
        let mut out = String::new();
        t.render(&mut out);
        assert!(out.contains("ppctl_works_stored_total 3\n"), "{out}");
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
        assert!(out.contains("ppctl_batch_size_sum 207\n"), "{out}");
        assert!(
            !out.contains("ppctl_queue_depth"),
            "unknown gauges are not reported: {out}"
        );
    }
}
