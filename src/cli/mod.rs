//! Every clap type: here the pipeline's subcommands (serve, produce, consume, up) and
//! the option groups they share, flattened into each; in `tools` the operators' ones
//! (work, raw-http, db, dead). Settings are flags with environment fallbacks.

use crate::config::{self, parse_duration, parse_queue_name};
use crate::telemetry::logs::LogFormat;
use clap::{Args, Parser, Subcommand};
use std::{net::SocketAddr, time::Duration};

mod operators;
pub mod schedule;
mod tools;
mod webhook;
mod worker;
pub use operators::*;
pub use tools::*;
pub use webhook::*;
pub use worker::*;

pub use crate::amqp::QueueType;
pub use crate::worker::AckAfter;
pub use crate::VERSION;

#[derive(Parser)]
#[command(
    name = "ppctl",
    version = VERSION,
    about = "A work pipeline: REST API, RabbitMQ in, PostgreSQL as the system of record"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines as text, or one JSON object per line (with the trace and span ids
    /// when tracing is on).
    #[arg(long, global = true, env = "PP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Command {
    /// The subcommand's name: `ppctl-<name>` is the default trace service name.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Serve(_) => "serve",
            Command::Produce(_) => "produce",
            Command::Consume(_) => "consume",
            Command::Work(_) => "work",
            Command::RawHttp(_) => "raw-http",
            Command::Db(_) => "db",
            Command::Dead(_) => "dead",
            Command::Schedule(_) => "schedule",
            Command::Up(_) => "up",
            Command::Workers(_) => "workers",
            Command::Pipeline(_) => "pipeline",
            Command::Webhook(_) => "webhook",
            Command::Completions { .. } => "completions",
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Publish random work demands to the queue on a schedule.
    Produce(ProduceArgs),
    /// Turn queued demands into works, and sweep pending API-created works.
    Consume(ConsumeArgs),
    /// Create, fetch and search works through the API or the database.
    Work(WorkArgs),
    /// Send a hand-written HTTP/1.1 request over TCP and print the raw response.
    RawHttp(RawHttpArgs),
    /// Create, migrate, inspect and reset the database.
    Db(DbArgs),
    /// Read, replay and purge the dead letters (`<queue>.dead`).
    Dead(DeadArgs),
    /// Add, list and remove periodic schedules (one work per slot, in the database).
    Schedule(schedule::ScheduleArgs),
    /// Development mode: db setup, then serve, consume and produce in one process.
    Up(UpArgs),
    /// List the consume processes: state, last heartbeat, the API works each leases.
    Workers(WorkersArgs),
    /// Pause, resume or show the pipeline (every consumer and sweeper).
    Pipeline(PipelineArgs),
    /// List and redeliver the webhook deliveries (the database's outbox).
    Webhook(WebhookArgs),
    /// Print a shell completion script: `ppctl completions bash > /etc/bash_completion.d/ppctl`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Clone, Args)]
pub struct DbOpts {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", default_value = config::DEFAULT_DATABASE_URL, hide_env_values = true, hide_default_value = true)]
    pub database_url: String,
    /// Maximum connections in the pool.
    #[arg(long, env = "PP_DB_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=512))]
    pub db_pool_size: u16,
}

#[derive(Clone, Args)]
pub struct AmqpOpts {
    /// RabbitMQ connection URL; several nodes of a cluster as a comma-separated list
    /// (the first that answers is used, the next when it is lost).
    #[arg(long, env = "AMQP_URL", default_value = config::DEFAULT_AMQP_URL, hide_env_values = true, hide_default_value = true)]
    pub amqp_url: String,
    /// The work queue; `<queue>.dead` is its dead-letter queue.
    #[arg(long, env = "PP_QUEUE", default_value = config::DEFAULT_QUEUE, value_parser = parse_queue_name)]
    pub queue: String,
    /// quorum (replicated on a cluster, with a delivery limit so a message that keeps
    /// crashing consumers is dead-lettered) or classic: the type ppctl declares the queue
    /// with, and refuses a queue that exists with other arguments. Unset: a new queue is
    /// quorum, and an existing one (e.g. declared by another producer) is used as it is,
    /// with a warning that says what it lacks.
    #[arg(long, env = "PP_QUEUE_TYPE", value_enum)]
    pub queue_type: Option<QueueType>,
}

#[derive(Clone, Args)]
pub struct ServeOpts {
    /// Address to listen on.
    #[arg(long = "addr", env = "PP_HTTP_ADDR", default_value = config::DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,
    /// When set, POST routes require `Authorization: Bearer <token>`.
    #[arg(long, env = "PP_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "PP_HTTP_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub http_workers: Option<u16>,
    /// Event streams (GET /works/stream, the dashboard's live updates) open at once;
    /// more get a 503 with Retry-After.
    #[arg(long, env = "PP_MAX_STREAMS", default_value_t = crate::http::live::DEFAULT_MAX_STREAMS,
        value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub max_streams: u16,
    /// A PostgreSQL URL (multi-host like DATABASE_URL) of a replica for the read-only
    /// routes: search, get, events, stats, the metrics counts. Reads fall back to the
    /// primary while the replica is unreachable or lags beyond --max-replica-lag.
    #[arg(long, env = "PP_DATABASE_READ_URL", hide_env_values = true)]
    pub database_read_url: Option<String>,
    /// The most replay lag the replica may have and still serve reads.
    #[arg(long, env = "PP_MAX_REPLICA_LAG", default_value = "5s", value_parser = parse_duration)]
    pub max_replica_lag: Duration,
    /// Log one line per request: method, path, status, duration and peer address.
    /// PP_ACCESS_LOG takes 1/0, true/false, yes/no or on/off.
    #[arg(long, env = "PP_ACCESS_LOG", value_parser = clap::builder::BoolishValueParser::new())]
    pub access_log: bool,
}

#[derive(Clone, Args)]
pub struct ProduceOpts {
    /// Pause between bursts, e.g. 5s or 200ms; 0 publishes as fast as confirms allow.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub every: Duration,
    /// Stop after this many confirmed demands.
    #[arg(long)]
    pub count: Option<u64>,
    /// Demands per tick.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub burst: u64,
    /// Without --count, how often a line with the rate and totals is logged. Hidden: it
    /// is there for tests (PP_REPORT_EVERY=1s), 30 s suits an operator.
    #[arg(long, env = "PP_REPORT_EVERY", default_value = "30s", value_parser = parse_nonzero_duration, hide = true)]
    pub report_every: Duration,
    /// With --count: how long the producer keeps trying when it has never connected
    /// before it exits 4. Hidden: it is there for tests; 60 s covers a broker that is
    /// still booting.
    #[arg(long, env = "PP_CONNECT_GIVE_UP", default_value = "60s", value_parser = parse_nonzero_duration, hide = true)]
    pub give_up_after: Duration,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbOpts,
    /// The dead-letter queue: its depth for the dashboard, and `/dead-letters` (list,
    /// replay to the work queue).
    #[command(flatten)]
    pub amqp: AmqpOpts,
    #[command(flatten)]
    pub serve: ServeOpts,
}

#[derive(Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub amqp: AmqpOpts,
    #[command(flatten)]
    pub produce: ProduceOpts,
    #[command(flatten)]
    pub metrics: MetricsOpts,
}

