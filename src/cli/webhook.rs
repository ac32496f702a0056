//! The webhook options of `consume` and `up` (`WebhookOpts`, flattened into
//! `WorkerOpts`), and `ppctl webhook` (`WebhookArgs`).

use super::worker::parse_nonzero_duration;
use crate::webhook::DeliveryState;
use clap::{Args, Subcommand};
use std::time::Duration;

#[derive(Clone, Args)]
pub struct WebhookOpts {
    /// POST a signed webhook (Standard Webhooks) to this http(s) URL for every work
    /// that reaches done, failed, expired or cancelled, whichever process finishes it;
    /// turns recording on in the database (`ppctl webhook disable` turns it off).
    /// Needs PP_WEBHOOK_SECRET.
    #[arg(long, env = "PP_WEBHOOK_URL", hide_env_values = true)]
    pub webhook_url: Option<String>,
    /// The signing secret, `whsec_<base64 of 24 to 64 bytes>`. Prefer the environment
    /// to the flag: a flag shows in the process list.
    #[arg(long, env = "PP_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Retry a delivery that gets no 2xx for this long (exponential backoff with full
    /// jitter, capped at an hour), then mark it failed.
    #[arg(long, env = "PP_WEBHOOK_RETRY_FOR", default_value = "1d", value_parser = parse_nonzero_duration)]
    pub webhook_retry_for: Duration,
    /// The longest wait between two attempts. Hidden: tests shorten it.
    #[arg(long, env = "PP_WEBHOOK_BACKOFF_MAX", default_value = "1h", value_parser = parse_nonzero_duration, hide = true)]
    pub webhook_backoff_max: Duration,
}

/// Webhooks off, and the defaults of the flags (for the tests and `up`'s callers).
impl Default for WebhookOpts {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_secret: None,
            webhook_retry_for: Duration::from_secs(86_400),
            webhook_backoff_max: Duration::from_secs(3600),
        }
    }
}

#[derive(Args)]
pub struct WebhookArgs {
    #[command(subcommand)]
    pub action: WebhookAction,
    /// PostgreSQL connection URL: the outbox is read and changed there.
    #[arg(long, global = true, env = "DATABASE_URL", default_value = crate::config::DEFAULT_DATABASE_URL, hide_env_values = true, hide_default_value = true)]
    pub database_url: String,
}

#[derive(Subcommand)]
pub enum WebhookAction {
    /// Show webhook deliveries, newest first.
    List {
        /// Only deliveries in this state.
        #[arg(long, value_parser = |s: &str| s.parse::<DeliveryState>())]
        status: Option<DeliveryState>,
        /// Show at most this many.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
        /// Only deliveries below this id (paging).
        #[arg(long)]
        before_id: Option<i64>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send a delivery again (same webhook-id, a new retry period), or every failed one.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "all_failed"])))]
    Redeliver {
        id: Option<i64>,
        /// Every failed delivery.
        #[arg(long)]
        all_failed: bool,
    },
    /// Stop recording deliveries (a consumer started with --webhook-url turns it on
    /// again). Pending ones stay and are still sent.
    Disable,
}
