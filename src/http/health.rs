//! `/health` for load balancers and Compose, `/metrics` for Prometheus.

use super::params::NoQuery;
use super::responses::BadRequest;
use super::{works::resource, AppState};
use crate::model::WorkStatus;
use crate::storage::replica::ReplicaHealth;
use crate::storage::role::{self, ServerRole};
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
#[schema(example = json!({"status": "healthy", "database": "connected", "host": "10.0.0.5:5432",
    "writable": true, "version": "0.1.0 (abc123)"}))]
pub struct Health {
    /// `healthy` when the database answered within 2 s and takes writes.
    #[schema(pattern = "^(healthy|unhealthy)$")]
    status: &'static str,
    /// `read-only`: the server the pool reached refuses writes (a standby, or a demoted
    /// primary); the pool then reconnects through `target_session_attrs`.
    #[schema(pattern = "^(connected|read-only|unreachable)$")]
    database: &'static str,
    /// The server the pool is on (`IP:PORT`), when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    /// Whether that server takes writes.
    writable: bool,
    /// With `--database-read-url`: the replica the read-only routes use.
    #[serde(skip_serializing_if = "Option::is_none")]
    replica: Option<ReplicaHealth>,
    /// `ppctl --version`: the package version and the build's revision.
    version: &'static str,
}

/// The server the pool is on, within the check's time.
async fn server_role(state: &AppState) -> Option<ServerRole> {
    let check = async {
        let client = state.pool.get().await.ok()?;
        role::server_role(&client).await.ok()
    };
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .ok()
        .flatten()
}

/// Liveness, and whether the database takes writes, for load balancers and Compose.
#[utoipa::path(get, path = "/health", tag = "operations", operation_id = "health",
    responses(
        (status = 200, description = "Healthy: the database answered and takes writes.", body = Health),
        (status = 400, response = BadRequest),
        (status = 503, description = "Unhealthy: the database did not answer within 2 s, or \
            the server the pool reached refuses writes.", body = Health),
    ))]
pub async fn health(state: web::Data<AppState>, _: web::Query<NoQuery>) -> HttpResponse {
    let role = server_role(&state).await;
    let (status, database) = match &role {
        Some(r) if r.writable => ("healthy", "connected"),
        Some(r) => {
            // Writes would fail on this server: have the pool look for the primary.
            role::lost(&format!("/health found {} read-only", r.host));
            ("unhealthy", "read-only")
        }
        None => ("unhealthy", "unreachable"),
    };
    let body = Health {
        status,
        database,
        writable: role.as_ref().is_some_and(|r| r.writable),
        host: role.map(|r| r.host),
        replica: state.reads.health(),
        version: crate::cli::VERSION,
    };
    match status {
        "healthy" => HttpResponse::Ok().json(body),
        _ => HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(body),
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
        let reads = &state.reads;
        let counted = reads.run(|client| async move { works::count_by_status(&client).await });
        counted.await.ok().map(|(counts, _)| counts)
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
        .body(super::exporter::render_with_replica(
            Some(&state.pool),
            state.reads.replica_pool(),
        ))
}
