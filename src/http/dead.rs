//! `GET /dead-letters` and `POST /dead-letters/replay`: `ppctl dead list|replay` over
//! HTTP. Each request opens a broker connection of its own (an unreadable dead letter
//! kills the connection that reads it, so the depth watcher's is not lent out), and one
//! operation runs at a time per server: a listing holds the messages it reads until it
//! closes, and a replay running beside it would not see them.

use super::{error::ApiError, works::resource, AppState};
use crate::amqp::dead::{self, DeadError, Selection};
use crate::amqp::{Nodes, Topology};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use std::sync::Arc;

/// How long one operation may take: less than the request's own bound, whose 503 would
/// blame the database.
const BROKER_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(3500);

/// Largest `limit` a listing takes over HTTP (each dead letter is one round trip).
const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 100;

/// Where `serve` finds the dead letters.
#[derive(Debug)]
pub struct DeadLetterSource {
    nodes: Nodes,
    topology: Topology,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl DeadLetterSource {
    pub fn new(amqp_url: &str, topology: Topology) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            nodes: Nodes::parse(amqp_url)?,
            topology,
            one_at_a_time: tokio::sync::Mutex::new(()),
        }))
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/dead-letters", "GET").get(list))
        .service(resource("/dead-letters/replay", "POST").post(replay));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
}

/// The body of a replay: every readable dead letter, or these message ids.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    #[serde(default)]
    all: bool,
    ids: Option<Vec<String>>,
}

fn source(state: &AppState) -> Result<&DeadLetterSource, ApiError> {
    state
        .dead_letters
        .as_deref()
        .ok_or_else(|| ApiError::Broker("this server has no broker configured".into()))
}

fn broker_error(e: anyhow::Error) -> ApiError {
    match e.downcast_ref::<DeadError>() {
        Some(DeadError::NoQueue(_)) => ApiError::NotFound(e.to_string()),
        Some(DeadError::Unreachable(detail)) => {
            tracing::warn!(%detail, "RabbitMQ unreachable");
            ApiError::Broker("RabbitMQ unreachable".into())
        }
        None => {
            tracing::warn!(error = format!("{e:#}"), "dead-letter operation failed");
            ApiError::Broker(format!("{e:#}"))
        }
    }
}

/// Runs a broker operation within `BROKER_TIMEOUT`. One cut short leaves nothing half
/// done: what it held goes back to its place, and a replay's published but unacked
/// messages stay dead letters too (duplicates, which the consumer deduplicates).
async fn bounded<T>(
    operation: impl std::future::Future<Output = anyhow::Result<T>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(BROKER_TIMEOUT, operation).await {
        Ok(result) => result.map_err(broker_error),
        Err(_) => Err(ApiError::Broker(format!(
            "RabbitMQ did not finish within {BROKER_TIMEOUT:?} (a frozen node, or a replay \
             too large for one request: `ppctl dead replay` has no such bound)"
        ))),
    }
}

async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1..={MAX_LIMIT}, got {limit}"
        )));
    }
    let source = source(&state)?;
    let _turn = source.one_at_a_time.lock().await;
    let listing = bounded(dead::list(&source.nodes, &source.topology, limit)).await?;
    Ok(HttpResponse::Ok().json(listing))
}

async fn replay(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.authorize(&req)?;
    let body = super::works::read_body(payload).await?;
    let request: ReplayRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let selection = match request {
        ReplayRequest {
            all: true,
            ids: None,
        } => Selection::All,
        ReplayRequest {
            all: false,
            ids: Some(ids),
        } if !ids.is_empty() => Selection::Ids(ids),
        _ => {
            return Err(ApiError::bad_request(
                r#"the body must be {"all": true} or {"ids": ["MESSAGE_ID", ...]}"#,
            ))
        }
    };
    let source = source(&state)?;
    let _turn = source.one_at_a_time.lock().await;
    let done = bounded(dead::replay(&source.nodes, &source.topology, &selection)).await?;
    Ok(HttpResponse::Ok().json(done))
}
