//! `--metrics-addr` for `consume` and `produce`: a one-route server exposing the
//! process's telemetry (and its pool's usage) to Prometheus.

use crate::shutdown::Shutdown;
use crate::storage::PgPool;
use crate::telemetry::{Group, StateLabel, CONTENT_TYPE, TELEMETRY};
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use prometheus_client::metrics::{family::Family, gauge::Gauge};
use std::net::SocketAddr;

/// Sets the pool's usage gauges (when the process has a pool), then renders the
/// process's registry: the one way every `/metrics` answers.
pub fn render(pool: Option<&PgPool>) -> String {
    render_with_replica(pool, None)
}

/// `render`, with serve's replica pool beside the primary's.
pub fn render_with_replica(pool: Option<&PgPool>, replica: Option<&PgPool>) -> String {
    if let Some(pool) = pool {
        TELEMETRY.register(Group::Pool);
        set_usage(&TELEMETRY.pool_connections, pool);
        let waiting = pool.status().waiting;
        TELEMETRY
            .pool_waiting
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }
    if let Some(replica) = replica {
        TELEMETRY.register(Group::Replica);
        set_usage(&TELEMETRY.replica_connections, replica);
    }
    TELEMETRY.render()
}

fn set_usage(family: &Family<StateLabel, Gauge>, pool: &PgPool) {
    let status = pool.status();
    for (state, n) in [
        ("open", status.size),
        ("idle", status.available),
        ("max", status.max_size),
    ] {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        family.get_or_create(&StateLabel { state }).set(n);
    }
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
