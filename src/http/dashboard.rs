//! The live dashboard: the page itself (GET /), the numbers it charts (GET /stats) and
//! its event stream (GET /works/stream). The page is one self-contained HTML file with
//! inline CSS and JS, compiled into the binary, so it works offline and needs no build.
//! Registered before the works routes, so `/works/stream` is not taken for a work id.

use super::{error::ApiError, live, works::resource, AppState};
use crate::model::WorkStatus;
use crate::storage::{stats, works};
use actix_web::{http::header, web, HttpResponse};
use serde::Serialize;
use std::collections::BTreeMap;

const PAGE: &str = include_str!("dashboard.html");

/// The throughput chart: works done per 10 s over the last 10 minutes.
const BUCKET_SECS: i64 = 10;
const BUCKETS: i64 = 60;

/// Other methods get the same JSON 405 as the works routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/", "GET").get(page))
        .service(resource("/stats", "GET").get(get_stats))
        .service(resource("/works/stream", "GET").get(stream));
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        // Small enough to fetch every time; a cached copy would outlive an upgrade.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(PAGE)
}

/// How long one `/stats` answer is reused: however many dashboards poll one server, the
/// database sees at most one count per second from it.
const STATS_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// The last `/stats` answer and when it was computed.
pub type StatsCache = tokio::sync::Mutex<Option<(std::time::Instant, Stats)>>;

/// The body of `GET /stats`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Every status, zero included, so the page need not know the list.
    counts: BTreeMap<&'static str, i64>,
    throughput: Vec<stats::Bucket>,
    bucket_seconds: i64,
    /// Messages in the dead-letter queue, as last sampled (every 5 s) by this process;
    /// null until the broker has answered once.
    dead_letter: Option<u64>,
}

async fn get_stats(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // Held while computing, so concurrent pollers wait for one answer, not ask again.
    let mut cache = state.stats_cache.lock().await;
    if let Some((_, stats)) = cache.as_ref().filter(|(at, _)| at.elapsed() < STATS_TTL) {
        return Ok(HttpResponse::Ok().json(stats));
    }
    let stats = compute_stats(&state).await?;
    *cache = Some((std::time::Instant::now(), stats.clone()));
    Ok(HttpResponse::Ok().json(stats))
}

async fn compute_stats(state: &AppState) -> Result<Stats, ApiError> {
    let client = state.pool.get().await?;
    let mut counts: BTreeMap<&'static str, i64> =
        WorkStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for (status, n) in works::count_by_status(&client).await? {
        if let Ok(status) = status.parse::<WorkStatus>() {
            counts.insert(status.as_str(), n);
        }
    }
    let throughput = stats::throughput(&client, BUCKET_SECS, BUCKETS).await?;
    Ok(Stats {
        counts,
        throughput,
        bucket_seconds: BUCKET_SECS,
        dead_letter: crate::telemetry::TELEMETRY.dead_letters(),
    })
}

/// Server-Sent Events of work changes; see `live::event_stream` for the messages.
async fn stream(state: web::Data<AppState>) -> HttpResponse {
    let subscription = state.live.subscribe();
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Tells a buffering reverse proxy (nginx) to pass each message on at once.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(live::event_stream(subscription))
}
