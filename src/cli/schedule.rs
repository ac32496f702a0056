//! `ppctl schedule add|list|remove`: the periodic schedules, straight in the database
//! (the consumers' inserters read them from there).

use crate::config;
use clap::{Args, Subcommand};
use std::time::Duration;

#[derive(Args)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    pub action: ScheduleAction,
    /// PostgreSQL connection URL.
    #[arg(long, global = true, env = "DATABASE_URL", default_value = config::DEFAULT_DATABASE_URL, hide_env_values = true, hide_default_value = true)]
    pub database_url: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum ScheduleAction {
    /// Add a schedule: one pending work per slot (--every or --cron, in UTC).
    Add {
        /// 1 to 40 of a-z, 0-9, - and _; its works' codes are `cron-<name>-…`.
        #[arg(value_parser = crate::schedule::parse_name)]
        name: String,
        /// A slot every this long (whole seconds, at least 1s), on its multiples since
        /// the Unix epoch: 1h slots fall on the hour.
        #[arg(long, value_parser = crate::schedule::parse_every, required_unless_present = "cron", conflicts_with = "cron")]
        every: Option<Duration>,
        /// A cron expression, in UTC: 5 fields, or 6 with seconds first ('0 * * * *').
        #[arg(long, value_parser = crate::schedule::parse_cron)]
        cron: Option<String>,
        /// The add_up_to of each slot's work (0..=4294967295).
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=crate::engine::MAX_N))]
        add_up_to: u64,
    },
    /// List the schedules with their last and next slots.
    List,
    /// Remove a schedule (the works it made stay).
    Remove {
        #[arg(value_parser = crate::schedule::parse_name)]
        name: String,
    },
}
