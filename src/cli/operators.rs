//! `workers` and `pipeline`: the operator controls of `consume`, through the API (as
//! `work` does) or straight to the database.

use super::Via;
use crate::config;
use clap::{Args, Subcommand};

/// Where `work`, `workers` and `pipeline` talk to, and how they print.
#[derive(Clone, Args)]
pub struct ControlOpts {
    /// Talk to the API (http) or straight to the database (db).
    #[arg(long, global = true, value_enum, default_value_t = Via::Http)]
    pub via: Via,
    /// The API's base URL, http:// or https:// (rustls), for --via http.
    #[arg(long, global = true, env = "PP_API_URL", default_value = config::DEFAULT_API_URL)]
    pub api_url: String,
    /// Bearer token for POST routes, for --via http.
    #[arg(long, global = true, env = "PP_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// PostgreSQL connection URL, for --via db.
    #[arg(long, global = true, env = "DATABASE_URL", default_value = config::DEFAULT_DATABASE_URL, hide_env_values = true, hide_default_value = true)]
    pub database_url: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Args)]
pub struct WorkersArgs {
    #[command(flatten)]
    pub control: ControlOpts,
}

#[derive(Args)]
pub struct PipelineArgs {
    #[command(subcommand)]
    pub action: PipelineAction,
    #[command(flatten)]
    pub control: ControlOpts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum PipelineAction {
    /// Stop every consumer taking deliveries and every sweeper claiming API works
    /// (within 2 s; what is in hand is finished). Lasts across restarts.
    Pause,
    /// Let them run again (within 2 s).
    Resume,
    /// Say whether the pipeline is paused.
    Status,
}
