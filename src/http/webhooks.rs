//! `GET /webhooks/deliveries` and the redeliveries: `ppctl webhook list|redeliver` over
//! HTTP, for the dashboard's panel. Reads go to the primary (the outbox changes by the
//! second; a replica's copy would show deliveries as pending that are done).

use super::error::ApiError;
use super::params::NoQuery;
use super::responses::{BadRequest, NotFound, Unauthorized, Unavailable};
use super::{works::resource, AppState};
use crate::storage::webhooks as outbox;
use crate::webhook::{Delivery, DeliveryState};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;
/// The most one bulk redelivery makes due again; call it again for more.
const REDELIVER_AT_ONCE: i64 = 10_000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/webhooks/deliveries", "GET").get(list))
        .service(resource("/webhooks/deliveries/redeliver-failed", "POST").post(redeliver_failed))
        .service(resource("/webhooks/deliveries/{id}/redeliver", "POST").post(redeliver));
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only deliveries in this state.
    status: Option<DeliveryState>,
    /// At most this many, newest first; default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Only deliveries with a lower id: the last id of a page gives the next.
    before_id: Option<i64>,
}

/// The `{id}` of a delivery.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // a description: the handler reads `web::Path<String>`
pub struct DeliveryId {
    /// The delivery id; anything but an integer is a 400, an unknown one a 404.
    #[param(minimum = -9223372036854775808_i64, maximum = 9223372036854775807_i64)]
    id: i64,
}

/// What a bulk redelivery did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Redelivered {
    /// Failed deliveries made due again (at most 10000 per call).
    pub redelivered: u64,
}

/// Webhook deliveries, newest first.
#[utoipa::path(get, path = "/webhooks/deliveries", tag = "webhooks",
    operation_id = "listWebhookDeliveries",
    params(ListQuery),
    responses(
        (status = 200, description = "Deliveries, newest first (highest id first).",
            body = Vec<Delivery>),
        (status = 400, response = BadRequest),
        (status = 503, response = Unavailable),
    ))]
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1..={MAX_LIMIT}, got {limit}"
        )));
    }
    let client = state.pool.get().await?;
    let found = outbox::list(&client, query.status, limit, query.before_id).await?;
    Ok(HttpResponse::Ok().json(found))
}

/// Send a delivery again.
#[utoipa::path(post, path = "/webhooks/deliveries/{id}/redeliver", tag = "webhooks",
    operation_id = "redeliverWebhook",
    description = "Whatever its state: due now, with the same `webhook-id` and a new retry \
        period. A consumer with `--webhook-url` sends it.",
    params(DeliveryId),
    responses(
        (status = 200, description = "The delivery, pending again.", body = Delivery),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn redeliver(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    _: web::Query<NoQuery>,
) -> Result<HttpResponse, ApiError> {
    state.authorize(&req)?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::bad_request(format!("delivery id must be an integer, got {:?}", *id))
    })?;
    let client = state.pool.get().await?;
    match outbox::redeliver(&client, id).await? {
        Some(delivery) => Ok(HttpResponse::Ok().json(delivery)),
        None => Err(ApiError::NotFound(format!("delivery {id} not found"))),
    }
}

/// Send every failed delivery again.
#[utoipa::path(post, path = "/webhooks/deliveries/redeliver-failed", tag = "webhooks",
    operation_id = "redeliverFailedWebhooks",
    description = "Up to 10000 failed deliveries, oldest first, made due now with their \
        `webhook-id` and a new retry period.",
    responses(
        (status = 200, description = "How many were made due again.", body = Redelivered),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn redeliver_failed(
    state: web::Data<AppState>,
    req: HttpRequest,
    _: web::Query<NoQuery>,
) -> Result<HttpResponse, ApiError> {
    state.authorize(&req)?;
    let client = state.pool.get().await?;
    let redelivered = outbox::redeliver_failed(&client, REDELIVER_AT_ONCE).await?;
    Ok(HttpResponse::Ok().json(Redelivered { redelivered }))
}
