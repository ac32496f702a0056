//! `--metrics-addr` for `consume` and `produce`: a one-route server exposing the
//! process's telemetry (and its pool's usage) to Prometheus.

use crate::shutdown::Shutdown;
use crate::storage::PgPool;
use crate::telemetry::{Group, StateLabel, CONTENT_TYPE, TELEMETRY};
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use std::net::SocketAddr;

/// Sets the pool's usage gauges (when the process has a pool), then renders the
/// process's registry: the one way every `/metrics` answers.
pub fn render(pool: Option<&PgPool>) -> String {
    if let Some(pool) = pool {
        let status = pool.status();
        TELEMETRY.register(Group::Pool);
        for (state, n) in [
            ("open", status.size),
            ("idle", status.available),
            ("max", status.max_size),
        ] {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            TELEMETRY
                .pool_connections
                .get_or_create(&StateLabel { state })
                .set(n);
        }
        TELEMETRY
            .pool_waiting
            .set(i64::try_from(status.waiting).unwrap_or(i64::MAX));
    }
    TELEMETRY.render()
}

async fn metrics(pool: web::Data<Option<PgPool>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(render(pool.as_ref().as_ref()))
}

/// Serves `GET /metrics` on `addr` until shutdown.
pub fn spawn(addr: SocketAddr, pool: Option<PgPool>, shutdown: Shutdown) -> anyhow::Result<()> {
    let pool = web::Data::new(pool);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(pool.clone())
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)
    .with_context(|| format!("cannot listen on {addr} for metrics"))?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    tokio::spawn(async move {
        shutdown.wait().await;
        handle.stop(true).await;
    });
    tracing::info!(%addr, "serving metrics");
    Ok(())
}
