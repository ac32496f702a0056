//! `POST /schedules`, `GET /schedules`, `DELETE /schedules/{name}`: the periodic
//! schedules (`ppctl schedule add|list|remove` over HTTP). Writes take the token, and
//! the cross-site rules apply to them as to every write (`cross_site::refuse`).

use super::params::NoQuery;
use super::responses::{
    BadRequest, Conflict, NotFound, PayloadTooLarge, RequestTimeout, Unauthorized, Unavailable,
};
use super::works::resource;
use super::{body, error::ApiError, error::ErrorBody, AppState};
use crate::schedule::{self, When};
use crate::storage::schedules::{self as store, Schedule};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/schedules", "GET, POST").get(list).post(add))
        .service(resource("/schedules/{name}", "DELETE").delete(remove));
}

/// A schedule to add: `every` or `cron`, not both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "hourly", "every": "1h", "add_up_to": 10}))]
pub struct NewSchedule {
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,39}$")]
    pub name: String,
    /// A whole number of seconds, at least 1s, in humantime (`90s`, `1h`); slots fall on
    /// its multiples since the Unix epoch.
    pub every: Option<String>,
    /// A cron expression in UTC: 5 fields, or 6 with seconds first.
    pub cron: Option<String>,
    /// The `add_up_to` of each slot's work (an integral `4.0` counts, as for works).
    #[schema(value_type = u64, minimum = 0, maximum = 4294967295_u64)]
    pub add_up_to: serde_json::Value,
}

/// The `{name}` of a schedule.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // a description: the handler reads `web::Path<String>`
pub struct ScheduleName {
    /// Anything but a valid name is a 400, an unknown one a 404.
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,39}$")]
    name: String,
}

/// Add a periodic schedule.
#[utoipa::path(post, path = "/schedules", tag = "schedules", operation_id = "addSchedule",
    description = "Each slot makes one pending work (code `cron-<name>-…`) with a \
        `schedule/slot` event, inserted by whichever consumer holds the schedule. Slots \
        missed while no consumer ran are not backfilled beyond 60 s late.",
    request_body(content = NewSchedule),
    responses(
        (status = 201, description = "Added.", body = Schedule),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 408, response = RequestTimeout),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, description = "`every` and `cron` both or neither, an `every` under \
            1 s or not whole seconds, a cron expression croner refuses.", body = ErrorBody),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn add(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
    _: web::Query<NoQuery>,
) -> Result<HttpResponse, ApiError> {
    state.authorize(&req)?;
    let raw = body::read(payload).await?;
    let new: NewSchedule = crate::demand::from_json_object(&raw)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    let name = schedule::parse_name(&new.name).map_err(ApiError::BadRequest)?;
    // Well-formed JSON the document allows, which the schedule parsers refuse.
    let when = When::from_fields(new.every.as_deref(), new.cron.as_deref())
        .map_err(ApiError::Unprocessable)?;
    let n = crate::demand::add_up_to(&new.add_up_to).map_err(ApiError::BadRequest)?;
    let client = state.pool.get().await?;
    match store::add(&client, &name, &when, n as i64).await? {
        Some(added) => Ok(HttpResponse::Created()
            .insert_header(("Location", format!("/schedules/{name}")))
            .json(added)),
        None => Err(ApiError::Conflict(format!(
            "schedule {name} exists already"
        ))),
    }
}

/// List the periodic schedules, by name.
#[utoipa::path(get, path = "/schedules", tag = "schedules", operation_id = "listSchedules",
    responses(
        (status = 200, description = "Every schedule, by name.", body = Vec<Schedule>),
        (status = 400, response = BadRequest),
        (status = 503, response = Unavailable),
    ))]
pub async fn list(
    state: web::Data<AppState>,
    _: web::Query<NoQuery>,
) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(store::list(&client).await?))
}

/// Remove a periodic schedule; the works it made stay.
#[utoipa::path(delete, path = "/schedules/{name}", tag = "schedules",
    operation_id = "removeSchedule",
    params(ScheduleName),
    responses(
        (status = 200, description = "Removed: what it was.", body = Schedule),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn remove(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    _: web::Query<NoQuery>,
) -> Result<HttpResponse, ApiError> {
    state.authorize(&req)?;
    let name = schedule::parse_name(&name).map_err(ApiError::BadRequest)?;
    let client = state.pool.get().await?;
    match store::remove(&client, &name).await? {
        Some(removed) => Ok(HttpResponse::Ok().json(removed)),
        None => Err(ApiError::NotFound(format!("schedule {name} not found"))),
    }
}
