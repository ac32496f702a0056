//! `/health` for load balancers and Compose, `/metrics` for Prometheus.

use super::params::NoQuery;
use super::responses::BadRequest;
use super::{works::resource, AppState};
use crate::model::WorkStatus;
use crate::storage::pipeline;
use crate::storage::replica::ReplicaHealth;
use crate::storage::role::{self, ServerRole};
use crate::storage::{workers, works, DbError};
use crate::telemetry::{StateLabel, StatusLabel, CONTENT_TYPE, TELEMETRY};
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
    "writable": true, "tls": true, "tls_version": "TLSv1.3", "version": "0.1.0 (abc123)"}))]
pub struct Health {
    /// `healthy` when the database answered within 2 s and takes writes.
    #[schema(pattern = "^(healthy|unhealthy)$")]
    status: &'static str,
    /// `read-only`: the server the pool reached refuses writes (a standby, or a demoted
    /// primary, or no host takes writes); the pool then reconnects through
    /// `target_session_attrs`. `commits-waiting`: commits wait for a synchronous standby
    /// that is not there. `schema`: the migrations differ from this binary's. `error`
    /// says what to do.
    #[schema(pattern = "^(connected|read-only|commits-waiting|schema|unreachable)$")]
    database: &'static str,
    /// The server the pool is on (`IP:PORT`), when it answered; when no server takes
    /// writes, the hosts of `DATABASE_URL` that were tried.
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    /// Whether that server takes writes.
    writable: bool,
    /// `unknown (needs pg_monitor)`: commits wait for a synchronous standby
    /// (`synchronous_standby_names` is set) and this role cannot see whether one is
    /// streaming. Not a fault: the check stays healthy. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    replication: Option<&'static str>,
    /// Whether the pool's connection to that server is encrypted, as the server's
    /// `pg_stat_ssl` says; absent when it did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<bool>,
    /// The TLS version of that connection (`TLSv1.3`), when encrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_version: Option<String>,
    /// With `--database-read-url`: the replica the read-only routes use.
    #[serde(skip_serializing_if = "Option::is_none")]
    replica: Option<ReplicaHealth>,
    /// What to do, when there is something to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// `paused` after `ppctl pipeline pause` (still healthy: the API takes works, which
    /// wait as pending), `running` otherwise; absent when the database did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(paused|running)$")]
    pipeline: Option<&'static str>,
    /// `ppctl --version`: the package version and the build's revision.
    version: &'static str,
}

/// What the check found.
enum Found {
    Server(ServerRole),
    /// The pool could open no connection to a server that takes writes: a switchover
    /// in progress (every host answers, none is the primary). The driver's error.
    NoWritable(DbError),
    /// The migrations differ from this binary's: the message says what to run.
    Schema(String),
    /// No answer within the bound, or the connection failed (why, when known).
    Unreachable(Option<DbError>),
}

/// What the server is, and whether the pipeline is paused (`None`: unknown).
async fn check(state: &AppState) -> (Found, Option<bool>) {
    let check = async {
        let client = state.pool.get().await?;
        let role = role::server_role(&client).await.map_err(DbError::from)?;
        // A pause is not a fault: the check stays healthy, and says so.
        let paused = pipeline::get(&client).await.ok().map(|p| p.paused);
        Ok((role, paused))
    };
    let found = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok((role, paused))) => return (Found::Server(role), paused),
        Ok(Err(e @ DbError::Schema(_))) => Found::Schema(e.to_string()),
        // tokio-postgres's word when target_session_attrs=read-write skipped every host.
        // (In the error chain: DbError keeps the driver's causes.)
        Ok(Err(e)) if e.to_string().contains("does not allow writes") => Found::NoWritable(e),
        Ok(Err(e)) => Found::Unreachable(Some(e)),
        Err(_) => Found::Unreachable(None),
    };
    (found, None)
}

/// Liveness, and whether the database takes writes, for load balancers and Compose.
#[utoipa::path(get, path = "/health", tag = "operations", operation_id = "health",
    responses(
        (status = 200, description = "Healthy: the database answered and takes writes.", body = Health),
        (status = 400, response = BadRequest),
        (status = 503, description = "Unhealthy: the database did not answer within 2 s, no \
            server takes writes, commits wait for a missing synchronous standby, or the \
            schema does not fit this binary.", body = Health),
    ))]
pub async fn health(state: web::Data<AppState>, _: web::Query<NoQuery>) -> HttpResponse {
    let (found, paused) = check(&state).await;
    // No server takes writes: the hosts tried stand where the server's would.
    let tried = matches!(found, Found::NoWritable(_)).then(|| state.pool.target().hosts());
    let (database, role, error) = match found {
        Found::Server(r) if !r.writable => {
            // Writes would fail on this server: have the pool look for the primary.
            role::lost(&format!("/health found {} read-only", r.host));
            ("read-only", Some(r), None)
        }
        Found::Server(r) if r.commits_wait == Some(true) => {
            let why = "every commit waits: synchronous_standby_names is set and no synchronous standby is streaming (clear it, or bring a standby back)";
            ("commits-waiting", Some(r), Some(why.to_string()))
        }
        Found::Server(r) => ("connected", Some(r), None),
        Found::NoWritable(e) => {
            let why =
                format!("no server of DATABASE_URL takes writes (a switchover in progress?): {e}");
            ("read-only", None, Some(why))
        }
        Found::Schema(e) => ("schema", None, Some(e)),
        Found::Unreachable(why) => {
            // A refused certificate, a refused login: the operator's only clue.
            let why = why.map_or_else(
                || format!("no answer within {CHECK_TIMEOUT:?}"),
                |e| e.to_string(),
            );
            tracing::warn!(error = %why, "health check: database unreachable");
            ("unreachable", None, None)
        }
    };
    let healthy = database == "connected";
    let replication = match &role {
        Some(r) if r.commits_wait.is_none() => Some("unknown (needs pg_monitor)"),
        _ => None,
    };
    let body = Health {
        replication,
        status: if healthy { "healthy" } else { "unhealthy" },
        database,
        writable: role.as_ref().is_some_and(|r| r.writable),
        tls: role.as_ref().map(|r| r.tls.is_some()),
        tls_version: role.as_ref().and_then(|r| r.tls.clone()),
        host: role.map(|r| r.host).or(tried),
        replica: state.reads.health(),
        error,
        pipeline: paused.map(pipeline::word),
        version: crate::VERSION,
    };
    match healthy {
        true => HttpResponse::Ok().json(body),
        false => HttpResponse::ServiceUnavailable()
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
        let counted = reads.run(None, |client| Box::pin(works::count_by_status(client)));
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
    operator_gauges(&state).await;
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(super::exporter::render_with_replica(
            &state.worker_pools,
            state.reads.replica_pool(),
        ))
}

/// `ppctl_workers{state}` and `ppctl_pipeline_paused`, from the primary (a replica's
/// lag would count live workers as gone); unchanged when it does not answer.
async fn operator_gauges(state: &AppState) {
    let read = async {
        let client = state.pool.get().await.ok()?;
        let listed = workers::list(&client).await.ok()?;
        let paused = pipeline::get(&client).await.ok()?.paused;
        Some((listed, paused))
    };
    let Ok(Some((listed, paused))) = tokio::time::timeout(CHECK_TIMEOUT, read).await else {
        return;
    };
    let t = &TELEMETRY;
    for (state, n) in workers::count_by_state(&listed) {
        t.workers.get_or_create(&StateLabel { state }).set(n);
    }
    t.pipeline_paused.set(i64::from(paused));
}
