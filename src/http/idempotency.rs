//! The `Idempotency-Key` request header of `POST /works` and `POST /work`
//! (draft-ietf-httpapi-idempotency-key-header, as Stripe's API takes it): a retry with
//! the same key and body gets the work the first request made, never a second one.

use super::error::ApiError;
use actix_web::HttpRequest;

pub const HEADER: &str = "Idempotency-Key";

/// The answer's header saying the work was made by an earlier request with the key.
pub const REPLAYED: &str = "Idempotent-Replayed";

/// Longest value taken (Stripe's limit for a key); a UUID is 36.
pub const MAX_KEY: usize = 255;

/// What `parse` takes, for the OpenAPI document: exactly this, no more and no less.
pub const PATTERN: &str = "^[!-~]{1,255}$";

/// The request's key, if it sent one: 1 to 255 visible ASCII characters. The draft
/// writes it as a Structured Field string (`"…"`): when it is one, the quotes are not
/// part of the key, so `"abc"` and `abc` (Stripe's form) are the same key.
pub fn key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let mut values = req.headers().get_all(HEADER);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request(format!(
            "send one {HEADER} header, not several"
        )));
    }
    parse(value.as_bytes()).map(Some)
}

/// The value as `PATTERN` states it, then the key in it.
fn parse(raw: &[u8]) -> Result<String, ApiError> {
    if raw.is_empty() || raw.len() > MAX_KEY || !raw.iter().all(u8::is_ascii_graphic) {
        return Err(ApiError::bad_request(format!(
            "{HEADER} must be 1 to {MAX_KEY} visible ASCII characters (a UUID will do)"
        )));
    }
    // A Structured Field string without escapes; anything else is a key as it stands.
    let inner = raw
        .strip_prefix(b"\"")
        .and_then(|r| r.strip_suffix(b"\""))
        .filter(|r| !r.is_empty() && !r.iter().any(|b| matches!(b, b'"' | b'\\')));
    // Visible ASCII only: valid UTF-8.
    Ok(String::from_utf8_lossy(inner.unwrap_or(raw)).into_owned())
}

/// What a create asked for, as stored with its key: two requests with one key must ask
/// for the same. An empty body and `{}` ask the same (any `add_up_to`); `4` and `4.0`
/// too. The route is not part of it: `POST /work` and `POST /works` create alike.
/// A later run is part of it (`run_at` normalised, or the `delay` as written); without
/// one the fingerprint is what it was before works could run later.
pub fn fingerprint(asked: &crate::demand::Asked) -> String {
    let mut print = serde_json::json!({ "add_up_to": asked.add_up_to });
    if let Some((field, value)) = asked.when.map(crate::run_at::When::fingerprint) {
        print[field] = value.into();
    }
    print.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_quoted_or_not() {
        assert_eq!(parse(b"abc-123").ok().as_deref(), Some("abc-123"));
        assert_eq!(parse(b"\"abc-123\"").ok().as_deref(), Some("abc-123"));
        assert_eq!(parse(&[b'k'; MAX_KEY]).map(|k| k.len()).ok(), Some(MAX_KEY));
        // Not a Structured Field string: the whole value is the key.
        assert_eq!(parse(b"\"a\"b\"").ok().as_deref(), Some("\"a\"b\""));
        assert_eq!(parse(b"\"\"").ok().as_deref(), Some("\"\""));
        for bad in [&b""[..], b"a b", b"caf\xc3\xa9", b"tab\t"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(&[b'k'; MAX_KEY + 1]).is_err());
    }

    #[test]
    fn the_fingerprint_is_what_was_asked() {
        use crate::demand::Asked;
        use crate::run_at::When;
        let asked = |add_up_to, when| Asked { add_up_to, when };
        assert_eq!(fingerprint(&asked(Some(4), None)), r#"{"add_up_to":4}"#);
        assert_eq!(fingerprint(&asked(None, None)), r#"{"add_up_to":null}"#);
        let later = When::After(std::time::Duration::from_secs(90));
        assert_eq!(
            fingerprint(&asked(Some(4), Some(later))),
            r#"{"add_up_to":4,"delay":"1m 30s"}"#
        );
    }
}
