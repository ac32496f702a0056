//! The works routes, and the original project's `/work` routes kept for its clients.
//! Each handler carries its OpenAPI description (`#[utoipa::path]`): the statuses it
//! lists are the ones its code can return.

use super::body;
use super::consistency::ReadAfter;
use super::params::{IdempotencyKey, NoQuery, WorkId};
use super::responses::{
    BadRequest, Conflict, NotFound, PayloadTooLarge, RequestTimeout, Unauthorized, Unavailable,
    Unprocessable,
};
use super::{error::ApiError, AppState};
use crate::demand::CreateWork;
use crate::model::{Event, Work};
use crate::query::RawQuery;
use crate::storage::actions::{self, Action};
use crate::storage::{retry, search, works};
use actix_web::{web, HttpRequest, HttpResponse};

pub use body::MAX_BODY;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/works", "GET, POST").get(search).post(create))
        .service(resource("/works/{id}", "GET").get(get))
        .service(resource("/works/{id}/events", "GET").get(events))
        .service(resource("/works/{id}/retry", "POST").post(retry))
        .service(resource("/works/{id}/cancel", "POST").post(cancel));
}

/// A resource whose other methods get a JSON 405 listing the allowed ones.
pub fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        HttpResponse::from(ApiError::MethodNotAllowed(allow))
    }))
}

/// Create a work, `pending` until a worker picks it up.
#[utoipa::path(post, path = "/works", tag = "works", operation_id = "createWork",
    description = "With an `Idempotency-Key`, a retry with the same key and body answers the \
        work the first request made (its current state), with `Idempotent-Replayed: true`, \
        never a second work; the same key with another body is a 422. A key lasts as long as \
        its work (the retention period).",
    params(IdempotencyKey),
    request_body(content = Option<CreateWork>, description = "Optional: an empty body or `{}` asks \
        for a random `add_up_to` in 1..=100. Unknown fields are refused."),
    responses(
        (status = 201, description = "Created, or made before under this `Idempotency-Key`.",
            body = Work,
            headers(("Location" = String, description = "`/works/{id}` of the work."),
                ("Idempotent-Replayed" = String, description = "`true` when an earlier \
                    request with this `Idempotency-Key` made the work."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    _: web::Query<NoQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let made = super::create::insert(&state, &req, payload).await?;
    let mut response = HttpResponse::Created();
    response.insert_header(("Location", format!("/works/{}", made.work.id)));
    Ok(made.answer(response))
}

pub(super) fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::bad_request(format!("work id must be an integer, got {raw:?}")))
}

/// 200 with the value, or the JSON 404 for an unknown work.
fn found<T: serde::Serialize>(value: Option<T>, id: i64) -> Result<HttpResponse, ApiError> {
    let value = value.ok_or_else(|| ApiError::NotFound(format!("work {id} not found")))?;
    Ok(HttpResponse::Ok().json(value))
}

pub(super) async fn get_work(
    state: &AppState,
    id: &str,
    after: ReadAfter,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(id)?;
    let work = state
        .reads
        .run_found(after.0, |client| Box::pin(works::get(client, id)))
        .await?;
    found(work, id)
}

/// One work.
#[utoipa::path(get, path = "/works/{id}", tag = "works", operation_id = "getWork",
    params(WorkId),
    responses(
        (status = 200, description = "The work.", body = Work),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ))]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
    _: web::Query<NoQuery>,
    after: ReadAfter,
) -> Result<HttpResponse, ApiError> {
    get_work(&state, &id, after).await
}

/// A work's events, oldest first.
#[utoipa::path(get, path = "/works/{id}/events", tag = "works", operation_id = "getWorkEvents",
    params(WorkId),
    responses(
        (status = 200, description = "The events, oldest first.", body = Vec<Event>),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ))]
pub async fn events(
    state: web::Data<AppState>,
    id: web::Path<String>,
    _: web::Query<NoQuery>,
    after: ReadAfter,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let events = state
        .reads
        .run_found(after.0, |client| Box::pin(works::events(client, id)))
        .await?;
    found(events, id)
}

/// Put a failed or expired work back to pending.
#[utoipa::path(post, path = "/works/{id}/retry", tag = "works", operation_id = "retryWork",
    description = "Resets its attempts and records a `work/retried` event; the sweep window \
        starts again. Any other status: 409.",
    params(WorkId),
    responses(
        (status = 200, description = "The work, changed.", body = Work),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn retry(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    _: web::Query<NoQuery>,
) -> Result<HttpResponse, ApiError> {
    act(&state, &req, &id, Action::Retry).await
}

/// Cancel a pending work.
#[utoipa::path(post, path = "/works/{id}/cancel", tag = "works", operation_id = "cancelWork",
    description = "Records a `work/cancelled` event. Any other status (a running work too, \
        whose worker would finish it anyway): 409.",
    params(WorkId),
    responses(
        (status = 200, description = "The work, changed.", body = Work),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn cancel(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    _: web::Query<NoQuery>,
) -> Result<HttpResponse, ApiError> {
    act(&state, &req, &id, Action::Cancel).await
}

/// Retry or cancel: the work changed, 404, or 409 with the reason.
async fn act(
    state: &AppState,
    req: &HttpRequest,
    id: &str,
    action: Action,
) -> Result<HttpResponse, ApiError> {
    state.authorize(req)?;
    let id = parse_id(id)?;
    let deadline = super::deadline();
    let pool = &state.pool;
    let tokens = state.reads.replica_pool().is_some();
    let ((outcome, token), _) = retry::once_more(pool, |client, again| {
        // Called once the connection is out: on the primary's clock as it measured it.
        let deadline = Some(pool.database_time(deadline));
        Box::pin(async move {
            let outcome = actions::attempt(client, id, action, deadline, again).await?;
            let changed = matches!(outcome, actions::Outcome::Changed(_));
            let token = match changed {
                true => super::consistency::after_commit(client, tokens).await,
                false => None,
            };
            Ok((outcome, token))
        })
    })
    .await?;
    super::consistency::keep(req, token);
    let response = match outcome {
        actions::Outcome::Changed(work) => HttpResponse::Ok().json(work),
        actions::Outcome::NotFound => {
            return Err(ApiError::NotFound(format!("work {id} not found")))
        }
        actions::Outcome::Refused(reason) => return Err(ApiError::Conflict(reason)),
    };
    match action {
        Action::Retry => state.notifier.work_created(), // wakes the sweepers
        Action::Cancel => state.notifier.works_changed(),
    }
    Ok(response)
}

/// Search works, newest first.
#[utoipa::path(get, path = "/works", tag = "works", operation_id = "searchWorks",
    params(RawQuery),
    responses(
        (status = 200, description = "Matching works, newest first (highest id first).",
            body = Vec<Work>),
        (status = 400, response = BadRequest),
        (status = 503, response = Unavailable),
    ))]
pub async fn search(
    state: web::Data<AppState>,
    query: web::Query<RawQuery>,
    after: ReadAfter,
) -> Result<HttpResponse, ApiError> {
    let query = query.validate().map_err(ApiError::BadRequest)?;
    // Each read owns its copy: the read may run twice (replica, then primary).
    let (works, _) = state
        .reads
        .run(after.0, |client| {
            let query = query.clone();
            Box::pin(async move { search::search(client, &query).await })
        })
        .await?;
    Ok(HttpResponse::Ok().json(works))
}
