//! What each request leaves behind: its latency by route pattern and status, recorded
//! into the process's registry (`crate::telemetry`) for `/metrics`, and with
//! `serve --access-log` one log line.

use crate::telemetry::TELEMETRY;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::Error;
use std::time::Instant;

/// The method as a label: exotic ones share one, so they cannot grow the series.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: times every request and counts it by route pattern and status.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let start = Instant::now();
    let response = next.call(req).await?;
    // The route is known only after routing; unmatched paths share one label so a
    // scanner cannot grow the series without bound.
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    TELEMETRY.observe_request(
        method_label(response.request().method()),
        route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    Ok(response)
}

/// Middleware (`serve --access-log`): one info line per request, written when its
/// response head is ready. Outermost, so it also sees the 503 of a request that timed
/// out and the refusals of the other middleware. The peer is the TCP peer: a
/// forwarded-for header is the client's word, not a fact.
pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let start = Instant::now();
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let response = next.call(req).await;
    let status = match &response {
        Ok(r) => r.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    tracing::info!(
        target: "ppctl::access",
        %method,
        %uri,
        status = status.as_u16(),
        ms = (start.elapsed().as_secs_f64() * 10_000.0).round() / 10.0,
        %peer,
        "request"
    );
    response
}

/// Middleware (tracing on): each request runs in its server span, which continues the
/// caller's trace and records the route and the status. Outermost, so the span also
/// covers the other middleware's refusals.
pub async fn traced(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    use tracing::Instrument;
    let hop = crate::telemetry::spans::http_server(&req);
    let span = hop.span.clone();
    // An unsampled request builds no span: its handlers find the trace it carries on here.
    {
        use actix_web::HttpMessage;
        req.extensions_mut().insert(hop);
    }
    let method = req.method().clone();
    let response = next.call(req).instrument(span.clone()).await;
    let (route, status) = match &response {
        Ok(r) => (r.request().match_pattern(), r.status()),
        Err(e) => (None, e.as_response_error().status_code()),
    };
    crate::telemetry::spans::http_answered(
        &span,
        method.as_str(),
        route.as_deref(),
        status.as_u16(),
    );
    response
}
