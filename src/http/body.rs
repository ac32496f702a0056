//! The body of `POST /works` and `POST /work`: read within a size and a time bound, then
//! parsed into the `add_up_to` asked for.

use super::error::ApiError;
use crate::model::{from_json_object, CreateWork};
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

/// The `add_up_to` asked for, or a random 1..=100 for an empty body or `{}`.
pub fn parse_create(body: &[u8]) -> Result<i64, ApiError> {
    let request: CreateWork = if body.iter().all(u8::is_ascii_whitespace) {
        CreateWork::default()
    } else {
        from_json_object(body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    match request.add_up_to().map_err(ApiError::BadRequest)? {
        None => Ok(rand::rng().random_range(1..=100)),
        Some(n) => i64::try_from(n).map_err(|_| ApiError::bad_request("add_up_to is too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &[u8]) -> String {
        match parse_create(body) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
        }
    }

    #[test]
    fn create_bodies_are_validated() {
        assert_eq!(parse_create(br#"{"add_up_to": 4}"#).ok(), Some(4));
        assert_eq!(parse_create(br#"{"add_up_to": 4.0}"#).ok(), Some(4));
        assert!(matches!(parse_create(b""), Ok(1..=100)));
        assert!(matches!(parse_create(b"{}"), Ok(1..=100)));
        for bad in [
            &b"{"[..],
            br#"{"add_up_to": -1}"#,
            br#"{"add_upto": 4}"#,
            br#"{"add_up_to": 1, "add_up_to": 2}"#,
            b"[]",
        ] {
            message(bad);
        }
    }

    #[test]
    fn messages_name_the_fault() {
        let integer = "add_up_to must be an integer";
        for (body, expected) in [
            (
                &br#"{"add_up_to": null}"#[..],
                format!("{integer}, got null"),
            ),
            (br#"{"add_up_to": "x"}"#, format!("{integer}, got a string")),
            (br#"{"add_up_to": "4"}"#, format!("{integer}, got a string")),
            (br#"{"add_up_to": 2.5}"#, format!("{integer}, got 2.5")),
            (br#"{"add_up_to": [4]}"#, format!("{integer}, got an array")),
            (
                br#"{"add_up_to": 1e20}"#,
                "add_up_to must be between 0 and 4294967295, got 1".into(),
            ),
            (
                br#"{"add_up_to": 4294967296}"#,
                "add_up_to must be between 0 and 4294967295, got 4294967296".into(),
            ),
        ] {
            let got = message(body);
            assert!(
                got.starts_with(&expected),
                "{got:?} for {}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
