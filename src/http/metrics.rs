//! Request latency by route pattern and status, recorded into the process's registry
//! (`crate::telemetry`) for `/metrics`.

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
