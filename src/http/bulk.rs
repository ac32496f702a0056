//! `POST /works/retry` and `POST /works/cancel`: an operator's action over every work a
//! search filter matches (Sidekiq Web's "Retry All", Oban Web's bulk actions), up to a
//! maximum, with a dry run that only counts.

use super::responses::{BadRequest, Conflict, Unauthorized, Unavailable};
use super::works::resource;
use super::{error::ApiError, AppState};
use crate::query::bulk::RawBulk;
use crate::storage::actions::Action;
use crate::storage::bulk::{self, BulkError, BulkOutcome};
use actix_web::{web, HttpRequest, HttpResponse};

/// Before `works::routes`: `/works/{id}` would take `/works/retry` for a work id.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/works/retry", "POST").post(retry_all))
        .service(resource("/works/cancel", "POST").post(cancel_all));
}

/// Retry every failed or expired work the filter matches.
#[utoipa::path(post, path = "/works/retry", tag = "works", operation_id = "retryWorks",
    description = "Puts back to pending, with a `work/retried` event each, up to `max` \
        failed or expired works that match the search filters, newest first, in batches of \
        500 (each committed on its own). `more` says that matching works remain: past \
        `max`, or when the request ran out of time (it stops starting batches 2 s in).",
    params(RawBulk),
    responses(
        (status = 200, description = "What was changed (or, in a dry run, counted).",
            body = BulkOutcome),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn retry_all(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<RawBulk>,
) -> Result<HttpResponse, ApiError> {
    act_all(&state, &req, &query, Action::Retry).await
}

/// Cancel every pending or scheduled work the filter matches.
#[utoipa::path(post, path = "/works/cancel", tag = "works", operation_id = "cancelWorks",
    description = "Cancels, with a `work/cancelled` event each, up to `max` pending or scheduled works \
        that match the search filters, newest first, in batches of 500 (each committed on \
        its own). `more` says that matching works remain.",
    params(RawBulk),
    responses(
        (status = 200, description = "What was changed (or, in a dry run, counted).",
            body = BulkOutcome),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn cancel_all(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<RawBulk>,
) -> Result<HttpResponse, ApiError> {
    act_all(&state, &req, &query, Action::Cancel).await
}

async fn act_all(
    state: &AppState,
    req: &HttpRequest,
    raw: &RawBulk,
    action: Action,
) -> Result<HttpResponse, ApiError> {
    state.authorize(req)?;
    let query = raw.validate().map_err(ApiError::BadRequest)?;
    let client = state.pool.get().await?;
    // Batches stop a second before the request's deadline, so the answer is sent.
    let stop_at = super::deadline() - std::time::Duration::from_secs(1);
    let outcome = match bulk::apply(&client, action, &query, stop_at).await {
        Ok(outcome) => outcome,
        Err(BulkError::Refused(reason)) => return Err(ApiError::Conflict(reason)),
        Err(BulkError::Db { changed, error }) => {
            tracing::warn!(changed, action = action.as_str(), "bulk action cut short");
            return Err(error.into());
        }
    };
    if outcome.changed > 0 {
        match action {
            Action::Retry => state.notifier.work_created(), // wakes the sweepers
            Action::Cancel => state.notifier.works_changed(),
        }
    }
    Ok(HttpResponse::Ok().json(outcome))
}
