//! `--metrics-addr` for `consume` and `produce`: a one-route server exposing the
//! process's telemetry (and its pool's usage) to Prometheus.

use crate::shutdown::Shutdown;
use crate::storage::PgPool;
use crate::telemetry::TELEMETRY;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use std::fmt::Write;
use std::net::SocketAddr;

/// Prometheus' text format version.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Appends the pool's usage gauges.
pub fn render_pool(pool: &PgPool, out: &mut String) {
    let status = pool.status();
    let _ = writeln!(out, "# TYPE ppctl_db_pool_connections gauge");
    for (state, n) in [
        ("open", status.size),
        ("idle", status.available),
        ("max", status.max_size),
    ] {
        let _ = writeln!(out, "ppctl_db_pool_connections{{state=\"{state}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# TYPE ppctl_db_pool_waiting gauge\nppctl_db_pool_waiting {}",
        status.waiting
    );
}

async fn metrics(pool: web::Data<Option<PgPool>>) -> HttpResponse {
    let mut out = String::with_capacity(2048);
    TELEMETRY.render(&mut out);
    if let Some(pool) = pool.as_ref() {
        render_pool(pool, &mut out);
    }
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(out)
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
