//! `/health` for load balancers and Compose, `/metrics` for Prometheus.

use super::params::NoQuery;
use super::responses::BadRequest;
use super::{works::resource, AppState};
use crate::model::WorkStatus;
use crate::storage::works;
use crate::telemetry::{StatusLabel, CONTENT_TYPE, TELEMETRY};
use actix_web::{web, HttpResponse};
use serde::Serialize;
use std::time::Duration;

/// A health check answers within this even when the database hangs.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Other methods get the JSON 405 with `Allow`, as on every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/health", "GET").get(health))
        .service(resource("/metrics", "GET").get(metrics));
}

/// The body of `GET /health`, healthy or not.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"status": "healthy", "database": "connected", "version": "0.1.0 (abc123)"}))]
pub struct Health {
    /// `healthy` when the database answered within 2 s.
    #[schema(pattern = "^(healthy|unhealthy)$")]
    status: &'static str,
    #[schema(pattern = "^(connected|unreachable)$")]
    database: &'static str,
    /// `ppctl --version`: the package version and the build's revision.
    version: &'static str,
}

async fn database_ok(state: &AppState) -> bool {
    let check = async {
        let client = state.pool.get().await.ok()?;
        client.simple_query("SELECT 1").await.ok()
    };
    matches!(
        tokio::time::timeout(CHECK_TIMEOUT, check).await,
        Ok(Some(_))
    )
}

/// Liveness and database reachability, for load balancers and Compose.
#[utoipa::path(get, path = "/health", tag = "operations", operation_id = "health",
    responses(
        (status = 200, description = "Healthy: the database answered.", body = Health),
        (status = 400, response = BadRequest),
        (status = 503, description = "Unhealthy: the database did not answer within 2 s.",
            body = Health),
    ))]
pub async fn health(state: web::Data<AppState>, _: web::Query<NoQuery>) -> HttpResponse {
    let version = crate::cli::VERSION;
    if database_ok(&state).await {
        HttpResponse::Ok().json(Health {
            status: "healthy",
            database: "connected",
            version,
        })
    } else {
        HttpResponse::ServiceUnavailable().json(Health {
            status: "unhealthy",
            database: "unreachable",
            version,
        })
    }
}

/// Prometheus metrics of this server (the database's gauges are the same from every
/// replica).
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4.",
            content_type = "text/plain", body = String),
        (status = 400, response = BadRequest),
    ))]
pub async fn metrics(state: web::Data<AppState>, _: web::Query<NoQuery>) -> HttpResponse {
    // Table-wide gauges come from the database, so every replica reports the same.
    let counts = async {
        let client = state.pool.get().await.ok()?;
        works::count_by_status(&client).await.ok()
    };
    let counts = tokio::time::timeout(CHECK_TIMEOUT, counts)
        .await
        .ok()
        .flatten();
    let t = &TELEMETRY;
    t.database_up.set(i64::from(counts.is_some()));
    // Every status is reported, at 0 when it has no works; with the database out of
    // reach the last counts stay (ppctl_database_up says so).
    if let Some(counts) = counts {
        for status in WorkStatus::ALL {
            let n = counts.iter().find(|(s, _)| s == status.as_str());
            let label = StatusLabel {
                status: status.as_str(),
            };
            t.works.get_or_create(&label).set(n.map_or(0, |(_, n)| *n));
        }
    }
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(super::exporter::render(Some(&state.pool)))
}
