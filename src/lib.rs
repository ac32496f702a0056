//! ppctl: a work pipeline in one binary.
//!
//! Layout:
//! - `cli`: every clap type; `commands`: one module per subcommand, dispatched once.
//! - `config`: connection settings (`config::ssl`: libpq's TLS parameters of a PostgreSQL
//!   URL); `redact`: passwords out of connection strings.
//! - `model`: Work, Event, WorkDemand and their JSON shapes; `demand`: the one parser of
//!   a demand, over HTTP and AMQP; `engine`: the sum itself;
//!   `query`: the search filter shared by HTTP, CLI and storage.
//! - `storage`: the PostgreSQL pool, migrations, queries, claims (leases), LISTEN;
//!   `storage::tls` owns the one TLS connector every connection uses (`PgTarget`).
//! - `amqp`: RabbitMQ topology, publishing with confirms, dead letters with their
//!   reasons (`dead_letter`) and the operator's list/replay/purge (`dead`).
//! - `worker`: the consumer's two workers. Queue batches go through three steps
//!   (`queue::prepare`, `store`, `queue::acknowledge`) that the consume loop overlaps
//!   across two batches; the sweeper is a one-step function (`sweep_once`, which the
//!   tests call) plus a thin loop; `retention` is the pruner; `registry` the heartbeat
//!   in the workers table; `pipeline` the pause switch both loops watch.
//! - `webhook`: Standard Webhooks signing, the receiver's URL, one attempt; the outbox's
//!   queries are `storage::webhooks`, the deliverer `worker::webhooks`.
//! - `tls`: the accept-any certificate verifier both links share;
//! - `http`: the actix-web API; `rawhttp`: a hand-written HTTP/1.1 client.
//! - `shutdown`, `backoff`: graceful stop and reconnect pacing, used by every loop;
//!   `telemetry`: the counters behind every `/metrics`, the OpenTelemetry traces and
//!   the log format.
//!
//! `cli` depends on everything and nothing depends on `cli`: a type lives where its
//! concept does (`amqp::QueueType`, `worker::AckAfter`), and `cli` takes it from there.

pub mod amqp;
pub mod backoff;
pub mod cli;
pub mod commands;
pub mod config;
pub mod demand;
pub mod engine;
pub mod http;
pub mod model;
pub mod query;
pub mod rawhttp;
pub mod redact;
pub mod run_at;
pub mod schedule;
pub mod shutdown;
pub mod storage;
pub mod telemetry;
pub mod tls;
pub mod webhook;
pub mod worker;

/// `0.1.0 (git 1a2b3c4d5e6f)`: the crate version and the revision it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("PPCTL_GIT_REV"),
    ")"
);
