//! Writes from other web pages are refused, whatever the token (and with none set, the
//! default): a page's `fetch(…, {mode: "no-cors"})` with a text/plain body reaches the
//! server without a CORS preflight, so the browser alone does not stop it.
//!
//! Two checks on every method but GET, HEAD and OPTIONS, before any handler runs:
//! - the request comes from this server's own page or from no page at all, as Go's
//!   `http.CrossOriginProtection` decides: `Sec-Fetch-Site` (sent by every current
//!   browser) must be `same-origin` or `none`; without it, an `Origin` must name the
//!   `Host` the request was sent to. Clients that are not browsers (curl, `ppctl work`,
//!   `raw-http`) send neither and pass. A 403 otherwise.
//! - a body must be `Content-Type: application/json`: that type cannot be sent
//!   cross-site without a preflight, which this server never grants. A 415 otherwise.
//!   An empty body needs no type (`POST /works` with none asks for a random work).

use super::error::ErrorBody;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::HttpResponse;

pub async fn refuse(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    match refusal(&req) {
        None => Ok(next.call(req).await?.map_into_left_body()),
        Some((status, error)) => {
            tracing::info!(method = %req.method(), path = req.path(), %error, "refused");
            let response = HttpResponse::build(status).json(ErrorBody { error });
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

/// Why the request must not reach its handler, if it must not.
fn refusal(req: &ServiceRequest) -> Option<(StatusCode, String)> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let text = |name: header::HeaderName| {
        let value = req.headers().get(name)?;
        Some(String::from_utf8_lossy(value.as_bytes()).trim().to_string())
    };
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if site != "same-origin" && site != "none" {
            let error = format!("cross-site write refused (Sec-Fetch-Site: {site})");
            return Some((StatusCode::FORBIDDEN, error));
        }
    } else if let Some(origin) = text(header::ORIGIN) {
        let host = text(header::HOST).unwrap_or_default();
        let origin_host = origin.split_once("://").map_or("", |(_, h)| h);
        if !origin_host.eq_ignore_ascii_case(&host) {
            let error = format!("cross-origin write refused (Origin {origin} is not {host})");
            return Some((StatusCode::FORBIDDEN, error));
        }
    }
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || text(header::CONTENT_LENGTH).is_some_and(|n| n != "0");
    let json = text(header::CONTENT_TYPE).is_some_and(|t| {
        let mime = t.split(';').next().unwrap_or_default().trim();
        mime.eq_ignore_ascii_case("application/json")
    });
    if has_body && !json {
        let error = "a request body must be sent as Content-Type: application/json".into();
        return Some((StatusCode::UNSUPPORTED_MEDIA_TYPE, error));
    }
    None
}
