//! The series' names and HELP texts: those every process reports, and each group's.

use super::{Group, Telemetry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// The pipeline's series, registered by every process so that zeros are reported.
pub(super) fn register_pipeline(t: &Telemetry, registry: &mut Registry) {
    let pipeline: [(&str, &str, &Counter); 15] = [
        (
            "ppctl_db_role_losses",
            "database connections that met a server no longer taking writes (read-only, in recovery, shutting down) or broke; every older connection is then reopened",
            &t.db_role_losses,
        ),
        (
            "ppctl_changed_redeliveries",
            "demands redelivered with a stored message_id but another body (kept the stored work)",
            &t.changed_redeliveries,
        ),
        (
            "ppctl_demands_without_message_id",
            "queued demands with no message_id (a redelivery of one cannot be recognised)",
            &t.demands_without_id,
        ),
        (
            "ppctl_demands_possibly_repeated",
            "demands redelivered with no message_id, stored with a demand/possible-repeat event",
            &t.possible_repeats,
        ),
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
    for (name, help, counter) in pipeline {
        registry.register(name, help, counter.clone());
    }
    registry.register(
        "ppctl_store_tasks",
        "batch stores running in this process",
        t.store_tasks.clone(),
    );
    registry.register(
        "ppctl_standby_wait_seconds",
        "--ack-after standby: time a batch waited for a standby to flush its commit",
        t.standby_wait.clone(),
    );
    registry.register(
        "ppctl_standby_stalled",
        "--ack-after standby: 1 while a batch has waited over 10 s for a standby",
        t.standby_stalled.clone(),
    );
    registry.register(
        "ppctl_batch_size",
        "deliveries per consumer batch",
        t.batch_size.clone(),
    );
    registry.register(
        "ppctl_schedule_lateness_seconds",
        "works made to run later: seconds from run_at to a sweeper's claim",
        t.schedule_lateness.clone(),
    );
}

/// The series of a group that only some processes know.
pub(super) fn register_group(t: &Telemetry, group: Group, registry: &mut Registry) {
    match group {
        Group::Webhooks => super::webhooks::register_series(registry),
        Group::Api => {
            registry.register(
                "ppctl_works_created",
                "works created through the API",
                t.works_created.clone(),
            );
            registry.register(
                "ppctl_http_request_duration_seconds",
                "API request latency by method, route pattern and status",
                t.requests.clone(),
            );
            registry.register("ppctl_works", "works in the database by status: pending and running counted, the finished ones from running totals (a gauge: it goes down after a prune)", t.works.clone());
            registry.register(
                "ppctl_database_up",
                "1 when the last scrape could count the works",
                t.database_up.clone(),
            );
            registry.register(
                "ppctl_workers",
                "registered consume processes by state (running, paused, stopping; stopped and gone for a day after)",
                t.workers.clone(),
            );
            registry.register(
                "ppctl_pipeline_paused",
                "1 while the pipeline is paused (ppctl pipeline pause)",
                t.pipeline_paused.clone(),
            );
        }
        Group::Pool => {
            registry.register(
                "ppctl_db_pool_connections",
                "database pool connections (open, idle, max)",
                t.pool_connections.clone(),
            );
            registry.register(
                "ppctl_db_pool_waiting",
                "tasks waiting for a pooled connection",
                t.pool_waiting.clone(),
            );
        }
        Group::Tracing => {
            for reason in ["queue_full", "export_failed"] {
                let _ = t.spans_dropped(reason); // zeros are reported, not missing
            }
            registry.register(
                "ppctl_trace_spans_exported",
                "spans the trace collector accepted",
                t.spans_exported.clone(),
            );
            registry.register(
                "ppctl_trace_spans_dropped",
                "spans dropped instead of exported: the queue was full (collector slow or down), or the collector refused or did not answer",
                t.spans_dropped.clone(),
            );
        }
        Group::Replica => {
            registry.register(
                "ppctl_db_replica_pool_connections",
                "serve --database-read-url: the replica pool's connections (open, idle, max)",
                t.replica_connections.clone(),
            );
            registry.register(
                "ppctl_db_replica_in_use",
                "1 while read-only routes are served by the replica, 0 while they fall back to the primary",
                t.replica_in_use.clone(),
            );
            registry.register(
                "ppctl_db_replica_lag_seconds",
                "the replica's replay lag as last measured",
                t.replica_lag_seconds.clone(),
            );
        }
        Group::Depths => {
            registry.register(
                "ppctl_queue_depth",
                "messages ready in the work queue, sampled every 5 s",
                t.queue_depth.clone(),
            );
            registry.register(
                "ppctl_dead_letter_depth",
                "messages in the dead-letter queue, sampled every 5 s",
                t.dead_depth.clone(),
            );
        }
    }
}
