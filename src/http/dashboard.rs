//! The live dashboard: the page itself (GET /), the numbers it charts (GET /stats) and
//! its event stream (GET /works/stream). The page is one self-contained HTML file with
//! inline CSS and JS, compiled into the binary, so it works offline and needs no build.
//! Registered before the works routes, so `/works/stream` is not taken for a work id.

use super::consistency::ReadAfter;
use super::params::NoQuery;
use super::responses::{BadRequest, Unavailable};
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
        .service(resource("/favicon.ico", "GET").get(favicon))
        .service(resource("/stats", "GET").get(get_stats))
        .service(resource("/works/stream", "GET").get(stream));
}

/// The live dashboard: one self-contained HTML page (no external resources): counts,
/// throughput, recent works with filters, a work's events; live through `/works/stream`.
#[utoipa::path(get, path = "/", tag = "dashboard", operation_id = "dashboard",
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        (status = 400, response = BadRequest),
    ))]
pub async fn page(_: web::Query<NoQuery>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        // Small enough to fetch every time; a cached copy would outlive an upgrade.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(PAGE)
}

/// The page's icon, a few hundred bytes of SVG. Browsers ask for `/favicon.ico` on
/// their own: without it every visit logs a 404 in the console.
const ICON: &str = concat!(
    r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">"##,
    r##"<rect width="16" height="16" rx="3" fill="#1d2433"/>"##,
    r##"<path d="M5 13V3h3.5a3 3 0 0 1 0 6H5" fill="none" stroke="#2f6fed" stroke-width="2.2"/>"##,
    "</svg>"
);

/// The dashboard's icon (SVG, whatever the name says: browsers go by the content type).
#[utoipa::path(get, path = "/favicon.ico", tag = "dashboard", operation_id = "favicon",
    responses(
        (status = 200, description = "The icon.", content_type = "image/svg+xml", body = String),
        (status = 400, response = BadRequest),
    ))]
pub async fn favicon(_: web::Query<NoQuery>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((header::CACHE_CONTROL, "max-age=86400"))
        .body(ICON)
}

/// How long one `/stats` answer is reused: however many dashboards poll one server, the
/// database sees at most one count per second from it.
const STATS_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// The last `/stats` answer and when it was computed.
pub type StatsCache = tokio::sync::Mutex<Option<(std::time::Instant, Stats)>>;

/// The body of `GET /stats`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// Works by status, every status, zero included, so the page need not know the list.
    #[schema(value_type = BTreeMap<WorkStatus, i64>)]
    counts: BTreeMap<&'static str, i64>,
    /// Works done per bucket over the last 10 minutes, oldest first.
    throughput: Vec<stats::Bucket>,
    /// The width of a throughput bucket, in seconds.
    bucket_seconds: i64,
    /// Messages in the dead-letter queue, as last sampled (every 5 s) by this process;
    /// null until the broker has answered once.
    #[schema(required = true)]
    dead_letter: Option<u64>,
}

/// Counts by status and recent throughput, for the dashboard; computed at most once a
/// second per server.
#[utoipa::path(get, path = "/stats", tag = "dashboard", operation_id = "getStats",
    responses(
        (status = 200, description = "Counts and throughput.", body = Stats),
        (status = 400, response = BadRequest),
        (status = 503, response = Unavailable),
    ))]
pub async fn get_stats(
    state: web::Data<AppState>,
    _: web::Query<NoQuery>,
    after: ReadAfter,
) -> Result<HttpResponse, ApiError> {
    if after.0.is_some() {
        // After a write of its own the caller must see it: not a shared, older answer.
        return Ok(HttpResponse::Ok().json(compute_stats(&state, after).await?));
    }
    // Held while computing, so concurrent pollers wait for one answer, not ask again.
    let mut cache = state.stats_cache.lock().await;
    if let Some((_, stats)) = cache.as_ref().filter(|(at, _)| at.elapsed() < STATS_TTL) {
        return Ok(HttpResponse::Ok().json(stats));
    }
    let stats = compute_stats(&state, after).await?;
    *cache = Some((std::time::Instant::now(), stats.clone()));
    Ok(HttpResponse::Ok().json(stats))
}

async fn compute_stats(state: &AppState, after: ReadAfter) -> Result<Stats, ApiError> {
    let ((by_status, throughput), _) = state
        .reads
        .run(after.0, |client| {
            Box::pin(async move {
                let by_status = works::count_by_status(client).await?;
                let throughput = stats::throughput(client, BUCKET_SECS, BUCKETS).await?;
                Ok((by_status, throughput))
            })
        })
        .await?;
    let mut counts: BTreeMap<&'static str, i64> =
        WorkStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for (status, n) in by_status {
        if let Ok(status) = status.parse::<WorkStatus>() {
            counts.insert(status.as_str(), n);
        }
    }
    Ok(Stats {
        counts,
        throughput,
        bucket_seconds: BUCKET_SECS,
        dead_letter: crate::telemetry::TELEMETRY.dead_letters(),
    })
}

/// Work changes as Server-Sent Events.
// `live::event_stream` writes the messages the description lists.
#[utoipa::path(get, path = "/works/stream", tag = "dashboard", operation_id = "streamWorkChanges",
    description = "A never-ending `text/event-stream`, fed by PostgreSQL LISTEN/NOTIFY. It starts \
        with `retry: 2000` and a `: connected` comment. Then `event: work` with data `{}` when \
        works were created or changed status (changes close together are folded into one \
        message: re-read what you show), `event: resync` with data `{}` when changes may \
        have been missed (also when the server's LISTEN connection (re)connects: re-read what \
        you show), and a `: keep-alive` comment every 15 s. It ends when the server shuts \
        down; an EventSource reconnects by itself. At most `--max-streams` (default 64) are \
        open at once per server; beyond that, 503.",
    responses(
        (status = 200, description = "The event stream; the schema is one event's.",
            content_type = "text/event-stream", body = live::StreamEvent,
            example = json!({"event": "work", "data": "{}"})),
        (status = 400, response = BadRequest),
        (status = 503, description = "`--max-streams` streams are open already.",
            body = super::error::ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds to wait: `5`."))),
    ))]
pub async fn stream(
    state: web::Data<AppState>,
    _: web::Query<NoQuery>,
) -> Result<HttpResponse, ApiError> {
    let subscription = state
        .live
        .subscribe()
        .ok_or_else(|| ApiError::TooManyStreams(state.live.max_streams()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Tells a buffering reverse proxy (nginx) to pass each message on at once.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(live::event_stream(subscription)))
}
