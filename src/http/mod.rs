//! The HTTP API (actix-web): app state, start-up on a bound listener, JSON errors for
//! everything the framework itself would answer in plain text.

pub mod body;
pub mod bulk;
pub mod consistency;
pub mod create;
pub mod cross_site;
pub mod dashboard;
pub mod dead;
pub mod error;
pub mod exporter;
pub mod health;
pub mod idempotency;
pub mod legacy;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod params;
pub mod responses;
pub mod schedules;
pub mod webhooks;
pub mod workers;
pub mod works;

use crate::shutdown::Shutdown;
use crate::storage::{notify::Notifier, replica::Reads, PgPool};
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{error::InternalError, web, App, HttpRequest, HttpResponse, HttpServer};
use error::ApiError;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The primary: every write, and every read when there is no replica. With several
    /// HTTP workers, this worker's own pool (`PgPool::sibling`).
    pub pool: PgPool,
    /// Every HTTP worker's pool, for `/metrics`.
    pub worker_pools: Arc<[PgPool]>,
    /// The read-only routes' pools: a replica within its lag bound, else the primary.
    pub reads: Reads,
    /// When set, POST routes require `Authorization: Bearer <token>`.
    pub api_token: Option<String>,
    /// Work changes for the dashboard's event streams: one LISTEN per server.
    pub live: Arc<live::Hub>,
    /// Wakes sweepers and dashboards after a work is committed.
    pub notifier: Notifier,
    pub stats_cache: Arc<dashboard::StatsCache>,
    /// The OpenAPI document, rendered once for this server's settings.
    pub openapi: web::Bytes,
    /// The broker's dead letters, when the server was given a broker.
    pub dead_letters: Option<Arc<dead::DeadLetterSource>>,
}

/// Every route the app registers, as (method, path pattern). The OpenAPI test checks
/// this list against the document and probes each entry, so a route added to a
/// `routes` function must be added here too (and documented) or that test fails.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/favicon.ico"),
    ("GET", "/stats"),
    ("GET", "/works/stream"),
    ("POST", "/works"),
    ("POST", "/works/retry"),
    ("POST", "/works/cancel"),
    ("GET", "/works"),
    ("GET", "/works/{id}"),
    ("GET", "/works/{id}/events"),
    ("POST", "/works/{id}/retry"),
    ("POST", "/works/{id}/cancel"),
    ("GET", "/dead-letters"),
    ("POST", "/dead-letters/replay"),
    ("GET", "/webhooks/deliveries"),
    ("POST", "/webhooks/deliveries/redeliver-failed"),
    ("POST", "/webhooks/deliveries/{id}/redeliver"),
    ("POST", "/work"),
    ("GET", "/work/search"),
    ("GET", "/work/{id}"),
    ("POST", "/schedules"),
    ("GET", "/schedules"),
    ("DELETE", "/schedules/{name}"),
    ("GET", "/openapi.json"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/workers"),
    ("GET", "/pipeline"),
    ("POST", "/pipeline/pause"),
    ("POST", "/pipeline/resume"),
];

impl AppState {
    pub fn authorize(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let Some(expected) = &self.api_token else {
            return Ok(());
        };
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// Compares without an early exit, so response time does not reveal how much of a
/// guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// Holds the API token: its `Debug` says only whether one is set.
#[derive(Clone)]
pub struct ServerConfig {
    pub api_token: Option<String>,
    pub workers: Option<usize>,
    /// Event streams (`/works/stream`) open at once; more get a 503.
    pub max_streams: usize,
    /// For `/dead-letters`; without it those routes answer 503.
    pub dead_letters: Option<Arc<dead::DeadLetterSource>>,
    /// A replica pool for the read-only routes, and the lag it may have.
    pub read_replica: Option<(PgPool, std::time::Duration)>,
    /// One log line per request (`serve --access-log`).
    pub access_log: bool,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = self.api_token.as_ref().map(|_| "***");
        f.debug_struct("ServerConfig")
            .field("api_token", &token)
            .field("workers", &self.workers)
            .field("max_streams", &self.max_streams)
            .field("dead_letters", &self.dead_letters)
            .field("access_log", &self.access_log)
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            api_token: None,
            workers: None,
            max_streams: usize::from(live::DEFAULT_MAX_STREAMS),
            dead_letters: None,
            read_replica: None,
            access_log: false,
        }
    }
}

/// Starts serving on an already bound listener (port 0 in tests). The returned server
/// must be awaited or spawned; it does not install signal handlers: the caller stops it
/// through its handle. Event streams end only when the server closes their connections:
/// a graceful stop waits its shutdown timeout (10 s) for them; `start_until` does not.
pub fn start(listener: TcpListener, pool: PgPool, config: ServerConfig) -> std::io::Result<Server> {
    start_until(listener, pool, config, Shutdown::never())
}

