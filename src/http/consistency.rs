//! Read your writes over HTTP. Every write answers with a `Consistency-Token` header:
//! the WAL position of its commit (`storage::lsn`). A read that sends it back in the
//! same header is served by the replica only once the replica has replayed past it,
//! else by the primary. The token is opaque to clients: they keep the highest one
//! they were given (tokens compare as PostgreSQL LSNs) and send it with later reads.

use super::error::ApiError;
use crate::storage::lsn::{self, Lsn};
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use std::future::{ready, Ready};

/// The header name, in both directions.
pub const HEADER: &str = "Consistency-Token";

/// The token a read carries, if any: a malformed one is a 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadAfter(pub Option<Lsn>);

impl FromRequest for ReadAfter {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse(req).map(ReadAfter))
    }
}

fn parse(req: &HttpRequest) -> Result<Option<Lsn>, ApiError> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request(format!("{HEADER} must be ASCII")))?;
    text.trim()
        .parse()
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("invalid {HEADER}: {e}")))
}

/// What a write does after its commit, on the connection that committed: reads the
/// commit's position, for `keep`. A failure to read it costs only the header, the
/// write itself is done; and it is bounded: a database that stalls right after the
/// commit must not turn a done write into a 503 (which a client would retry).
///
/// Only when this server reads from a replica (`needed`): without one every read is the
/// primary's and sees every write, and the extra round trip cost `POST /works` more
/// than half its rate in `make bench` (7,036 req/s against 10,583 before it).
pub async fn after_commit(client: &tokio_postgres::Client, needed: bool) -> Option<Lsn> {
    if !needed {
        return None;
    }
    match tokio::time::timeout(RECORD_TIMEOUT, lsn::after_commit(client)).await {
        Ok(Ok(position)) => Some(position),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "no consistency token for this write");
            None
        }
        Err(_) => {
            tracing::debug!("no consistency token for this write: no answer in time");
            None
        }
    }
}

/// The write handler's one call: its response gets the token (`stamp`).
pub fn keep(req: &HttpRequest, token: Option<Lsn>) {
    if let Some(token) = token {
        req.extensions_mut().insert(token);
    }
}

/// How long a write waits for its token before answering without one.
const RECORD_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Middleware: adds the token a handler recorded to its response.
pub async fn stamp(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut response = next.call(req).await?;
    let token = response.request().extensions().get::<Lsn>().copied();
    if let Some(token) = token {
        if let Ok(value) = HeaderValue::from_str(&token.to_string()) {
            let name = HeaderName::from_static("consistency-token");
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

/// The routes whose reads honour a token, by OpenAPI operation id.
const READS: &[&str] = &[
    "getWork",
    "getWorkEvents",
    "searchWorks",
    "legacyGetWork",
    "legacySearchWorks",
    "getStats",
];
/// The routes that answer with one (on success).
const WRITES: &[&str] = &["createWork", "legacyCreateWork", "retryWork", "cancelWork"];

/// Documents the header on the operations of `item` that take or give it.
pub fn document(item: &mut utoipa::openapi::PathItem) {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{ObjectBuilder, RefOr, Required, Type};
    // The example is also what Schemathesis's coverage phase sends as its "default
    // positive" value; without one it sent `0`, which the pattern does not allow.
    let token = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$"))
            .examples([serde_json::json!("0/16B3748")])
    };
    let operations = [&mut item.get, &mut item.post].into_iter().flatten();
    for operation in operations {
        let id = operation.operation_id.clone().unwrap_or_default();
        if READS.contains(&id.as_str()) {
            let parameter = ParameterBuilder::new()
                .name(HEADER)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some("A write's consistency token (the highest one this client was given): the read is served by a replica only once it has replayed that write, else by the primary. A malformed one is a 400."))
                .schema(Some(token()))
                .build();
            operation
                .parameters
                .get_or_insert_with(Vec::new)
                .push(parameter);
        }
        if WRITES.contains(&id.as_str()) {
            for (status, response) in operation.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                if status.starts_with('2') {
                    let header = HeaderBuilder::new()
                        .schema(token())
                        .description(Some("The commit's position in the primary's WAL: send it back in this header with later reads to read this write."))
                        .build();
                    response.headers.insert(HEADER.into(), header);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_names_the_header_both_ways() {
        let doc: serde_json::Value =
            serde_json::from_str(&super::super::openapi::render(false)).expect("JSON");
        let created = &doc["paths"]["/works"]["post"]["responses"]["201"]["headers"];
        assert!(created.get(super::HEADER).is_some(), "{created}");
        let read = doc["paths"]["/works/{id}"]["get"]["parameters"].to_string();
        assert!(
            read.contains(r#""in":"header""#) && read.contains(super::HEADER),
            "{read}"
        );
    }
}
