//! The body of `POST /works` and `POST /work`: read within a size and a time bound, then
//! parsed (by `demand::parse`) into the `add_up_to` asked for, with errors that name
//! the fault.

use super::error::ApiError;
use crate::demand::{Asked, Refused};
use actix_web::web;
use futures_util::StreamExt;
use rand::Rng;
use std::time::Duration;

/// Largest request body accepted; a work demand is a few dozen bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// How long the body may take to arrive: a client that sends less than its
/// Content-Length gets a 408 well before the request's own bound (a 503).
const BODY_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads the body up to `MAX_BODY`, answering 413 past it without reading the rest.
pub async fn read(payload: web::Payload) -> Result<web::BytesMut, ApiError> {
    tokio::time::timeout(BODY_TIMEOUT, read_all(payload))
        .await
        .map_err(|_| ApiError::BodyTimeout(BODY_TIMEOUT))?
}

async fn read_all(mut payload: web::Payload) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::PayloadTooLarge(MAX_BODY));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The `add_up_to` asked for, or a random 1..=100 for an empty body or `{}` (the rules
/// of a demand are `demand::parse`'s, the same as for a queued one).
pub fn parse_create(body: &[u8]) -> Result<i64, ApiError> {
    add_up_to(asked(body)?.add_up_to)
}

/// What the body asks for; an `add_up_to` of `None`: an empty body or `{}`, any will do.
pub fn asked(body: &[u8]) -> Result<Asked, ApiError> {
    match body.iter().all(u8::is_ascii_whitespace) {
        true => Ok(Asked::default()),
        false => crate::demand::parse(body).map_err(|e| match e {
            Refused::Bad(m) => ApiError::BadRequest(m),
            Refused::Unprocessable(m) => ApiError::Unprocessable(m),
        }),
    }
}

/// What was asked for, or a random 1..=100 when nothing was.
pub fn add_up_to(asked: Option<u64>) -> Result<i64, ApiError> {
    match asked {
        None => Ok(rand::rng().random_range(1..=100)),
        Some(n) => i64::try_from(n).map_err(|_| ApiError::bad_request("add_up_to is too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_body_or_no_add_up_to_asks_for_a_random_one() {
        assert_eq!(parse_create(br#"{"add_up_to": 4}"#).ok(), Some(4));
        assert!(matches!(parse_create(b""), Ok(1..=100)));
        assert!(matches!(parse_create(b"{}"), Ok(1..=100)));
        assert!(matches!(parse_create(b"[]"), Err(ApiError::BadRequest(_))));
    }
}
