//! The operators' subcommands: `work` (through the API or the database), `raw-http`,
//! `db` and `dead`.

use super::AmqpOpts;
use crate::config::{self, parse_duration};
use crate::query::{bulk::RawBulk, RawQuery};
use clap::{Args, Subcommand, ValueEnum};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    Http,
    Db,
}

#[derive(Args)]
pub struct WorkArgs {
    #[command(subcommand)]
    pub action: WorkAction,
    /// Where it talks to and how it prints, as `workers` and `pipeline` do.
    #[command(flatten)]
    pub control: super::ControlOpts,
    /// Read your writes: a write's consistency token (create, retry and cancel print
    /// theirs on stderr), sent with every call so that a replica that has not replayed
    /// that write does not answer; for --via http.
    #[arg(long, global = true, env = "PP_CONSISTENCY_TOKEN", value_parser = |s: &str| s.parse::<crate::storage::lsn::Lsn>())]
    pub consistency_token: Option<crate::storage::lsn::Lsn>,
}

#[derive(Subcommand)]
pub enum WorkAction {
    /// Create a work (random 1..=100 unless --add-up-to is given), to run now or later.
    Create {
        /// N to add up to (0..=4294967295); random 1..=100 when left out.
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=crate::engine::MAX_N))]
        add_up_to: Option<u64>,
        /// Run it at this time (RFC 3339: 2026-12-05T10:00:00Z); `scheduled` until then.
        #[arg(long, conflicts_with = "in_", value_parser = crate::run_at::parse_rfc3339)]
        at: Option<std::time::SystemTime>,
        /// Run it after this long (90s, 2h); `scheduled` until then.
        #[arg(long = "in", value_parser = crate::run_at::parse_delay)]
        in_: Option<Duration>,
    },
    /// Show one work.
    Get { id: i64 },
    /// Search works, newest first.
    Search(RawQuery),
    /// Show a work's events, oldest first.
    Events { id: i64 },
    /// Put a failed or expired work back to pending (operators); with filters instead
    /// of an id, every failed or expired work they match, up to --max.
    Retry {
        id: Option<i64>,
        #[command(flatten)]
        bulk: RawBulk,
    },
    /// Cancel a pending or scheduled work (operators); with filters instead of an id,
    /// every pending or scheduled work they match, up to --max.
    Cancel {
        id: Option<i64>,
        #[command(flatten)]
        bulk: RawBulk,
    },
    /// Follow a work until it is done (exit 0) or ends otherwise (exit 1), printing
    /// each change.
    Watch {
        id: i64,
        /// Give up (exit 1) after this long.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

#[derive(Args)]
pub struct RawHttpArgs {
    /// GET, POST, ...
    pub method: String,
    /// Request target, e.g. /works/21.
    pub path: String,
    /// Extra header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Request body.
    #[arg(long)]
    pub data: Option<String>,
    /// Server address.
    #[arg(long, env = "PP_RAW_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: String,
    /// Exit non-zero when the status is 400 or above (for health checks).
    #[arg(long)]
    pub fail: bool,
}

#[derive(Args)]
pub struct DbArgs {
    #[command(subcommand)]
    pub action: DbAction,
    /// PostgreSQL connection URL.
    #[arg(long, global = true, env = "DATABASE_URL", default_value = config::DEFAULT_DATABASE_URL, hide_env_values = true, hide_default_value = true)]
    pub database_url: String,
}

/// How long a migration may wait for its table locks (`db setup`, `db migrate`).
#[derive(Clone, Copy, Args)]
pub struct MigrateOpts {
    /// Each attempt waits at most this long for its locks, then gives way to the
    /// queries queued behind it and retries: the longest a query on the table waits.
    #[arg(long, env = "PP_MIGRATE_LOCK_TIMEOUT", default_value = "2s", value_parser = parse_lock_timeout)]
    pub lock_timeout: Duration,
    /// Give up (exit 4, naming the session in the way) when the locks were not taken
    /// within this long, all attempts together.
    #[arg(long, env = "PP_MIGRATE_MAX_WAIT", default_value = "2m", value_parser = parse_duration)]
    pub max_wait: Duration,
}

/// The same as the flags' defaults (`db reset`, which migrates a new database).
impl Default for MigrateOpts {
    fn default() -> Self {
        let policy = crate::storage::migrate::LockPolicy::default();
        Self {
            lock_timeout: policy.lock_timeout,
            max_wait: policy.max_wait,
        }
    }
}

/// PostgreSQL reads a `lock_timeout` of 0 as "wait forever": the one thing it is for.
fn parse_lock_timeout(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d < Duration::from_millis(1) => Err("must be at least 1ms".into()),
        d => Ok(d),
    }
}

#[derive(Subcommand)]
pub enum DbAction {
    /// Create the database if missing, then apply migrations.
    Setup(MigrateOpts),
    /// Apply pending migrations.
    Migrate(MigrateOpts),
    /// Show applied migrations and row counts.
    Status,
    /// Drop and recreate the database (destroys all works).
    Reset {
        /// Really drop it: without this flag nothing happens (exit 2).
        #[arg(long)]
        yes: bool,
    },
    /// Wait until the database answers.
    Wait {
        /// Give up (exit 4) when the server has not answered within this long.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Delete works that finished (done, failed, expired, cancelled) more than
    /// --older-than ago, with their events; pending and running works are kept.
    Prune {
        /// e.g. 30d, 12h. 0 means every finished work, and needs --yes.
        #[arg(long, value_parser = parse_duration)]
        older_than: Duration,
        /// Confirms --older-than 0, which deletes every finished work and the whole
        /// deduplication history.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Args)]
pub struct DeadArgs {
    #[command(subcommand)]
    pub action: DeadAction,
}

/// The dead letters are read and replayed, never declared, so `--queue-type` means
/// nothing here: hidden from the help, still accepted (a shared `PP_QUEUE_TYPE` must
/// not break `ppctl dead`).
#[derive(Subcommand)]
pub enum DeadAction {
    /// Show dead letters from the head of the queue (id, reason, time, size, preview)
    /// without removing or reordering any.
    #[command(mut_arg("queue_type", |a| a.hide(true)))]
    List {
        #[command(flatten)]
        amqp: AmqpOpts,
        /// Show at most this many.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send dead letters back to the work queue (confirmed first, then removed).
    #[command(group(clap::ArgGroup::new("which").required(true).args(["all", "id"])))]
    #[command(mut_arg("queue_type", |a| a.hide(true)))]
    Replay {
        #[command(flatten)]
        amqp: AmqpOpts,
        /// Every readable dead letter.
        #[arg(long)]
        all: bool,
        /// The dead letter with this message_id (repeatable).
        #[arg(long = "id", value_name = "MESSAGE_ID")]
        id: Vec<String>,
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Remove every dead letter, unreadable ones included (or, with --unreadable, only
    /// those, so the ones behind them can be read again).
    #[command(mut_arg("queue_type", |a| a.hide(true)))]
    Purge {
        #[command(flatten)]
        amqp: AmqpOpts,
        /// Confirm: the dead letters are gone for good.
        #[arg(long)]
        yes: bool,
        /// Remove only the dead letters the AMQP client cannot read; the others keep
        /// their order.
        #[arg(long)]
        unreadable: bool,
    },
}

impl DeadAction {
    pub fn amqp(&self) -> &AmqpOpts {
        match self {
            Self::List { amqp, .. } | Self::Replay { amqp, .. } | Self::Purge { amqp, .. } => amqp,
        }
    }
}
