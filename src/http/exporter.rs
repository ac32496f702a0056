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
    render_with_replica(pool.map_or(&[], std::slice::from_ref), None)
}

/// `render`, for serve: its HTTP workers' pools summed, and the replica pool beside.
pub fn render_with_replica(pools: &[PgPool], replica: Option<&PgPool>) -> String {
    if !pools.is_empty() {
        TELEMETRY.register(Group::Pool);
        set_usage(&TELEMETRY.pool_connections, pools);
        let waiting: usize = pools.iter().map(|p| p.status().waiting).sum();
        TELEMETRY
            .pool_waiting
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }
    if let Some(replica) = replica {
        TELEMETRY.register(Group::Replica);
        set_usage(
            &TELEMETRY.replica_connections,
            std::slice::from_ref(replica),
        );
    }
    TELEMETRY.render()
}

fn set_usage(family: &Family<StateLabel, Gauge>, pools: &[PgPool]) {
    let sum = |f: fn(&deadpool_postgres::Status) -> usize| -> i64 {
        let n: usize = pools.iter().map(|p| f(&p.status())).sum();
        i64::try_from(n).unwrap_or(i64::MAX)
    };
    for (state, n) in [
        ("open", sum(|s| s.size)),
        ("idle", sum(|s| s.available)),
        ("max", sum(|s| s.max_size)),
    ] {
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
