//! `ppctl work create|get|search|events|retry|cancel|watch`, through the API or straight to the database.
//! Both paths return the same types, so their output is identical.

use super::api_client::ApiClient;
use super::{table, Failure};
use crate::cli::{Via, WorkAction, WorkArgs};
use crate::config::redact_url;
use crate::model::{new_work_code, Event, Origin, Work, WorkStatus};
use crate::query::{bulk::RawBulk, RawQuery};
use crate::run_at::When;
use crate::storage::actions::{self, Action};
use crate::storage::{self, idempotent, notify, search, works, DbError};
use anyhow::{bail, Context};
use rand::Rng;
use reqwest::Method;
use std::time::{Duration, Instant, SystemTime};

pub async fn run(args: WorkArgs) -> anyhow::Result<()> {
    // Validated before connecting, so both backends refuse bad input with the same
    // words, even when the server is down.
    match &args.action {
        WorkAction::Search(query) => _ = query.validate().map_err(Failure::Usage)?,
        WorkAction::Retry { id, bulk } | WorkAction::Cancel { id, bulk } => {
            bulk.check_with_id(*id).map_err(Failure::Usage)?
        }
        _ => {}
    }
    let when = match &args.action {
        WorkAction::Create { at, in_, .. } => later(*at, *in_)?,
        _ => None,
    };
    let backend = Backend::new(&args).await?;
    let json = args.control.json;
    let out = match &args.action {
        WorkAction::Create { add_up_to, .. } => {
            render(&backend.create(*add_up_to, when).await?, json, table::work)?
        }
        WorkAction::Get { id } => render(&backend.get(*id).await?, json, table::work)?,
        WorkAction::Search(query) => {
            render(&backend.search(query).await?, json, |w| table::works(w))?
        }
        WorkAction::Events { id } => {
            render(&backend.events(*id).await?, json, |e| table::events(e))?
        }
        WorkAction::Retry { id, bulk } => act(&backend, Action::Retry, *id, bulk, json).await?,
        WorkAction::Cancel { id, bulk } => act(&backend, Action::Cancel, *id, bulk, json).await?,
        WorkAction::Watch { id, timeout } => return watch(&backend, *id, *timeout, json).await,
    };
    backend.show_token(&args);
    super::emit(out.as_bytes())
}

/// One work's action, or the bulk one over the filters.
async fn act(
    backend: &Backend,
    action: Action,
    id: Option<i64>,
    bulk: &RawBulk,
    json: bool,
) -> anyhow::Result<String> {
    match id {
        Some(id) => render(&backend.act(action, id).await?, json, table::work),
        None => render(&backend.act_all(action, bulk).await?, json, table::bulk),
    }
}

/// `--at` or `--in`, bounded as a demand's `run_at` and `delay` are (exit 2 past it).
fn later(at: Option<SystemTime>, after: Option<Duration>) -> anyhow::Result<Option<When>> {
    let when = at.map(When::At).or(after.map(When::After));
    let checked = when.map(|w| w.bounded(SystemTime::now())).transpose();
    Ok(checked.map_err(Failure::Usage)?)
}