#[derive(Clone, Args)]
pub struct MetricsOpts {
    /// Serve Prometheus metrics on this address (GET /metrics), e.g. 127.0.0.1:9100.
    #[arg(long, env = "PP_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

#[derive(Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub db: DbOpts,
    #[command(flatten)]
    pub amqp: AmqpOpts,
    #[command(flatten)]
    pub worker: WorkerOpts,
    #[command(flatten)]
    pub metrics: MetricsOpts,
}

#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub db: DbOpts,
    #[command(flatten)]
    pub amqp: AmqpOpts,
    #[command(flatten)]
    pub serve: ServeOpts,
    #[command(flatten)]
    pub produce: ProduceOpts,
    #[command(flatten)]
    pub worker: WorkerOpts,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_arguments_are_refused() {
        for args in [
            &["ppctl", "produce", "--every", "soon"][..],
            &["ppctl", "consume", "--prefetch", "0"],
            &["ppctl", "work", "create", "--add-up-to", "4294967296"],
            &["ppctl", "work", "get", "abc"],
            &["ppctl", "serve", "--addr", "nowhere"],
            &["ppctl", "frobnicate"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
        let cli = Cli::try_parse_from(["ppctl", "work", "search", "--since", "6h", "--via", "db"])
            .expect("parses");
        assert!(matches!(
            cli.command,
            Command::Work(WorkArgs {
                control: ControlOpts { via: Via::Db, .. },
                ..
            })
        ));
    }
}
