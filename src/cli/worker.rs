//! `consume`'s options (flattened into `consume` and `up`), and the parsers for durations
//! where zero would be harmful. One rule for zero across ppctl: `0` is a length of zero,
//! never "off" or "forever"; where that length would destroy data or break leases it is
//! refused (`db prune --older-than 0` asks for `--yes` instead), and keeping everything is
//! spelled `--retain forever`.

use crate::config::parse_duration;
use crate::worker::AckAfter;
use clap::Args;
use std::time::Duration;

#[derive(Clone, Args)]
pub struct WorkerOpts {
    /// Deliveries the broker may send before they are acknowledged (1..=10000); a
    /// third of it is the largest batch. Default 300, or 1000 with --ack-after standby,
    /// whose acknowledgements also wait for the standby's flush.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub prefetch: Option<u16>,
    /// How long each computation takes, to simulate expensive work (e.g. 100ms).
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    pub work_delay: Duration,
    /// Poll for pending API works this often (a NOTIFY also wakes the sweeper); works
    /// out of attempts or out of the window are marked at most this late.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub sweep_every: Duration,
    /// Sweep pending works changed (created, retried, last claimed) within this window;
    /// older ones become `expired`. 0 is refused: it would expire every API work.
    #[arg(long, default_value = "6h", value_parser = parse_sweep_window)]
    pub sweep_window: Duration,
    /// How long a claimed work stays leased to this worker before others may retry it.
    /// The sweeper adds its batch's simulated work (--work-delay × the batch size,
    /// at most about max(1s, --work-delay)), so a slow batch does not lose its lease.
    /// At least 1s: a shorter one lets sweepers take each other's works.
    #[arg(long, default_value = "30s", value_parser = parse_lease)]
    pub lease: Duration,
    /// Claims of one work before it is marked failed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub max_attempts: i32,
    /// Keep finished works this long, counted from when they finished, then prune them
    /// (one consumer at a time does it, hourly, or every half of --retain when that is
    /// shorter); `forever` keeps everything; 0 is refused. Redelivered demands are
    /// deduplicated within it.
    #[arg(long, env = "PP_RETAIN", default_value = "30d", value_parser = parse_retain)]
    pub retain: Retain,
    /// When a batch is acknowledged to RabbitMQ: once committed on the primary
    /// (`commit`), or once a streaming physical standby has also flushed that commit
    /// (`standby`: nothing acknowledged is lost when the primary is lost, even with
    /// asynchronous replication; with no standby connected, acks stall and say so; a
    /// database role that cannot read the standbys' positions, without pg_monitor, is
    /// refused at start with exit 2).
    #[arg(long, env = "PP_ACK_AFTER", value_enum, default_value_t = AckAfter::Commit)]
    pub ack_after: AckAfter,
    /// Dead-letter a demand that carries no AMQP message_id, instead of storing it
    /// under a made-up key (a redelivered one may then be done twice). PP_REQUIRE_MESSAGE_ID
    /// takes 1/0, true/false, yes/no or on/off.
    #[arg(long, env = "PP_REQUIRE_MESSAGE_ID", value_parser = clap::builder::BoolishValueParser::new())]
    pub require_message_id: bool,
    #[command(flatten)]
    pub webhook: super::WebhookOpts,
}

impl WorkerOpts {
    /// `--prefetch`, or its default for `--ack-after`: deliveries in hand must cover the
    /// batches waiting for the standby too, or the broker stops sending while they wait.
    pub fn prefetch(&self) -> u16 {
        self.prefetch.unwrap_or(match self.ack_after {
            AckAfter::Commit => 300,
            AckAfter::Standby => 1000,
        })
    }
}

/// How long finished works are kept (`--retain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retain {
    Forever,
    For(Duration),
}

impl Retain {
    /// The age past which finished works are pruned; `None`: never.
    pub fn duration(self) -> Option<Duration> {
        match self {
            Retain::Forever => None,
            Retain::For(d) => Some(d),
        }
    }
}

/// A duration, refused with `why` when it is shorter than `min`.
fn at_least(s: &str, min: Duration, why: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d < min => Err(why.into()),
        d => Ok(d),
    }
}

/// An interval with no useful meaning at zero.
pub fn parse_nonzero_duration(s: &str) -> Result<Duration, String> {
    at_least(s, Duration::from_nanos(1), "must be more than 0")
}

fn parse_sweep_window(s: &str) -> Result<Duration, String> {
    let why = "0 would expire every pending API work at the first sweep";
    at_least(s, Duration::from_nanos(1), why)
}

fn parse_lease(s: &str) -> Result<Duration, String> {
    let why = "a lease under 1s lets sweepers take each other's works";
    at_least(s, Duration::from_secs(1), why)
}

fn parse_retain(s: &str) -> Result<Retain, String> {
    if s.trim().eq_ignore_ascii_case("forever") {
        return Ok(Retain::Forever);
    }
    let why = "0 would prune every finished work and the deduplication history; \
               `forever` keeps everything (a one-off: ppctl db prune --older-than 0 --yes)";
    at_least(s, Duration::from_nanos(1), why).map(Retain::For)
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn retain(value: &str) -> Result<super::Retain, clap::Error> {
        match Cli::try_parse_from(["ppctl", "consume", "--retain", value])?.command {
            Command::Consume(args) => Ok(args.worker.retain),
            _ => unreachable!("parsed as consume"),
        }
    }

    #[test]
    fn zero_is_refused_where_it_would_destroy_data_or_break_leases() {
        for args in [
            ["--retain", "0"],
            ["--sweep-window", "0"],
            ["--lease", "0"],
            ["--lease", "500ms"],
        ] {
            let parsed = Cli::try_parse_from(["ppctl", "consume", args[0], args[1]]);
            let error = parsed.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                error.contains("would") || error.contains("lets"),
                "{args:?}: {error}"
            );
        }
        assert_eq!(retain("forever").ok(), Some(super::Retain::Forever));
        let thirty_days = std::time::Duration::from_secs(30 * 86_400);
        assert_eq!(retain("30d").ok(), Some(super::Retain::For(thirty_days)));
    }
}