/// Prints the work each time its status changes until it is done (exit 0) or ends any
/// other way (failed, expired, cancelled: exit 1): a line per change, or one compact
/// JSON object per line with `--json`.
async fn watch(backend: &Backend, id: i64, timeout: Duration, json: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        let work = backend.get(id).await?;
        if last != Some(work.status) {
            last = Some(work.status);
            let line = if json {
                serde_json::to_string(&work)?
            } else {
                let result = work
                    .result
                    .map(|r| format!(", result {r}"))
                    .unwrap_or_default();
                format!(
                    "work {} ({}): {}{result}",
                    work.id, work.work_code, work.status
                )
            };
            super::emit(format!("{line}\n").as_bytes())?;
        }
        match work.status {
            WorkStatus::Done => return Ok(()),
            WorkStatus::Failed | WorkStatus::Expired | WorkStatus::Cancelled => {
                // Printed above; the exit code tells a script it did not succeed.
                bail!("work {id} ended {}", work.status)
            }
            WorkStatus::Pending | WorkStatus::Running | WorkStatus::Scheduled => {}
        }
        if Instant::now() >= deadline {
            bail!(
                "work {id} is still {} after {}",
                work.status,
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(WATCH_POLL).await;
    }
}

/// How often `work watch` asks; a person watching cannot tell 200 ms from live.
const WATCH_POLL: Duration = Duration::from_millis(200);

/// JSON for scripts (`--json`), an aligned table for people.
fn render<T: serde::Serialize + ?Sized>(
    value: &T,
    json: bool,
    table: impl Fn(&T) -> String,
) -> anyhow::Result<String> {
    Ok(if json {
        serde_json::to_string_pretty(value)? + "\n"
    } else {
        table(value)
    })
}

pub(super) enum Backend {
    Http(ApiClient),
    Db(deadpool_postgres::Client),
}

impl Backend {
    async fn new(args: &WorkArgs) -> anyhow::Result<Self> {
        match args.control.via {
            Via::Db => {
                let pool = storage::pool(&args.control.database_url, 1)?;
                let client = pool.get().await.map_err(|e| {
                    // DbError keeps the driver's causes (a refused certificate) and
                    // names each host's failure.
                    Failure::Unreachable(format!(
                        "cannot reach the database at {}: {e}",
                        redact_url(&args.control.database_url),
                    ))
                })?;
                Ok(Backend::Db(client))
            }
            Via::Http => {
                let api = ApiClient::new(&args.control.api_url, args.control.api_token.clone())?;
                api.read_after(args.consistency_token);
                Ok(Backend::Http(api))
            }
        }
    }

    /// After a write through the API, its token on stderr (stdout stays the work), for
    /// a later `--consistency-token`.
    fn show_token(&self, args: &WorkArgs) {
        let Backend::Http(api) = self else { return };
        let writes = matches!(
            args.action,
            WorkAction::Create { .. } | WorkAction::Retry { .. } | WorkAction::Cancel { .. }
        );
        if let Some(token) = api.consistency_token().filter(|_| writes) {
            eprintln!("consistency token: {token}");
        }
    }

    async fn create(&self, add_up_to: Option<u64>, when: Option<When>) -> anyhow::Result<Work> {
        match self {
            Backend::Db(client) => {
                let n = add_up_to.unwrap_or_else(|| rand::rng().random_range(1..=100));
                let run_at = when.and_then(|w| w.run_at(SystemTime::now()));
                let work = create_in_db(client, n as i64, run_at).await?;
                // After the commit, as the API does; a failure only delays the sweep.
                if let Some(sql) = notify::statement(true, true) {
                    let _ = client.batch_execute(sql).await;
                }
                Ok(work)
            }
            Backend::Http(api) => {
                let mut body = serde_json::json!({});
                if let Some(n) = add_up_to {
                    body["add_up_to"] = n.into();
                }
                if let Some((field, value)) = when.map(When::fingerprint) {
                    body[field] = value.into();
                }
                let body = (body != serde_json::json!({})).then_some(body);
                // One key for every attempt: a repeat never makes a second work.
                api.create("/works", body)
                    .await?
                    .context("the API answered 404 to POST /works")
            }
        }
    }

    async fn get(&self, id: i64) -> anyhow::Result<Work> {
        let found = match self {
            Backend::Db(client) => works::get(client, id).await.map_err(db_failure)?,
            Backend::Http(api) => api.call(Method::GET, &format!("/works/{id}"), None).await?,
        };
        found.ok_or_else(|| Failure::NotFound(format!("work {id} not found")).into())
    }

    async fn search(&self, raw: &RawQuery) -> anyhow::Result<Vec<Work>> {
        match self {
            Backend::Db(client) => {
                let query = raw.validate().map_err(anyhow::Error::msg)?;
                Ok(search::search(client, &query).await.map_err(db_failure)?)
            }
            Backend::Http(api) => {
                let target = format!("/works?{}", raw.to_query_string());
                // Only a work's own route answers "not found"; a search never does.
                api.call(Method::GET, &target, None)
                    .await?
                    .context("the API answered 404 to a search")
            }
        }
    }

    async fn events(&self, id: i64) -> anyhow::Result<Vec<Event>> {
        let found = match self {
            Backend::Db(client) => works::events(client, id).await.map_err(db_failure)?,
            Backend::Http(api) => {
                api.call(Method::GET, &format!("/works/{id}/events"), None)
                    .await?
            }
        };
        found.ok_or_else(|| Failure::NotFound(format!("work {id} not found")).into())
    }

    /// `retry` or `cancel` one work: the changed work, not found (3), or the refusal.
    async fn act(&self, action: Action, id: i64) -> anyhow::Result<Work> {
        let outcome = match self {
            Backend::Db(client) => {
                let outcome = actions::apply(client, id, action, None).await;
                match outcome.map_err(db_failure)? {
                    actions::Outcome::Changed(work) => Some(work),
                    actions::Outcome::NotFound => None,
                    actions::Outcome::Refused(reason) => bail!("{reason}"),
                }
            }
            Backend::Http(api) => {
                let path = format!("/works/{id}/{}", action.as_str());
                api.call(Method::POST, &path, None).await?
            }
        };
        outcome.ok_or_else(|| Failure::NotFound(format!("work {id} not found")).into())
    }
}

/// A work created straight in the database, pending or (with `run_at`) scheduled.
async fn create_in_db(
    client: &deadpool_postgres::Client,
    n: i64,
    run_at: Option<SystemTime>,
) -> anyhow::Result<Work> {
    let code = new_work_code(Origin::Api);
    let Some(run_at) = run_at else {
        return works::create_pending(client, &code, n, None, None)
            .await
            .map_err(db_failure);
    };
    let new = idempotent::NewWork {
        work_code: code,
        add_up_to: n,
        deadline: None,
        trace_parent: None,
        key: None,
        run_at: Some(run_at),
    };
    match idempotent::create(client, &new, false).await {
        Ok(idempotent::Created::New(work) | idempotent::Created::Found(work)) => Ok(work),
        Ok(idempotent::Created::KeyReused) => bail!("work code {} is taken", new.work_code),
        Err(failed) => Err(db_failure(failed.error)),
    }
}

pub(super) fn db_failure(e: DbError) -> anyhow::Error {
    match e {
        DbError::Unavailable(m) => {
            Failure::Unreachable(format!("database unavailable: {m}")).into()
        }
        other => other.into(),
    }
}
