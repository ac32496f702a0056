//! `/health` for load balancers and Compose, `/metrics` for Prometheus.

use super::AppState;
use crate::storage::works;
use actix_web::{web, HttpResponse};
use std::fmt::Write;
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
    let mut out = String::with_capacity(4096);
    state.metrics.render(&mut out);
    crate::telemetry::TELEMETRY.render(&mut out);
    super::exporter::render_pool(&state.pool, &mut out);
    // Table-wide gauges come from the database, so every replica reports the same.
    let counts = async {
        let client = state.pool.get().await.ok()?;
        works::count_by_status(&client).await.ok()
    };
    let counts = tokio::time::timeout(CHECK_TIMEOUT, counts)
        .await
        .ok()
        .flatten();
    let _ = writeln!(out, "# TYPE ppctl_database_up gauge");
    let _ = writeln!(out, "ppctl_database_up {}", u8::from(counts.is_some()));
    let _ = writeln!(out, "# TYPE ppctl_works gauge");
    for (status, n) in counts.unwrap_or_default() {
        let _ = writeln!(out, "ppctl_works{{status=\"{status}\"}} {n}");
    }
    HttpResponse::Ok()
        .content_type(super::exporter::CONTENT_TYPE)
        .body(out)
}
