//! `consume`'s options (flattened into `consume` and `up`), and the parser for durations
//! where zero has no useful meaning.

use crate::config::parse_duration;
use clap::{Args, ValueEnum};
use std::time::Duration;

#[derive(Clone, Args)]
pub struct WorkerOpts {
    /// Deliveries the broker may send before they are acknowledged.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub prefetch: u16,
    /// How long each computation takes, to simulate expensive work (e.g. 100ms).
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    pub work_delay: Duration,
    /// Poll for pending API works this often (a NOTIFY also wakes the sweeper).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub sweep_every: Duration,
    /// Sweep pending works changed (created, retried, last claimed) within this window;
    /// older ones become `expired`.
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    pub sweep_window: Duration,
    /// How long a claimed work stays leased to this worker before others may retry it.
    /// The sweeper adds its batch's simulated work (--work-delay × the batch size,
    /// at most about max(1s, --work-delay)), so a slow batch does not lose its lease.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub lease: Duration,
    /// Claims of one work before it is marked failed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub max_attempts: i32,
    /// Keep finished works this long, then prune them (one consumer at a time does it,
    /// hourly); 0 keeps everything. Redelivered demands are deduplicated within it.
    #[arg(long, env = "PP_RETAIN", default_value = "30d", value_parser = parse_duration)]
    pub retain: Duration,
    /// When a batch is acknowledged to RabbitMQ: once committed on the primary
    /// (`commit`), or once a streaming standby has also flushed that commit (`standby`:
    /// nothing acknowledged is lost when the primary is lost, even with asynchronous
    /// replication; with no standby connected, acks stall and say so).
    #[arg(long, env = "PP_ACK_AFTER", value_enum, default_value_t = AckAfter::Commit)]
    pub ack_after: AckAfter,
}

/// See `WorkerOpts::ack_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AckAfter {
    Commit,
    Standby,
}

/// A duration that must not be zero: a zero interval or window has no useful meaning.
pub fn parse_nonzero_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be more than 0".into()),
        d => Ok(d),
    }
}
