//! The works routes, and the original project's `/work` routes kept for its clients.

use super::{error::ApiError, AppState};
use crate::model::{from_json_object, new_work_code, CreateWork, Origin, Work};
use crate::query::RawQuery;
use crate::storage::actions::{self, Action};
use crate::storage::{search, works};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use rand::Rng;
use std::time::{Duration, SystemTime};

/// Largest request body accepted; a work demand is a few dozen bytes.
pub const MAX_BODY: usize = 16 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/works", "GET, POST").get(search).post(create))
        .service(resource("/works/{id}", "GET").get(get))
        .service(resource("/works/{id}/events", "GET").get(events))
        .service(
            resource("/works/{id}/retry", "POST")
                .post(|state, req, id| act(state, req, id, Action::Retry)),
        )
        .service(
            resource("/works/{id}/cancel", "POST")
                .post(|state, req, id| act(state, req, id, Action::Cancel)),
        )
        .service(resource("/work", "POST").post(legacy_create))
        .service(resource("/work/search", "GET").get(search))
        .service(resource("/work/{id}", "GET").get(get));
}

/// A resource whose other methods get a JSON 405 listing the allowed ones.
pub fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        HttpResponse::from(ApiError::MethodNotAllowed(allow))
    }))
}

/// How long the body may take to arrive: a client that sends less than its
/// Content-Length gets a 408 well before the request's own bound (a 503).
const BODY_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads the body up to `MAX_BODY`, answering 413 past it without reading the rest.
pub(super) async fn read_body(payload: web::Payload) -> Result<web::BytesMut, ApiError> {
    tokio::time::timeout(BODY_TIMEOUT, read_all(payload))
        .await
        .map_err(|_| ApiError::BodyTimeout(BODY_TIMEOUT))?
}

async fn read_all(mut payload: web::Payload) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::PayloadTooLarge(MAX_BODY));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The `add_up_to` asked for, or a random 1..=100 for an empty body or `{}`.
fn parse_create(body: &[u8]) -> Result<i64, ApiError> {
    let request: CreateWork = if body.iter().all(u8::is_ascii_whitespace) {
        CreateWork::default()
    } else {
        from_json_object(body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    match request.add_up_to {
        None => Ok(rand::rng().random_range(1..=100)),
        Some(n) => crate::engine::validate(n)
            .map(|n| n as i64)
            .map_err(|e| ApiError::bad_request(e.to_string())),
    }
}

async fn insert(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Work, ApiError> {
    // Past this the client has been told 503 (see `http::REQUEST_TIMEOUT`): the
    // database must not create the work any later.
    let deadline = SystemTime::now() + super::REQUEST_TIMEOUT - Duration::from_secs(1);
    state.authorize(req)?;
    let add_up_to = parse_create(&read_body(payload).await?)?;
    let client = state.pool.get().await?;
    let code = new_work_code(Origin::Api);
    let work = works::create_pending(&client, &code, add_up_to, Some(deadline)).await?;
    crate::telemetry::TELEMETRY.works_created.inc();
    state.notifier.work_created();
    Ok(work)
}

async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let work = insert(&state, &req, payload).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/works/{}", work.id)))
        .json(work))
}

async fn legacy_create(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(insert(&state, &req, payload).await?))
}

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::bad_request(format!("work id must be an integer, got {raw:?}")))
}

/// 200 with the value, or the JSON 404 for an unknown work.
fn found<T: serde::Serialize>(value: Option<T>, id: i64) -> Result<HttpResponse, ApiError> {
    let value = value.ok_or_else(|| ApiError::NotFound(format!("work {id} not found")))?;
    Ok(HttpResponse::Ok().json(value))
}

async fn get(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let client = state.pool.get().await?;
    found(works::get(&client, id).await?, id)
}

async fn events(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let client = state.pool.get().await?;
    found(works::events(&client, id).await?, id)
}

/// `POST /works/{id}/retry` and `/cancel`: the work changed, 404, or 409 with the reason.
async fn act(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    action: Action,
) -> Result<HttpResponse, ApiError> {
    state.authorize(&req)?;
    let id = parse_id(&id)?;
    let client = state.pool.get().await?;
    let response = acted(actions::apply(&client, id, action).await?, id)?;
    match action {
        Action::Retry => state.notifier.work_created(), // wakes the sweepers
        Action::Cancel => state.notifier.works_changed(),
    }
    Ok(response)
}

/// 200 with the changed work, 404, or 409 with the reason.
fn acted(outcome: actions::Outcome, id: i64) -> Result<HttpResponse, ApiError> {
    match outcome {
        actions::Outcome::Changed(work) => Ok(HttpResponse::Ok().json(work)),
        actions::Outcome::NotFound => Err(ApiError::NotFound(format!("work {id} not found"))),
        actions::Outcome::Refused(reason) => Err(ApiError::Conflict(reason)),
    }
}

async fn search(
    state: web::Data<AppState>,
    query: web::Query<RawQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.validate().map_err(ApiError::BadRequest)?;
    let client = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(search::search(&client, &query).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies_are_validated() {
        assert_eq!(parse_create(br#"{"add_up_to": 4}"#).ok(), Some(4));
        assert!(matches!(parse_create(b""), Ok(1..=100)));
        assert!(matches!(parse_create(b"{}"), Ok(1..=100)));
        for bad in [
            &b"{"[..],
            br#"{"add_up_to": -1}"#,
            br#"{"add_up_to": "4"}"#,
            br#"{"add_upto": 4}"#,
            b"[]",
        ] {
            assert!(
                matches!(parse_create(bad), Err(ApiError::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