/// Like `start`, and event streams (`/works/stream`) end as soon as `shutdown` fires:
/// a graceful stop waits for open connections, and a dashboard's never finishes.
pub fn start_until(
    listener: TcpListener,
    pool: PgPool,
    config: ServerConfig,
    shutdown: Shutdown,
) -> std::io::Result<Server> {
    crate::telemetry::TELEMETRY.register(crate::telemetry::Group::Api);
    let notifier = Notifier::spawn(pool.clone(), shutdown.clone());
    let reads = match config.read_replica {
        Some((replica, max_lag)) => {
            Reads::with_replica(pool.clone(), replica, max_lag, shutdown.clone())
        }
        None => Reads::primary(pool.clone()),
    };
    let live = live::Hub::new(pool.clone(), shutdown, config.max_streams);
    let openapi = openapi::render(config.api_token.is_some()).into();
    let access_log = config.access_log;
    let workers = config.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    let worker_pools = worker_pools(&pool, workers)?;
    let shared = AppState {
        pool,
        worker_pools: worker_pools.clone(),
        reads,
        api_token: config.api_token,
        live,
        notifier,
        stats_cache: Default::default(),
        openapi,
        dead_letters: config.dead_letters,
    };
    let states: Vec<web::Data<AppState>> = worker_pools
        .iter()
        .map(|pool| {
            web::Data::new(AppState {
                pool: pool.clone(),
                reads: shared.reads.with_primary(pool.clone()),
                ..shared.clone()
            })
        })
        .collect();
    // Called once on each worker's thread (again if a worker is restarted).
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let server = HttpServer::new(move || {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        App::new()
            .app_data(states[n % states.len()].clone())
            .app_data(web::PathConfig::default().error_handler(|e, _| bad_request(e.to_string())))
            .app_data(
                web::QueryConfig::default()
                    .error_handler(|e, _| bad_request(format!("invalid query: {e}"))),
            )
            .wrap(actix_web::middleware::from_fn(consistency::stamp))
            .wrap(actix_web::middleware::from_fn(metrics::record))
            .wrap(actix_web::middleware::from_fn(bounded))
            .wrap(actix_web::middleware::from_fn(cross_site::refuse))
            .wrap(actix_web::middleware::Condition::new(
                access_log,
                actix_web::middleware::from_fn(metrics::access_log),
            ))
            .wrap(actix_web::middleware::Condition::new(
                crate::telemetry::traces::on(),
                actix_web::middleware::from_fn(metrics::traced),
            ))
            .configure(dashboard::routes)
            .configure(bulk::routes)
            .configure(works::routes)
            .configure(legacy::routes)
            .configure(dead::routes)
            .configure(schedules::routes)
            .configure(webhooks::routes)
            .configure(openapi::routes)
            .configure(health::routes)
            .configure(workers::routes)
            .default_service(web::to(not_found))
    })
    .disable_signals()
    .shutdown_timeout(10)
    .workers(workers);
    Ok(server.listen(listener)?.run())
}

/// One pool per HTTP worker, `--db-pool-size` shared out among them (rounded up), all
/// following `pool`'s role; one worker uses `pool` itself.
fn worker_pools(pool: &PgPool, workers: usize) -> std::io::Result<Arc<[PgPool]>> {
    if workers <= 1 {
        return Ok(Arc::from([pool.clone()]));
    }
    let size = pool.status().max_size.div_ceil(workers);
    let size = u16::try_from(size).unwrap_or(u16::MAX);
    (0..workers)
        .map(|_| pool.sibling(size).map_err(std::io::Error::other))
        .collect()
}

/// How long a request may take to produce its response head. A stalled database
/// (a frozen server accepts TCP and never answers; no statement timeout fires) must not
/// hang the API: past this the handler is dropped and the client gets a JSON 503.
/// Event streams are unaffected: their head is sent at once.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

/// The time after which a write must not happen any more, from inside a handler: past
/// it the client has been told 503. A second less than the bound, for the time the
/// request spent before its handler started (reading the body, waiting for a worker).
pub fn deadline() -> std::time::SystemTime {
    std::time::SystemTime::now() + REQUEST_TIMEOUT - Duration::from_secs(1)
}

async fn bounded(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let (method, path) = (req.method().clone(), req.path().to_string());
    match tokio::time::timeout(REQUEST_TIMEOUT, next.call(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(%method, %path, "request timed out: database stalled?");
            // The inner middleware that counts requests was dropped with the handler.
            crate::telemetry::TELEMETRY.observe_request(
                metrics::method_label(&method),
                "timed out".into(),
                503,
                REQUEST_TIMEOUT.as_secs_f64(),
            );
            Err(ApiError::Timeout(REQUEST_TIMEOUT).into())
        }
    }
}

fn bad_request(message: String) -> actix_web::Error {
    InternalError::from_response(message.clone(), ApiError::BadRequest(message).into()).into()
}

impl From<ApiError> for HttpResponse {
    fn from(e: ApiError) -> Self {
        actix_web::ResponseError::error_response(&e)
    }
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound(format!("no route for {} {}", req.method(), req.path())).into()
}
