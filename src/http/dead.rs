//! `GET /dead-letters` and `POST /dead-letters/replay`: `ppctl dead list|replay` over
//! HTTP. Each request opens a broker connection of its own (an unreadable dead letter
//! kills the connection that reads it, so the depth watcher's is not lent out), and one
//! operation runs at a time per server: a listing holds the messages it reads until it
//! closes, and a replay running beside it would not see them.

use super::error::{ApiError, ErrorBody};
use super::params::NoQuery;
use super::responses::{BadRequest, PayloadTooLarge, RequestTimeout, Unauthorized};
use super::{works::resource, AppState};
use crate::amqp::dead::{self, DeadError, Listing, Replayed, Selection};
use crate::amqp::{Nodes, Topology};
use crate::demand::from_json_object;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use utoipa::openapi::schema::{AdditionalProperties, Schema};
use utoipa::openapi::{ObjectBuilder, OneOfBuilder, RefOr, Type};

/// How long one operation may take: less than the request's own bound, whose 503 would
/// blame the database.
const BROKER_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(3500);

/// How long an API replay sends dead letters back before it answers with what it did
/// (`stopped_at_deadline`): a second short of `BROKER_TIMEOUT`, for the last one's
/// confirm and ack.
const REPLAY_FOR: std::time::Duration = std::time::Duration::from_millis(2500);

/// Largest `limit` a listing takes over HTTP (each dead letter is one round trip).
const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 100;

/// Where `serve` finds the dead letters. `Debug` is `Nodes`'s, which hides passwords.
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many, from the head of the queue; default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// The body of a replay: every readable dead letter, or these message ids.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    #[serde(default)]
    all: bool,
    ids: Option<Vec<String>>,
}

impl utoipa::ToSchema for ReplayRequest {}

/// Exactly what `replay` accepts: `{"all": true}` (`ids` absent or null), or a non-empty
/// `ids` (`all` absent or false). A derive would document any combination of the two.
impl utoipa::PartialSchema for ReplayRequest {
    fn schema() -> RefOr<Schema> {
        replay_request_schema().into()
    }
}

fn replay_request_schema() -> Schema {
    let object = |required: &str, all: bool, ids: RefOr<Schema>| {
        ObjectBuilder::new()
            .property(
                "all",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .enum_values(Some([all])),
            )
            .property("ids", ids)
            .required(required)
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
    };
    let null = ObjectBuilder::new().schema_type(Type::Null).build().into();
    let strings = utoipa::openapi::ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::String))
        .min_items(Some(1))
        .build()
        .into();
    OneOfBuilder::new()
        .item(object("all", true, null))
        .item(object("ids", false, strings))
        .description(Some(
            "Exactly one of `{\"all\": true}` or `{\"ids\": [...]}`.",
        ))
        .examples([
            json!({"all": true}),
            json!({"ids": ["8d2c1c2e-7f6a-4b0e-9c39-2f1f0e6c9a11"]}),
        ])
        .into()
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

/// The dead letters, from the head of the queue, without removing or reordering any.
/// They hold message ids and bodies, and a listing holds them while it reads (a replay
/// beside it skips them): with a token set, reading needs it too.
#[utoipa::path(get, path = "/dead-letters", tag = "dead-letters", operation_id = "listDeadLetters",
    params(ListQuery),
    responses(
        (status = 200, description = "The listing.", body = Listing),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, description = "The dead-letter queue does not exist (nothing has \
            declared the topology yet).", body = ErrorBody),
        (status = 503, description = "RabbitMQ is out of reach, or the server has none.",
            body = ErrorBody, headers(("Retry-After" = i64, description = "Seconds: `1`."))),
    ),
    security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    state.authorize(&req)?;
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

/// Send dead letters back to the work queue.
#[utoipa::path(post, path = "/dead-letters/replay", tag = "dead-letters",
    operation_id = "replayDeadLetters",
    description = "Each is published with a confirm first, then removed from the dead \
        letters: a crash in between duplicates it, and the consumer deduplicates by \
        message_id. Unreadable dead letters are skipped.",
    request_body(content = ReplayRequest),
    responses(
        (status = 200, description = "What was replayed.", body = Replayed),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, description = "The dead-letter queue does not exist (nothing has \
            declared the topology yet).", body = ErrorBody),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 503, description = "RabbitMQ is out of reach, or the server has none.",
            body = ErrorBody, headers(("Retry-After" = i64, description = "Seconds: `1`."))),
    ),
    security(("bearer" = [])))]
pub async fn replay(
    state: web::Data<AppState>,
    req: HttpRequest,
    _: web::Query<NoQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // The replay sends no dead letter back after this: its client is being answered
    // (well within the request's and the broker operation's bounds).
    let stop_at = tokio::time::Instant::now() + REPLAY_FOR;
    state.authorize(&req)?;
    let body = super::body::read(payload).await?;
    // An object, as documented: serde alone would also read `[true]` as the struct.
    let request: ReplayRequest = from_json_object(&body)
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
    let replay = dead::replay(&source.nodes, &source.topology, &selection, Some(stop_at));
    let done = bounded(replay).await?;
    Ok(HttpResponse::Ok().json(done))
}
