//! The body of `POST /works` and `POST /work`: read within a size and a time bound, then
//! parsed into the `add_up_to` asked for, with errors that name the fault.

use super::error::ApiError;
use crate::model::from_json_object;
use actix_web::web;
use futures_util::StreamExt;
use rand::Rng;
use serde::Deserialize;
use std::time::Duration;
use utoipa::ToSchema;

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

/// The body of `POST /works`. Unknown fields are refused so a typo is not silently
/// turned into a random work.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"add_up_to": 4}))]
pub struct CreateWork {
    /// Absent: a random 1..=100.
    // Kept as raw JSON so a wrong value is reported for what it is (`null`, a string, a
    // fraction), not as serde's parse error mid-number.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = u64, minimum = 0, maximum = 4294967295_u64)]
    pub add_up_to: Option<serde_json::Value>,
}

/// `Some` for any value present, `null` included (plain `Option` would read it as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

impl CreateWork {
    /// The `add_up_to` asked for, if any, range-checked, with a message naming the fault.
    pub fn add_up_to(&self) -> Result<Option<u64>, String> {
        let Some(value) = &self.add_up_to else {
            return Ok(None);
        };
        let n = match value {
            serde_json::Value::Number(n) => n,
            other => {
                return Err(format!(
                    "add_up_to must be an integer, got {}",
                    json_kind(other)
                ))
            }
        };
        // JSON Schema counts 4.0 as an integer, and so does the document.
        let n = if let Some(i) = n.as_i64() {
            i128::from(i)
        } else if let Some(u) = n.as_u64() {
            i128::from(u)
        } else {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if !f.is_finite() || f.fract() != 0.0 {
                return Err(format!("add_up_to must be an integer, got {n}"));
            }
            if f.abs() > 1e18 {
                let max = crate::engine::MAX_N;
                return Err(format!("add_up_to must be between 0 and {max}, got {n}"));
            }
            f as i128
        };
        crate::engine::validate(n)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
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
