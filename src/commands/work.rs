//! `ppctl work create|get|search|events|retry|cancel|watch`, through the API or straight to the database.
//! Both paths return the same types, so their output is identical.

use super::{table, Failure};
use crate::cli::{Via, WorkAction, WorkArgs};
use crate::config::redact_url;
use crate::model::{new_work_code, Event, Origin, Work, WorkStatus};
use crate::query::RawQuery;
use crate::rawhttp::{self, Request};
use crate::storage::actions::{self, Action};
use crate::storage::{self, notify, search, works, DbError};
use anyhow::{bail, Context};
use rand::Rng;
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};

pub async fn run(args: WorkArgs) -> anyhow::Result<()> {
    // Validated before connecting, so both backends refuse bad input with the same
    // words, even when the server is down.
    if let WorkAction::Search(query) = &args.action {
        query.validate().map_err(anyhow::Error::msg)?;
    }
    let backend = Backend::new(&args).await?;
    let json = args.json;
    let out = match &args.action {
        WorkAction::Create { add_up_to } => {
            render(&backend.create(*add_up_to).await?, json, table::work)?
        }
        WorkAction::Get { id } => render(&backend.get(*id).await?, json, table::work)?,
        WorkAction::Search(query) => {
            render(&backend.search(query).await?, json, |w| table::works(w))?
        }
        WorkAction::Events { id } => {
            render(&backend.events(*id).await?, json, |e| table::events(e))?
        }
        WorkAction::Retry { id } => {
            render(&backend.act(Action::Retry, *id).await?, json, table::work)?
        }
        WorkAction::Cancel { id } => {
            render(&backend.act(Action::Cancel, *id).await?, json, table::work)?
        }
        WorkAction::Watch { id, timeout } => return watch(&backend, *id, *timeout, json).await,
    };
    super::emit(out.as_bytes())
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
            WorkStatus::Pending | WorkStatus::Running => {}
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

enum Backend {
    Http {
        addr: String,
        base: String,
        token: Option<String>,
    },
    Db(deadpool_postgres::Client),
}

impl Backend {
    async fn new(args: &WorkArgs) -> anyhow::Result<Self> {
        match args.via {
            Via::Db => {
                let pool = storage::pool(&args.database_url, 1)?;
                let client = pool.get().await.map_err(|e| {
                    Failure::Unreachable(format!(
                        "cannot reach the database at {}: {e}",
                        redact_url(&args.database_url)
                    ))
                })?;
                Ok(Backend::Db(client))
            }
            Via::Http => {
                let (addr, base) = split_api_url(&args.api_url)?;
                Ok(Backend::Http {
                    addr,
                    base,
                    token: args.api_token.clone(),
                })
            }
        }
    }

    async fn create(&self, add_up_to: Option<u64>) -> anyhow::Result<Work> {
        match self {
            Backend::Db(client) => {
                let n = add_up_to.unwrap_or_else(|| rand::rng().random_range(1..=100));
                let work =
                    works::create_pending(client, &new_work_code(Origin::Api), n as i64, None)
                        .await
                        .map_err(db_failure)?;
                // After the commit, as the API does; a failure only delays the sweep.
                if let Some(sql) = notify::statement(true, true) {
                    let _ = client.batch_execute(sql).await;
                }
                Ok(work)
            }
            Backend::Http { .. } => {
                let body = add_up_to
                    .map(|n| format!("{{\"add_up_to\":{n}}}"))
                    .unwrap_or_default();
                self.call("POST", "/works", Some(body))
                    .await?
                    .context("the API answered 404 to POST /works")
            }
        }
    }

    async fn get(&self, id: i64) -> anyhow::Result<Work> {
        let found = match self {
            Backend::Db(client) => works::get(client, id).await.map_err(db_failure)?,
            Backend::Http { .. } => self.call("GET", &format!("/works/{id}"), None).await?,
        };
        found.ok_or_else(|| Failure::NotFound(format!("work {id} not found")).into())
    }

    async fn search(&self, raw: &RawQuery) -> anyhow::Result<Vec<Work>> {
        match self {
            Backend::Db(client) => {
                let query = raw.validate().map_err(anyhow::Error::msg)?;
                Ok(search::search(client, &query).await.map_err(db_failure)?)
            }
            Backend::Http { .. } => {
                let target = format!("/works?{}", raw.to_query_string());
                Ok(self.call("GET", &target, None).await?.unwrap_or_default())
            }
        }
    }

    async fn events(&self, id: i64) -> anyhow::Result<Vec<Event>> {
        let found = match self {
            Backend::Db(client) => works::events(client, id).await.map_err(db_failure)?,
            Backend::Http { .. } => {
                self.call("GET", &format!("/works/{id}/events"), None)
                    .await?
            }
        };
        found.ok_or_else(|| Failure::NotFound(format!("work {id} not found")).into())
    }

    /// `retry` or `cancel` one work: the changed work, not found (3), or the refusal.
    async fn act(&self, action: Action, id: i64) -> anyhow::Result<Work> {
        let outcome = match self {
            Backend::Db(client) => {
                let outcome = actions::apply(client, id, action).await;
                match outcome.map_err(db_failure)? {
                    actions::Outcome::Changed(work) => Some(work),
                    actions::Outcome::NotFound => None,
                    actions::Outcome::Refused(reason) => bail!("{reason}"),
                }
            }
            Backend::Http { .. } => {
                let path = format!("/works/{id}/{}", action.as_str());
                self.call("POST", &path, None).await?
            }
        };
        outcome.ok_or_else(|| Failure::NotFound(format!("work {id} not found")).into())
    }

    /// One API call: Ok(None) on 404, the API's own error message on other failures.
    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<Option<T>> {
        let Backend::Http { addr, base, token } = self else {
            bail!("not an HTTP backend")
        };
        let mut request = Request::new(method, &format!("{base}{path}"))?;
        if let Some(token) = token {
            request
                .headers
                .push(("Authorization".into(), format!("Bearer {token}")));
        }
        request.body = body.map(String::into_bytes);
        let response = rawhttp::send(addr, &request)
            .await
            .map_err(|e| Failure::Unreachable(format!("{e:#}")))?;
        match response.status {
            200..=299 => Ok(Some(
                serde_json::from_slice(&response.body).context("the API sent unexpected JSON")?,
            )),
            404 if method == "GET" || path.starts_with("/works/") => Ok(None),
            status => {
                let message = serde_json::from_slice::<serde_json::Value>(&response.body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                    .unwrap_or_else(|| String::from_utf8_lossy(&response.body).into_owned());
                bail!("the API answered {status}: {message}")
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

/// `http://host:port/base` into `host:port` and `/base` (no trailing slash).
pub fn split_api_url(url: &str) -> anyhow::Result<(String, String)> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("--api-url must start with http:// (the built-in client speaks plain HTTP), got {url:?}");
    };
    let (authority, base) = rest.split_once('/').map_or((rest, ""), |(a, b)| (a, b));
    if authority.is_empty() || authority.contains('@') {
        bail!("--api-url {url:?} has no usable host");
    }
    let addr = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let base = base.trim_end_matches('/');
    Ok((
        addr,
        if base.is_empty() {
            String::new()
        } else {
            format!("/{base}")
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_split() {
        assert_eq!(
            split_api_url("http://127.0.0.1:3000").ok(),
            Some(("127.0.0.1:3000".into(), "".into()))
        );
        assert_eq!(
            split_api_url("http://api/v1/").ok(),
            Some(("api:80".into(), "/v1".into()))
        );
        assert!(split_api_url("https://api").is_err());
        assert!(split_api_url("http://").is_err());
    }
}
