//! One parser for a work demand, whichever way it comes: the body of `POST /works` and
//! the body of a queued message follow the same rules. A JSON object (not an array,
//! no duplicate keys); `add_up_to` an integer 0..=4294967295, where an integral number
//! such as `4.0` counts (as in JSON Schema and the OpenAPI document); `done` a boolean,
//! ignored; `run_at` (RFC 3339) or `delay` (humantime), not both, to run it later
//! (`run_at::When`); any other field refused. Over HTTP `add_up_to` may be left out (a
//! random 1..=100); a queued demand must carry it.

use crate::run_at::When;
use serde::Deserialize;
use std::time::SystemTime;
use utoipa::ToSchema;

/// A demand, as `POST /works` takes it and as a queued message carries it. Unknown
/// fields are refused (a typo must not turn into a random work, over HTTP or AMQP);
/// `done` is the original project's field, accepted and ignored.
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
    /// Ignored: the original project's producers send `"done": false`.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub done: Option<bool>,
    /// Run it at this time (RFC 3339, any offset) rather than at once: the work is
    /// `scheduled` until then. A past time runs at once; at most a year ahead.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-12-05T10:00:00Z")]
    pub run_at: Option<String>,
    /// Run it after this long (humantime: `90s`, `2h`), as `run_at` = now + delay. Not
    /// with `run_at`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "90s", pattern = "^[0-9]+ ?(ns|us|ms|msec|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days|w|wk|wks|week|weeks|M|month|months|y|yr|yrs|year|years)( ?[0-9]+ ?(ns|us|ms|msec|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days|w|wk|wks|week|weeks|M|month|months|y|yr|yrs|year|years))*$")]
    pub delay: Option<String>,
}

/// What a demand asks for: an `add_up_to` (over HTTP it may be left out) and when.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Asked {
    pub add_up_to: Option<u64>,
    pub when: Option<When>,
}

/// `Some` for any value present, `null` included (plain `Option` would read it as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

impl CreateWork {
    /// The `add_up_to` asked for, if any, range-checked, with a message naming the fault.
    pub fn add_up_to(&self) -> Result<Option<u64>, String> {
        self.add_up_to.as_ref().map(add_up_to).transpose()
    }
}

/// An `add_up_to` value, range-checked: an integer, where an integral number such as
/// `4.0` counts (as in JSON Schema); the message names the fault.
pub fn add_up_to(value: &serde_json::Value) -> Result<u64, String> {
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
    crate::engine::validate(n).map_err(|e| e.to_string())
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

/// What is wrong with a demand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not a demand: bad JSON, a wrong type, a field out of range.
    #[error("{0}")]
    Bad(String),
    /// Well-formed, but its `run_at` or `delay` cannot be done: both given, too far
    /// ahead, or a value its parser refuses (a `422` over HTTP).
    #[error("{0}")]
    Unprocessable(String),
}

/// Parses a demand's body: what it asks for, or what is wrong.
pub fn parse(body: &[u8]) -> Result<Asked, Refused> {
    let demand: CreateWork =
        from_json_object(body).map_err(|e| Refused::Bad(format!("invalid JSON body: {e}")))?;
    let add_up_to = demand.add_up_to().map_err(Refused::Bad)?;
    let when = When::from_fields(
        demand.run_at.as_deref(),
        demand.delay.as_deref(),
        SystemTime::now(),
    )
    .map_err(Refused::Unprocessable)?;
    Ok(Asked { add_up_to, when })
}

/// Parses a body that must be a JSON object. serde alone would also read a struct from
/// an array (`[4]`); going through `serde_json::Value` instead would silently keep the
/// last of duplicate keys. So: check the first byte, then parse straight into `T`.
pub fn from_json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("expected a JSON object".into());
    }
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(body: &[u8]) -> Result<Option<u64>, Refused> {
        parse(body).map(|a| a.add_up_to)
    }

    fn message(body: &[u8]) -> String {
        match parse(body) {
            Err(m) => m.to_string(),
            other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
        }
    }

    #[test]
    fn create_bodies_are_validated() {
        assert_eq!(n(br#"{"add_up_to": 4}"#), Ok(Some(4)));
        assert_eq!(n(br#"{"add_up_to": 4.0}"#), Ok(Some(4)));
        assert_eq!(n(br#"{"add_up_to": 2, "done": false}"#), Ok(Some(2)));
        assert_eq!(n(b"{}"), Ok(None));
        let later = parse(br#"{"add_up_to": 2, "delay": "90s"}"#).map(|a| a.when);
        assert_eq!(
            later,
            Ok(Some(When::After(std::time::Duration::from_secs(90))))
        );
        assert!(message(br#"{"add_up_to": 2, "delay": "soon"}"#).contains("delay"));
        let both = br#"{"add_up_to": 2, "delay": "1s", "run_at": "2026-12-05T10:00:00Z"}"#;
        assert!(matches!(parse(both), Err(Refused::Unprocessable(_))));
        assert!(message(br#"{"add_up_to": 2, "run_at": 5}"#).contains("invalid type"));
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
    fn the_documented_delay_pattern_is_the_parsers() {
        let schema = serde_json::to_value(<CreateWork as utoipa::PartialSchema>::schema());
        let schema = schema.unwrap_or_default();
        let documented = &schema["properties"]["delay"]["pattern"];
        assert_eq!(
            documented,
            &serde_json::json!(crate::run_at::delay_pattern())
        );
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
