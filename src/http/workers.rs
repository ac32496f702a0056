//! The operator controls of `consume`: `GET /workers` (the registry, with the API
//! works each worker leases) and the pipeline's pause switch (`GET /pipeline`,
//! `POST /pipeline/pause|resume`). Both read the primary: a replica's lag would show
//! live workers as gone.

use super::error::ApiError;
use super::params::NoQuery;
use super::responses::{BadRequest, Unauthorized, Unavailable};
use super::{works::resource, AppState};
use crate::storage::pipeline::{self, PipelineState};
use crate::storage::workers::{self, Worker};
use actix_web::{web, HttpRequest, HttpResponse};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/workers", "GET").get(list))
        .service(resource("/pipeline", "GET").get(status))
        .service(resource("/pipeline/pause", "POST").post(pause))
        .service(resource("/pipeline/resume", "POST").post(resume));
}

/// The workers: every `consume` that beat within a day.
#[utoipa::path(get, path = "/workers", tag = "operations", operation_id = "listWorkers",
    description = "Each `consume` (and `up`) writes its row every 2 s. One not heard from \
        for 10 s is `gone` (killed or cut off); one that stopped gracefully is `stopped`. \
        Rows of workers gone for a day are pruned. `works` lists the API works leased to \
        the worker, with their lease end: a gone worker's stay until another claims them.",
    responses(
        (status = 200, description = "Live workers first, then by start.", body = [Worker]),
        (status = 400, response = BadRequest),
        (status = 503, response = Unavailable),
    ))]
pub async fn list(
    state: web::Data<AppState>,
    _: web::Query<NoQuery>,
) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let listed = workers::list(&client).await?;
    Ok(HttpResponse::Ok().json(listed))
}

/// Whether the pipeline is paused.
#[utoipa::path(get, path = "/pipeline", tag = "operations", operation_id = "getPipeline",
    responses(
        (status = 200, description = "The pipeline's state.", body = PipelineState),
        (status = 400, response = BadRequest),
        (status = 503, response = Unavailable),
    ))]
pub async fn status(
    state: web::Data<AppState>,
    _: web::Query<NoQuery>,
) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(pipeline::get(&client).await?))
}

/// Pause the pipeline.
#[utoipa::path(post, path = "/pipeline/pause", tag = "operations", operation_id = "pausePipeline",
    description = "Within 2 s every consumer stops taking deliveries (`basic.cancel`; what \
        the broker had sent is stored and acknowledged) and every sweeper stops claiming \
        API works. The API still accepts works: they wait as pending. Lasts until \
        resumed, across restarts: a consumer that starts while paused does not consume. \
        Pausing a paused pipeline changes nothing.",
    responses(
        (status = 200, description = "Paused.", body = PipelineState),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn pause(
    state: web::Data<AppState>,
    req: HttpRequest,
    _: web::Query<NoQuery>,
) -> Result<HttpResponse, ApiError> {
    switch(&state, &req, true).await
}

/// Resume the pipeline.
#[utoipa::path(post, path = "/pipeline/resume", tag = "operations", operation_id = "resumePipeline",
    description = "Within 2 s every consumer consumes again and sweepers claim again.",
    responses(
        (status = 200, description = "Running.", body = PipelineState),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn resume(
    state: web::Data<AppState>,
    req: HttpRequest,
    _: web::Query<NoQuery>,
) -> Result<HttpResponse, ApiError> {
    switch(&state, &req, false).await
}

async fn switch(
    state: &AppState,
    req: &HttpRequest,
    paused: bool,
) -> Result<HttpResponse, ApiError> {
    state.authorize(req)?;
    let client = state.pool.get().await?;
    let now = pipeline::set(&client, paused).await?;
    tracing::info!(pipeline = %now.state, "the pipeline was {} through the API", if paused { "paused" } else { "resumed" });
    Ok(HttpResponse::Ok().json(now))
}
