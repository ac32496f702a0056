//! The original project's routes, kept for its clients: `POST /work` answers 200 (no
//! `Location`), `GET /work/{id}` and `GET /work/search` the same Work shape and a bare
//! array. They share the works routes' code; only their documents are their own.

use super::consistency::ReadAfter;
use super::params::{IdempotencyKey, NoQuery, WorkId};
use super::responses::{
    BadRequest, NotFound, PayloadTooLarge, RequestTimeout, Unauthorized, Unavailable, Unprocessable,
};
use super::works::{self, resource};
use super::{error::ApiError, AppState};
use crate::demand::CreateWork;
use crate::model::Work;
use crate::query::RawQuery;
use actix_web::{web, HttpRequest, HttpResponse};

/// The original project's routes, beside ppctl's own (`works::routes`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/work", "POST").post(create))
        .service(resource("/work/search", "GET").get(search))
        .service(resource("/work/{id}", "GET").get(get));
}

/// Create a work (the original route: 200, no `Location`).
#[utoipa::path(post, path = "/work", tag = "legacy", operation_id = "legacyCreateWork",
    description = "Takes an `Idempotency-Key` as `POST /works` does.",
    params(IdempotencyKey),
    request_body(content = Option<CreateWork>, description = "Optional: an empty body or `{}` asks \
        for a random `add_up_to` in 1..=100. Unknown fields are refused."),
    responses(
        (status = 200, description = "Created, or made before under this `Idempotency-Key`.",
            body = Work,
            headers(("Idempotent-Replayed" = String, description = "`true` when an earlier \
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
    Ok(super::create::insert(&state, &req, payload)
        .await?
        .answer(HttpResponse::Ok()))
}

/// One work (the original route).
#[utoipa::path(get, path = "/work/{id}", tag = "legacy", operation_id = "legacyGetWork",
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
    works::get_work(&state, &id, after).await
}

/// Search works (the original route), newest first.
#[utoipa::path(get, path = "/work/search", tag = "legacy", operation_id = "legacySearchWorks",
    description = "Takes the same parameters as `GET /works`; the original clients send only \
        `work_code`.",
    params(RawQuery),
    responses(
        (status = 200, description = "Matching works, a bare array.", body = Vec<Work>),
        (status = 400, response = BadRequest),
        (status = 503, response = Unavailable),
    ))]
pub async fn search(
    state: web::Data<AppState>,
    query: web::Query<RawQuery>,
    after: ReadAfter,
) -> Result<HttpResponse, ApiError> {
    works::search(state, query, after).await
}
