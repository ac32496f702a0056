//! `ppctl workers` and `ppctl pipeline pause|resume|status`, through the API or the
//! database; both print the same types.

use super::api_client::ApiClient;
use super::{table, Failure};
use crate::cli::{ControlOpts, PipelineAction, PipelineArgs, Via, WorkersArgs};
use crate::config::redact_url;
use crate::storage::pipeline::{self, PipelineState};
use crate::storage::workers::{self, Worker};
use crate::storage::{self, DbError};
use anyhow::Context;
use reqwest::Method;

pub async fn list(args: WorkersArgs) -> anyhow::Result<()> {
    let listed: Vec<Worker> = match Backend::new(&args.control).await? {
        Backend::Db(client) => workers::list(&client).await.map_err(db_failure)?,
        Backend::Http(api) => api
            .call(Method::GET, "/workers", None)
            .await?
            .context("the API answered 404 to GET /workers")?,
    };
    let out = match args.control.json {
        true => serde_json::to_string_pretty(&listed)? + "\n",
        false => workers_table(&listed),
    };
    super::emit(out.as_bytes())
}

pub async fn pipeline(args: PipelineArgs) -> anyhow::Result<()> {
    let backend = Backend::new(&args.control).await?;
    let state: PipelineState = match (backend, args.action) {
        (Backend::Db(client), action) => {
            let done = match action {
                PipelineAction::Status => pipeline::get(&client).await,
                PipelineAction::Pause => pipeline::set(&client, true).await,
                PipelineAction::Resume => pipeline::set(&client, false).await,
            };
            done.map_err(db_failure)?
        }
        (Backend::Http(api), action) => {
            let (method, path) = match action {
                PipelineAction::Status => (Method::GET, "/pipeline"),
                PipelineAction::Pause => (Method::POST, "/pipeline/pause"),
                PipelineAction::Resume => (Method::POST, "/pipeline/resume"),
            };
            api.call(method, path, None)
                .await?
                .with_context(|| format!("the API answered 404 to {path}"))?
        }
    };
    let out = match args.control.json {
        true => serde_json::to_string_pretty(&state)? + "\n",
        false => format!(
            "pipeline {} since {}\n",
            state.state,
            table::time(state.changed_on)
        ),
    };
    super::emit(out.as_bytes())
}

enum Backend {
    Http(ApiClient),
    Db(deadpool_postgres::Client),
}

impl Backend {
    async fn new(opts: &ControlOpts) -> anyhow::Result<Self> {
        match opts.via {
            Via::Http => Ok(Self::Http(ApiClient::new(
                &opts.api_url,
                opts.api_token.clone(),
            )?)),
            Via::Db => {
                let pool = storage::pool(&opts.database_url, 1)?;
                let client = pool.get().await.map_err(|e| {
                    Failure::Unreachable(format!(
                        "cannot reach the database at {}: {e}",
                        redact_url(&opts.database_url),
                    ))
                })?;
                Ok(Self::Db(client))
            }
        }
    }
}

fn db_failure(e: DbError) -> anyhow::Error {
    match e {
        DbError::Unavailable(m) => {
            Failure::Unreachable(format!("database unavailable: {m}")).into()
        }
        other => other.into(),
    }
}

/// One row per worker; then, when any holds API works, one row per lease.
fn workers_table(listed: &[Worker]) -> String {
    let rows = listed
        .iter()
        .map(|w| {
            vec![
                w.id.clone(),
                w.state.clone(),
                w.host.clone(),
                w.pid.to_string(),
                w.queue.clone(),
                w.prefetch.to_string(),
                w.works_stored.to_string(),
                w.in_flight.to_string(),
                w.works.len().to_string(),
                table::time(w.started_on),
                table::time(w.last_seen),
            ]
        })
        .collect();
    let header = [
        "ID",
        "STATE",
        "HOST",
        "PID",
        "QUEUE",
        "PREFETCH",
        "STORED",
        "IN_FLIGHT",
        "LEASES",
        "STARTED",
        "LAST_SEEN",
    ];
    let mut out = table::table(&header, rows);
    let leases: Vec<Vec<String>> = listed
        .iter()
        .flat_map(|w| {
            w.works.iter().map(|h| {
                let until = table::time(h.locked_until);
                vec![w.id.clone(), h.id.to_string(), h.work_code.clone(), until]
            })
        })
        .collect();
    if !leases.is_empty() {
        out.push('\n');
        out += &table::table(&["WORKER", "WORK", "WORK_CODE", "LEASE_UNTIL"], leases);
    }
    out
}
