//! `/health` for load balancers and Compose, `/metrics` for Prometheus.

use super::AppState;
use crate::model::WorkStatus;
use crate::storage::works;
use crate::telemetry::{StatusLabel, CONTENT_TYPE, TELEMETRY};
use actix_web::{web, HttpResponse};
use std::time::Duration;

/// A health check answers within this even when the database hangs.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/metrics", web::get().to(metrics));
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

async fn health(state: web::Data<AppState>) -> HttpResponse {
    let version = crate::cli::VERSION;
    if database_ok(&state).await {
        HttpResponse::Ok().json(
            serde_json::json!({"status": "healthy", "database": "connected", "version": version}),
        )
    } else {
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "unhealthy", "database": "unreachable", "version": version}))
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
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
